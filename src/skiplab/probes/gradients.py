"""Gradient probes: how strongly the loss signal reaches each layer."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["GradientRecorder", "hidden_grad_norms", "layer_grad_norms"]


def layer_grad_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                     layers: Sequence[nn.Module] | None = None) -> torch.Tensor:
    """L2 norm of dL/dW for each layer's weight, on one batch, L = mean cross-entropy.

    Args:
        model: maps x to logits; left in whatever train/eval mode it is in (BatchNorm in
            train mode uses the batch's statistics, as in training).
        x: (B, *F) inputs, on the model's device and dtype.
        y: (B,) class indices.
        layers: modules with a ``weight``, input to output; default: the model's
            ``weight_layers()`` if it has one, else every Linear/Conv layer in module order.

    Returns:
        (L,) float64 tensor on the CPU, one norm per layer, input layer first.
        Existing ``.grad`` fields of the model are left as they were.
    """
    if layers is None:
        if hasattr(model, "weight_layers"):
            layers = model.weight_layers()
        else:
            layers = [m for m in model.modules()
                      if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))]
    if not layers:
        raise ValueError("no layers with a weight to probe")
    weights = [layer.weight for layer in layers]
    loss = F.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, weights)
    return torch.stack([g.detach().double().norm() for g in grads]).cpu()


def hidden_grad_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                      modules: Sequence[nn.Module] | None = None) -> torch.Tensor:
    """L2 norm of dL/dh for the output h of each module in ``modules``, on one batch.

    This is the backward signal of the chain rule itself: for a plain stack it is multiplied
    by each layer's Jacobian on the way down; a residual block adds the identity to that
    Jacobian. (Weight gradients, :func:`layer_grad_norms`, are this signal times the layer's
    input, so they also reflect how large the activations are.)

    Args:
        model: maps x to logits.
        x: (B, *F) inputs; y: (B,) class indices.
        modules: submodules whose outputs are the hidden states, input to output; default:
            ``model.hidden_modules()``.

    Returns:
        (len(modules),) float64 tensor on the CPU, first hidden state first.
    """
    if modules is None:
        if not hasattr(model, "hidden_modules"):
            raise ValueError("pass modules=..., the model has no hidden_modules()")
        modules = model.hidden_modules()
    outputs: dict[int, torch.Tensor] = {}
    handles = [m.register_forward_hook(
        lambda _m, _inp, out, i=i: outputs.__setitem__(i, out)) for i, m in enumerate(modules)]
    try:
        loss = F.cross_entropy(model(x), y)
    finally:
        for handle in handles:
            handle.remove()
    if len(outputs) != len(modules):
        raise ValueError("some modules were not called in the forward pass")
    hidden = [outputs[i] for i in range(len(modules))]
    grads = torch.autograd.grad(loss, hidden)
    return torch.stack([g.detach().double().norm() for g in grads]).cpu()


class GradientRecorder:
    """Records ||dL/dh|| at the outputs h of ``modules`` during ordinary training.

    Forward hooks attach a gradient hook to each output, so the norms come from the training
    step's own backward pass: no extra forward pass (which would also move BatchNorm's
    running statistics) and no change to the run. Pass :meth:`on_step` to
    :func:`skiplab.train.train`; it keeps the norms of every ``every``-th step (and step 1).

    >>> recorder = GradientRecorder([net.stem, *net.blocks()], every=10)   # doctest: +SKIP
    >>> train(net, data, steps=400, on_step=recorder.on_step)              # doctest: +SKIP
    >>> recorder.steps, recorder.norms().shape                             # doctest: +SKIP
    ([1, 10, 20, ...], (41, 28))

    Use it as a context manager, or call :meth:`remove`, to detach the hooks.
    """

    def __init__(self, modules: Sequence[nn.Module], every: int = 10):
        if every < 1:
            raise ValueError(f"every={every} must be at least 1")
        if not modules:
            raise ValueError("no modules to record")
        self.every = every
        self.steps: list[int] = []
        self._rows: list[list[float]] = []
        self._latest: dict[int, torch.Tensor] = {}
        self._handles = [m.register_forward_hook(self._forward_hook(i))
                         for i, m in enumerate(modules)]
        self._n = len(modules)

    def _forward_hook(self, index: int):
        def hook(_module: nn.Module, _inputs, output: torch.Tensor) -> None:
            if torch.is_tensor(output) and output.requires_grad:
                output.register_hook(
                    lambda grad: self._latest.__setitem__(index, grad.detach().norm()))
        return hook

    def on_step(self, step: int, _loss: float | None = None) -> None:
        """Keep the norms of the backward pass just done if ``step`` is 1 or a multiple of
        ``every``; missing norms (a module not reached by the loss) raise."""
        if step == 1 or step % self.every == 0:
            if len(self._latest) != self._n:
                raise RuntimeError("some modules got no gradient in the last backward pass")
            self.steps.append(step)
            self._rows.append([self._latest[i].item() for i in range(self._n)])
        self._latest.clear()

    def norms(self) -> np.ndarray:
        """(T, L) array: row t holds the norms at ``steps[t]``, column 0 nearest the input."""
        return np.asarray(self._rows, dtype=float).reshape(len(self._rows), self._n)

    def state_dict(self) -> dict[str, list]:
        """What was recorded so far (for checkpoints)."""
        return {"steps": list(self.steps), "rows": [list(r) for r in self._rows]}

    def load_state_dict(self, state: dict[str, list]) -> None:
        """Restore what :meth:`state_dict` returned; the hooks stay as they are."""
        if any(len(row) != self._n for row in state["rows"]):
            raise ValueError(f"saved rows do not have {self._n} modules")
        self.steps = list(state["steps"])
        self._rows = [list(r) for r in state["rows"]]

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> GradientRecorder:
        return self

    def __exit__(self, *_exc) -> None:
        self.remove()
