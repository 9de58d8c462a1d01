"""Estimated GPU time of a training run, from counted FLOPs (shapes only, nothing computed).

The one set of T4 assumptions of the project: ``tools/scale_budget.py`` (the chapters'
estimates) and ``python -m skiplab.experiments --list`` both use it. Estimates, not
measurements: no GPU was used to make them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["LAUNCH_SECONDS", "T4_FP32_FLOPS", "T4_FP64_FLOPS", "forward_flops",
           "kernel_launches_per_step", "training_seconds"]

# Peak fp32 of a T4 is 8.1 TFLOP/s; small convolutional and transformer nets reach a fraction
# of it, so we assume a quarter. fp64 runs at 1/32 of fp32. Every kernel launch costs about
# 10 microseconds whatever its size: a training step launches about three kernels per module
# with parameters (forward, backward, optimiser).
T4_FP32_FLOPS = 8.1e12 * 0.25
T4_FP64_FLOPS = T4_FP32_FLOPS / 32
LAUNCH_SECONDS = 10e-6


def forward_flops(model: nn.Module, example_shape: tuple[int, ...], *,
                  tokens: bool = False) -> int:
    """FLOPs of one example's forward pass (2 per multiply-add), counted on the meta device.

    ``tokens=True`` feeds int64 token ids of ``example_shape`` (sequence models)."""
    model = copy.deepcopy(model).to("meta").train()
    dtype = torch.long if tokens else torch.float32
    x = torch.zeros(2, *example_shape, dtype=dtype, device="meta")
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() // 2


def kernel_launches_per_step(model: nn.Module) -> int:
    """About three kernel launches per module with parameters per training step."""
    return 3 * sum(1 for m in model.modules() if next(m.parameters(False), None) is not None)


def training_seconds(build: Callable[[], nn.Module], example_shape: tuple[int, ...], *,
                     steps: int, batch: int, eval_examples: int = 0, tokens: bool = False,
                     float64: bool = False) -> float:
    """Estimated T4 seconds: a training example counts as three forward passes (forward plus
    a backward twice as costly), plus the kernel launches of every step. The model is built
    on the meta device (shapes only: no weights are drawn)."""
    with torch.device("meta"):
        model = build()
    flops = forward_flops(model, example_shape, tokens=tokens) * (3 * steps * batch
                                                                  + eval_examples)
    return (flops / (T4_FP64_FLOPS if float64 else T4_FP32_FLOPS)
            + steps * kernel_launches_per_step(model) * LAUNCH_SECONDS)
