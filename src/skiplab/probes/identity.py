"""Can a stack of layers learn to do nothing? Fit the identity map and measure the error.

The degradation argument of He et al. (2016): a deeper net could copy a shallower one and
make its extra layers the identity, so it should never train worse. Plain layers must
*learn* the identity; a residual block gets it by driving its branch to zero. This probe
trains a stack on exactly that task.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["IdentityFit", "fit_identity"]


@dataclass(frozen=True)
class IdentityFit:
    """Relative squared error ||stack(x) - x||^2 / ||x - mean(x)||^2 on held-out inputs.

    1.0 is what a constant output (the inputs' mean) scores; 0.0 is the identity.
    ``initial_error`` is measured as training starts, in train mode (BatchNorm normalises
    with the batch's statistics; its running statistics are untouched because a copy is
    measured); ``final_error`` in eval mode, with the running statistics training left.
    """

    initial_error: float
    final_error: float


def _relative_error(stack: nn.Module, x: torch.Tensor, *, train_mode: bool) -> float:
    probe = copy.deepcopy(stack).train(train_mode)
    with torch.no_grad():
        error = ((probe(x) - x) ** 2).mean() / x.var()
    return error.item()


def fit_identity(stack: nn.Module, example_shape: tuple[int, ...], *, steps: int = 200,
                 lr: float = 1e-2, batch_size: int = 64, n_train: int = 256,
                 n_test: int = 256, seed: int = 0) -> IdentityFit:
    """Train ``stack`` (in place, with Adam) to map its input to itself.

    The inputs are ReLU(N(0, 1)) tensors, non-negative like the hidden states of a ReLU net.

    Args:
        stack: maps (B, *example_shape) to the same shape.
        example_shape: one input's shape, e.g. (C, H, W).
        steps, lr, batch_size: the optimisation (Adam, minibatches drawn with replacement).
        n_train, n_test: training inputs and held-out inputs for the error.
        seed: seeds the inputs and the minibatches (not the stack's initial weights).
    """
    generator = torch.Generator().manual_seed(seed)
    device = next(stack.parameters()).device
    x_train = torch.relu(torch.randn(n_train, *example_shape, generator=generator)).to(device)
    x_test = torch.relu(torch.randn(n_test, *example_shape, generator=generator)).to(device)
    initial = _relative_error(stack, x_test, train_mode=True)
    optimizer = torch.optim.Adam(stack.parameters(), lr=lr)
    stack.train()
    variance = x_train.var()
    for _ in range(steps):
        idx = torch.randint(0, n_train, (batch_size,), generator=generator).to(device)
        x = x_train[idx]
        loss = ((stack(x) - x) ** 2).mean() / variance
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return IdentityFit(initial, _relative_error(stack, x_test, train_mode=False))
