"""Probes for transformers: rank collapse of the token representations, per-block gradients.

Dong, Cordonnier & Loukas (2021) measure how far a token matrix X (T tokens x D features)
is from the nearest matrix whose rows are all equal, 1·xᵀ. In the Frobenius norm the
nearest such matrix has x = the mean token, so the *relative residual*

    r(X) = ||X - 1·mean(X)||_F / ||X||_F

is 0 exactly when every token carries the same vector (rank collapse) and near 1 for
unrelated tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["collapse_profile", "stream_grad_norms", "token_uniformity"]


def token_uniformity(x: torch.Tensor) -> torch.Tensor:
    """r(X) = ||X - 1·mean(X)|| / ||X|| for each sequence: (B, T, D) -> (B,).

    The mean is over the T tokens. Compute in float64 to see values below float32's
    rounding floor (about 1e-7).
    """
    if x.dim() != 3:
        raise ValueError(f"expected (batch, tokens, features), got shape {tuple(x.shape)}")
    centred = x - x.mean(dim=1, keepdim=True)
    return centred.flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1)


@torch.no_grad()
def collapse_profile(layers: Sequence[Callable[[torch.Tensor], torch.Tensor]],
                     x: torch.Tensor, *, skip: bool = False) -> torch.Tensor:
    """Mean r(X) of the input and after each layer of a stack: (depth + 1,) on the CPU.

    Args:
        layers: callables (B, T, D) -> (B, T, D), applied in order.
        x: (B, T, D) input tokens.
        skip: apply each layer as ``x = x + layer(x)`` instead of ``x = layer(x)``.
    """
    values = [token_uniformity(x).mean()]
    for layer in layers:
        x = x + layer(x) if skip else layer(x)
        values.append(token_uniformity(x).mean())
    return torch.stack(values).double().cpu()


def stream_grad_norms(model: nn.Module, tokens: torch.Tensor, targets: torch.Tensor,
                      weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """||dL/dW|| for each tensor in ``weights`` on one batch, L = mean token cross-entropy.

    Shapes: tokens and targets (B, T); the model returns (B, T, V) logits. Returns
    (len(weights),) float64 on the CPU. The parameters' ``.grad`` fields are untouched.
    """
    logits = model(tokens)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
    grads = torch.autograd.grad(loss, list(weights))
    return torch.stack([g.detach().double().norm() for g in grads]).cpu()
