"""Shared look of every figure: the book-wide colours and labels, the one colour rule,
axis helpers.

The colour of a trace named ``name`` is, in this order:

1. ``colors[name]``, when the caller passes ``colors=`` to the builder (explicit colours win);
2. ``PALETTE[name]``, the book-wide vocabulary: the architecture and skip kinds that mean
   the same thing in every chapter (builders whose labels are architectures consult it;
   builders of free-form series colour by order only, as their docstrings say);
3. else the fallback sequence, by the name's first appearance in that figure: the same
   names in the same order always get the same colours.

A chapter's own legends ("post-norm + warm-up") are not added here: the chapter keeps a
mapping beside its builders, e.g. :data:`skiplab.figures.architectures.TRANSFORMER_PALETTE`,
and passes it as ``colors=``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

__all__ = ["FALLBACK", "LABELS", "PALETTE", "trace_colours"]

# Colour per architecture/skip kind, the same in every chapter (Okabe-Ito, colour-blind safe).
PALETTE: dict[str, str] = {
    "plain": "#D55E00",
    "plain_bn": "#0072B2",
    "residual": "#009E73",
    "post-activation": "#009E73",
    "pre-activation": "#CC79A7",
    "ResNet": "#009E73",
    "DenseNet": "#0072B2",
    "post-norm": "#D55E00",
    "pre-norm": "#009E73",
}
# Colours of names no palette knows, in order of first appearance (Okabe-Ito).
FALLBACK: tuple[str, ...] = ("#E69F00", "#56B4E9", "#CC79A7", "#F0E442", "#000000")
# Legend text per book-wide name (architectures, initialisations); other names show as given.
LABELS: dict[str, str] = {
    "plain": "plain",
    "plain_bn": "plain + BatchNorm",
    "residual": "residual",
    "normal": "naive N(0, 1)",
    "xavier": "Xavier/Glorot",
    "kaiming": "Kaiming/He",
}


def trace_colours(names: Iterable[str], colors: Mapping[str, str] | None = None, *,
                  book_colours: bool = True,
                  fallback: Sequence[str] = FALLBACK) -> dict[str, str]:
    """The colour of each name, by the rule of this module.

    Args:
        names: the trace names of one figure, in drawing order (repeats are ignored).
        colors: explicit ``{name: colour}``; they win over everything else.
        book_colours: consult :data:`PALETTE` (for labels that name architectures).
        fallback: the colours of the remaining names, by first appearance.

    >>> trace_colours(["plain", "mine", "residual"], {"residual": "black"})
    {'plain': '#D55E00', 'mine': '#56B4E9', 'residual': 'black'}
    """
    explicit = colors or {}
    book = PALETTE if book_colours else {}
    resolved = {}
    for index, name in enumerate(dict.fromkeys(names)):
        if name in explicit:
            resolved[name] = explicit[name]
        elif name in book:
            resolved[name] = book[name]
        else:
            resolved[name] = fallback[index % len(fallback)]
    return resolved


def _label(name: str) -> str:
    return LABELS.get(name, name)


def _log_range(values: np.ndarray) -> list[float]:
    positive = values[np.isfinite(values) & (values > 0)]
    if positive.size == 0:
        return [-1.0, 1.0]
    low, high = math.log10(positive.min()), math.log10(positive.max())
    pad = max(0.3, 0.05 * (high - low))
    return [low - pad, high + pad]
