"""Part of the loss-landscape exercise's checker (:mod:`~skiplab.checks.landscape`): the
parameters its filter normalisation is tried on.

Each case is ``(label, [(name, direction, weights), ...])``, one triple per parameter,
direction and weights of the parameter's shape: conv weights (out, in, kh, kw), Conv1d
weights (out, in, k), Linear weights (out, in), biases and normalisation parameters (n,).
They are drawn from the global random state: the checker draws them under its fixed seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..landscape import random_direction

__all__ = ["ParamCase", "hand_made_case", "hidden_case", "model_case"]

ParamCase = tuple[str, list[tuple[str, torch.Tensor, torch.Tensor]]]
"""(label of the case, [(name, direction, weights) per parameter])."""


def _scaled(shape: tuple[int, ...], scales: Sequence[float]) -> torch.Tensor:
    """Gaussian entries, filter i (slice along dim 0) multiplied by scales[i]."""
    factor = torch.tensor(list(scales)).reshape(-1, *([1] * (len(shape) - 1)))
    return torch.randn(shape) * factor


def hand_made_case() -> ParamCase:
    """Parameters of several kinds whose filters differ in scale by up to 300 times, so that
    normalising the whole tensor instead of each filter shows."""
    shapes: list[tuple[str, tuple[int, ...]]] = [
        ("conv weight (6, 3, 3, 3)", (6, 3, 3, 3)),
        ("BatchNorm weight (6,)", (6,)),
        ("BatchNorm bias (6,)", (6,)),
        ("Conv1d weight (4, 6, 5)", (4, 6, 5)),
        ("1x1 conv weight (4, 6, 1, 1)", (4, 6, 1, 1)),
        ("linear weight (5, 7)", (5, 7)),
        ("linear bias (5,)", (5,)),
    ]
    w_scales = [0.05, 0.3, 1.0, 2.5, 6.0, 15.0]  # one per filter (at most 6 filters)
    params = []
    for label, shape in shapes:
        n = shape[0]
        if len(shape) == 1:
            w = 1 + 0.3 * torch.randn(shape) if "BatchNorm weight" in label else torch.randn(shape)
            d = torch.randn(shape)
        else:
            w = _scaled(shape, w_scales[:n])
            d = _scaled(shape, (0.5 + 2.5 * torch.rand(n)).tolist())
        params.append((label, d, w))
    return "hand-made parameters", params


def model_case() -> ParamCase:
    """The parameters of a tiny conv net (default init) and a raw Gaussian direction drawn
    by :func:`skiplab.landscape.random_direction` with ``normalisation="none"``."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.Linear(16, 3))
    direction = random_direction(model, normalisation="none", zero_1d=False)
    labels = ["Conv2d(3, 4, 3).weight", "Conv2d(3, 4, 3).bias", "BatchNorm2d(4).weight",
              "BatchNorm2d(4).bias", "Linear(16, 3).weight", "Linear(16, 3).bias"]
    weights = [p.detach().clone() for p in model.parameters()]
    return "a tiny conv net's parameters", list(zip(labels, direction, weights))


def hidden_case() -> ParamCase:
    """Other shapes, in float64: a 5x5 conv, a wide Linear, a Conv1d, biases."""
    shapes = [("conv weight (7, 2, 5, 5)", (7, 2, 5, 5)), ("conv bias (7,)", (7,)),
              ("Conv1d weight (3, 7, 2)", (3, 7, 2)), ("linear weight (2, 30)", (2, 30)),
              ("linear bias (2,)", (2,))]
    params = []
    for label, shape in shapes:
        n = shape[0]
        scales = torch.logspace(-2, 1, n).tolist()
        w = _scaled(shape, scales) if len(shape) > 1 else torch.randn(shape)
        d = _scaled(shape, (0.5 + torch.rand(n)).tolist()) if len(shape) > 1 else torch.randn(
            shape)
        params.append((label, d.double(), w.double()))
    return "other parameters, in float64", params
