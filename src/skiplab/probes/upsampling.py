"""Transposed convolution as a matrix, and the checkerboard test (Odena et al. 2016).

A convolution is linear in its input: for a fixed weight it is a matrix A, y = A x. Its
*transpose* Aᵀ maps the output space back to the input space; that is exactly what
``nn.ConvTranspose2d`` computes when given the convolution's weight tensor (PyTorch stores
a convolution's weight as (out, in, kh, kw) and a transposed convolution's as
(in, out, kh, kw), so the same tensor fits both), with the same stride and padding.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["checkerboard_share", "conv_matrix"]


def conv_matrix(conv: nn.Conv2d, input_shape: tuple[int, int, int]) -> torch.Tensor:
    """The matrix A of the bias-free convolution on inputs of ``input_shape`` (C, H, W):
    ``A @ x.flatten() == conv(x).flatten()``. Computed as the Jacobian, in float64, on the
    convolution's device.

    Shapes: returns (C_out * H_out * W_out, C * H * W).
    """
    weight = conv.weight.detach().double()

    def f(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x.view(1, *input_shape), weight, None, conv.stride, conv.padding,
                        conv.dilation, conv.groups).flatten()

    x = torch.zeros(math.prod(input_shape), dtype=torch.float64, device=weight.device)
    return torch.autograd.functional.jacobian(f, x)


@torch.no_grad()
def checkerboard_share(upsampler: nn.Module, channels: int, size: int = 16,
                       border: int = 2) -> float:
    """Share of the output's variance explained by a period-2 (2x2 phase) pattern when the
    input is constant (all ones): 1 means a pure checkerboard, 0 none (a flat output has
    no variance at all and scores 0). The ``border`` pixels on each side are left out
    (padding effects are not the artifact). The share is scale-free: it says whether the
    output is periodic, not how strong the pattern is next to the mean."""
    reference = next(upsampler.parameters())
    out = upsampler(torch.ones(1, channels, size, size, dtype=reference.dtype,
                               device=reference.device))[0].double()
    out = out[:, border:out.shape[1] - border, border:out.shape[2] - border]
    h, w = out.shape[1] // 2 * 2, out.shape[2] // 2 * 2
    out = out[:, :h, :w]
    total = ((out - out.mean(dim=(1, 2), keepdim=True)) ** 2).sum()
    if total == 0:
        return 0.0
    phases = out.reshape(out.shape[0], h // 2, 2, w // 2, 2)
    phase_means = phases.mean(dim=(1, 3), keepdim=True)         # one mean per 2x2 phase
    pattern = phase_means.expand_as(phases).reshape_as(out)
    explained = ((pattern - out.mean(dim=(1, 2), keepdim=True)) ** 2).sum()
    return (explained / total).item()
