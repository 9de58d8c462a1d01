"""Signal propagation at initialisation: the stream's size forward and the gradient's size
backward, block by block.

For a stack of blocks x_{l+1} = block_l(x_l), :func:`signal_propagation` runs one batch
forward and backward and returns, for l = 0 (the stream entering the first block) to L
(after the last):

- ``forward[l]``  = mean over the batch of x_l², the stream's second moment ("variance"),
- ``backward[l]`` = root mean square of dL/dx_l, the gradient reaching that point.

With an unscaled residual branch that keeps its input's size, x_{l+1} = x_l + F(x_l)
doubles the second moment per block (no norm) or adds a constant to it (a normalised
branch input, pre-norm): exponential or linear growth with depth. Identity-at-init schemes
keep ``forward`` flat. See :func:`~skiplab.probes.stream.loglog_slope` for fitting the laws.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["SignalProfile", "signal_propagation"]


@dataclass(frozen=True)
class SignalProfile:
    """Per position l = 0..L (before the first block, after each block), float64 on the CPU.

    forward: (L + 1,) mean of x_l², over batch, tokens and features.
    backward: (L + 1,) root mean square of dL/dx_l.
    """

    forward: torch.Tensor
    backward: torch.Tensor


def signal_propagation(model: nn.Module, *inputs, blocks: Sequence[nn.Module] | None = None,
                       loss_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
                       seed: int = 0, **kwargs) -> SignalProfile:
    """Forward and backward signal by depth for one batch (see the module docstring).

    Args:
        model: runs as ``model(*inputs, **kwargs)``; its blocks run in order on the stream.
        blocks: the blocks, in forward order (default ``model.blocks``). Each must take the
            stream as its first argument and return the new stream.
        loss_fn: maps the model's output to the scalar whose gradient is measured; default
            ⟨output, r⟩ / sqrt(numel) with a fixed standard-normal r (seeded by ``seed``),
            which sends a gradient of the same size into every output.

    Returns:
        :class:`SignalProfile`. Non-finite values (an overflowing stream) are kept as they
        are: an exploding stack shows up as ``inf``/``nan``.
    """
    blocks = list(model.blocks if blocks is None else blocks)
    if not blocks:
        raise ValueError("signal_propagation needs at least one block")
    streams: list[torch.Tensor | None] = [None] * (len(blocks) + 1)

    def keep(index: int, tensor: torch.Tensor) -> None:
        if tensor.requires_grad:
            tensor.retain_grad()
        streams[index] = tensor

    def before_first(_module, args):
        keep(0, args[0])

    def after(index):
        def hook(_module, _args, output):
            keep(index + 1, output)
        return hook

    handles = [blocks[0].register_forward_pre_hook(before_first)]
    handles += [block.register_forward_hook(after(i)) for i, block in enumerate(blocks)]
    try:
        output = model(*inputs, **kwargs)
    finally:
        for handle in handles:
            handle.remove()
    if any(s is None for s in streams):
        raise RuntimeError("not every block ran on the stream during the forward pass")
    if loss_fn is None:
        generator = torch.Generator().manual_seed(seed)
        direction = torch.randn(output.shape, generator=generator, dtype=torch.float64)
        direction = direction.to(output.device, output.dtype)
        loss = (output * direction).sum() / output.numel() ** 0.5
    else:
        loss = loss_fn(output)
    if streams[0].requires_grad is False:
        raise ValueError("the stream entering the first block does not require a gradient: "
                         "the model must compute it from parameters (a stem or embedding)")
    loss.backward()
    forward = torch.stack([s.detach().double().pow(2).mean() for s in streams]).cpu()
    backward = torch.stack([
        s.grad.double().pow(2).mean().sqrt() if s.grad is not None
        else torch.tensor(0.0, dtype=torch.float64, device=s.device)
        for s in streams]).cpu()
    return SignalProfile(forward=forward, backward=backward)
