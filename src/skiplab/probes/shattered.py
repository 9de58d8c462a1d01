"""Shattered gradients (Balduzzi et al. 2017): do nearby inputs get similar gradients?

Balduzzi et al. fed a network the points of a line of inputs and looked at the gradient
of its output with respect to the input at each point. In a shallow network, or a deep
residual one, the gradient changes smoothly along the line: neighbouring points get
correlated gradients. In a deep plain network the gradient looks like white noise: the
correlation between neighbours falls towards the correlation between unrelated points as
the depth grows. Their argument: if nearby inputs ask for unrelated updates, gradient
descent has little to work with.

The measurement here, for inputs with any feature shape F:

1. :func:`line_inputs` puts ``points`` inputs evenly on each segment from a start to an
   end (e.g. between two images);
2. :func:`input_gradients` takes the gradient of a scalar read from the model's output
   (by default the sum of its outputs) with respect to each input, one input at a time
   in effect (the model runs in eval mode, so the examples of a batch do not interact);
3. :func:`gradient_autocorrelation` correlates the gradient at point i with the
   gradient at point i + lag, over the input's features (Pearson correlation: centred
   over the features, then the cosine), averaged over the points and the lines.

A network whose readout is linear in its input has the same gradient everywhere, so its
correlation is 1 at every lag; a network whose gradients are white noise scores about 0.
:func:`with_batch_statistics` gives a freshly initialised network the BatchNorm
statistics of a batch of data, so that its eval mode computes what its first training
step computes (at initialisation the running statistics are still 0 and 1).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from .batchnorm import reestimate_bn_

__all__ = ["gradient_autocorrelation", "input_gradients", "line_inputs",
           "shattering_profile", "with_batch_statistics"]


def line_inputs(start: torch.Tensor, end: torch.Tensor, points: int) -> torch.Tensor:
    """Inputs evenly spaced on the segments from ``start`` to ``end``, both included.

    Args:
        start, end: (N, *F) the two ends of N segments (e.g. N pairs of images).
        points: P >= 2 inputs per segment.

    Returns:
        (N, P, *F): ``out[n, i] = start[n] + i / (P - 1) * (end[n] - start[n])``.
    """
    if start.shape != end.shape:
        raise ValueError(f"start {tuple(start.shape)} and end {tuple(end.shape)} differ")
    if points < 2:
        raise ValueError(f"points={points}: a line needs at least 2")
    t = torch.linspace(0, 1, points, dtype=start.dtype, device=start.device)
    t = t.view(1, points, *([1] * (start.dim() - 1)))
    return start.unsqueeze(1) + t * (end - start).unsqueeze(1)


def input_gradients(model: nn.Module, x: torch.Tensor,
                    readout: Callable[[torch.Tensor], torch.Tensor] | None = None
                    ) -> torch.Tensor:
    """The gradient of a scalar output with respect to each input.

    Args:
        model: maps (B, *F) inputs to (B, ...) outputs. It runs in eval mode (BatchNorm
            with its running statistics, so that example b's output depends on example b
            only) and is put back in its former mode afterwards; its parameters' ``.grad``
            are left as they were.
        x: (B, *F) inputs, on the model's device and dtype.
        readout: maps the (B, ...) output to (B,) scalars, one per example; default: the
            sum of each example's outputs.

    Returns:
        (B, *F): row b is d readout(model(x))[b] / d x[b].
    """
    was_training = model.training
    model.eval()
    try:
        x = x.detach().clone().requires_grad_(True)
        out = model(x)
        scalar = out.flatten(1).sum(1) if readout is None else readout(out)
        if scalar.shape != (x.shape[0],):
            raise ValueError(f"readout must give one scalar per example, shape "
                             f"({x.shape[0]},); got {tuple(scalar.shape)}")
        (grad,) = torch.autograd.grad(scalar.sum(), x)
    finally:
        model.train(was_training)
    return grad.detach()


def gradient_autocorrelation(grads: torch.Tensor, max_lag: int | None = None) -> torch.Tensor:
    """Correlation between the gradients of points ``lag`` apart on a line, lag = 0, 1, ...

    Args:
        grads: (N, P, *F) gradients at P points along each of N lines (or (P, *F): one
            line).
        max_lag: the largest lag, at most P - 1 (the default).

    Returns:
        (max_lag + 1,) float64 tensor on the CPU: entry k is the Pearson correlation, over
        the features, between ``grads[n, i]`` and ``grads[n, i + k]``, averaged over every
        i and n; entry 0 is 1. A gradient that is constant over the features (zero
        included) has no direction and counts as uncorrelated (0) with every other.
    """
    if grads.dim() < 2:
        raise ValueError(f"grads must be (N, P, *F) or (P, *F), got {tuple(grads.shape)}")
    if grads.dim() == 2:
        grads = grads.unsqueeze(0)
    g = grads.detach().double().flatten(2)                       # (N, P, D)
    points = g.shape[1]
    max_lag = points - 1 if max_lag is None else max_lag
    if not 0 <= max_lag < points:
        raise ValueError(f"max_lag={max_lag} must be in [0, {points - 1}]")
    g = g - g.mean(dim=2, keepdim=True)
    norm = g.norm(dim=2, keepdim=True)
    g = torch.where(norm > 0, g / norm.clamp_min(1e-300), torch.zeros_like(g))
    out = [torch.tensor(1.0, dtype=torch.float64)]
    for lag in range(1, max_lag + 1):
        out.append((g[:, :-lag] * g[:, lag:]).sum(dim=2).mean().cpu())
    return torch.stack(out).cpu()


@torch.no_grad()
def with_batch_statistics(model: nn.Module, x: torch.Tensor, batch_size: int = 256
                          ) -> nn.Module:
    """A copy of ``model`` whose BatchNorm layers hold the statistics of the data ``x``.

    Every BatchNorm's running mean and variance are reset and re-estimated as the plain
    average over the batches of ``x`` (``momentum=None``) in train mode; the copy is
    returned in eval mode, with its layers' own momentum restored. Applied to a freshly
    initialised network, its eval mode then normalises as its first training step would.
    ``model`` itself is not changed.

    Args:
        x: (B, *F) inputs on the model's device.
        batch_size: examples per forward pass.
    """
    return reestimate_bn_(copy.deepcopy(model), x, batch_size)


def shattering_profile(model: nn.Module, start: torch.Tensor, end: torch.Tensor, points: int,
                       max_lag: int | None = None,
                       readout: Callable[[torch.Tensor], torch.Tensor] | None = None
                       ) -> torch.Tensor:
    """:func:`gradient_autocorrelation` of the input gradients along the lines from
    ``start`` to ``end`` ((N, *F) each, ``points`` inputs per line): (max_lag + 1,)."""
    x = line_inputs(start, end, points)                            # (N, P, *F)
    grads = input_gradients(model, x.flatten(0, 1), readout)
    return gradient_autocorrelation(grads.view(x.shape), max_lag)
