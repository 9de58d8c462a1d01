"""Probes of the residual stream: how much each branch adds to it, and power-law fits.

In a block with a skip, each sub-layer's skip module receives two tensors, the *stream* s
it was handed and the *branch* output F, and returns their combination (s + F for the
residual skip). The ratio

    ρ = ||F|| / ||s||      (per token, over the feature dimension)

says how large a step the sub-layer takes relative to what is already there. In a
post-norm stack s is the output of a LayerNorm, so ||s|| stays near √D at every depth; in
a pre-norm stack s is the running sum of everything added so far and grows with depth,
so the same-size branch output becomes a smaller and smaller increment (Liu et al. 2020;
Sun et al. 2025, "the curse of depth").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..blocks.skips import Skip

__all__ = ["branch_stream_ratios", "loglog_slope"]


@torch.no_grad()
def branch_stream_ratios(model: nn.Module, *inputs, skips: Sequence[Skip] | None = None,
                         **kwargs) -> torch.Tensor:
    """Mean over tokens of ||branch|| / ||stream|| at each skip, in forward order.

    Runs ``model(*inputs, **kwargs)`` once with forward pre-hooks on the skip modules and
    reads the two tensors each receives, stream and branch, of shape (..., D) (for a
    :class:`~skiplab.models.transformer.SequenceModel`, (B, T, D)); the norm is over the last
    dimension, one value per token, and the ratio is averaged over all tokens.

    Args:
        model: any module whose sub-layers combine stream and branch through
            :class:`~skiplab.blocks.skips.Skip` modules (every skiplab block does).
        skips: the skip modules to read, in the order they run; default: every ``Skip`` in
            ``model.modules()`` (module order, which is forward order for skiplab's stacks).

    Returns:
        (len(skips),) float64 on the CPU. A transformer encoder block has two skips
        (attention, then feed-forward), so an L-block stack gives 2L values.
    """
    if skips is None:
        skips = [m for m in model.modules() if isinstance(m, Skip)]
    if not skips:
        raise ValueError("the model has no Skip modules to probe")
    found: dict[int, torch.Tensor] = {}

    def hook(index):
        def read(_module, args):
            stream, branch = args[0], args[1]
            ratio = branch.double().norm(dim=-1) / stream.double().norm(dim=-1)
            found[index] = ratio.mean()
        return read

    handles = [s.register_forward_pre_hook(hook(i)) for i, s in enumerate(skips)]
    try:
        model(*inputs, **kwargs)
    finally:
        for h in handles:
            h.remove()
    missing = [i for i in range(len(skips)) if i not in found]
    if missing:
        raise RuntimeError(f"skips {missing} did not run in the forward pass")
    return torch.stack([found[i] for i in range(len(skips))]).cpu()


def loglog_slope(x: Sequence[float], y: Sequence[float]) -> float:
    """Least-squares slope b of log y = a + b·log x (the exponent of a power law y ∝ x^b).

    ``x`` and ``y`` are positive sequences of the same length (at least 2).
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise ValueError(f"need two 1-d sequences of the same length >= 2, got {x.shape}, {y.shape}")
    if (x <= 0).any() or (y <= 0).any():
        raise ValueError("a log-log fit needs positive values")
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])
