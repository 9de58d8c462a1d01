"""Gradient probes: how strongly the loss signal reaches each layer."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["hidden_grad_norms", "layer_grad_norms"]


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
