"""Shared look of every figure: colours and labels per architecture, axis helpers."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["LABELS", "PALETTE"]

# Colour per architecture/variant, the same in every chapter (Okabe-Ito, colour-blind safe).
PALETTE: dict[str, str] = {
    "plain": "#D55E00",
    "plain_bn": "#0072B2",
    "residual": "#009E73",
    "post-activation": "#009E73",
    "pre-activation": "#CC79A7",
    "ResNet": "#009E73",
    "DenseNet": "#0072B2",
    "post-norm": "#D55E00",
    "post-norm + warm-up": "#E69F00",
    "pre-norm": "#009E73",
    "attention only": "#D55E00",
    "attention + skip": "#009E73",
    "attention + FFN, no skip": "#E69F00",
    "pre-norm (at initialisation)": "#56B4E9",
    "pre-norm (trained)": "#009E73",
    "pre-norm, no skips (at initialisation)": "#CC79A7",
    "pre-norm, no skips (trained)": "#D55E00",
}
_FALLBACK = ["#E69F00", "#56B4E9", "#CC79A7", "#F0E442", "#000000"]
LABELS: dict[str, str] = {
    "plain": "plain",
    "plain_bn": "plain + BatchNorm",
    "residual": "residual",
    "normal": "naive N(0, 1)",
    "xavier": "Xavier/Glorot",
    "kaiming": "Kaiming/He",
}


def _colour(name: str, index: int) -> str:
    return PALETTE.get(name, _FALLBACK[index % len(_FALLBACK)])


def _label(name: str) -> str:
    return LABELS.get(name, name)


def _log_range(values: np.ndarray) -> list[float]:
    positive = values[np.isfinite(values) & (values > 0)]
    if positive.size == 0:
        return [-1.0, 1.0]
    low, high = math.log10(positive.min()), math.log10(positive.max())
    pad = max(0.3, 0.05 * (high - low))
    return [low - pad, high + pad]
