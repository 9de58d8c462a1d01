"""Figures of the fine-tuning chapter: step-0 and forgetting bars, and a 2-D view of
embeddings before and after fine-tuning. Its retrieval curves come from
:func:`skiplab.figures.series.retrieval_curves_figure` (re-exported here)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .base import FALLBACK, trace_colours
from .series import retrieval_curves_figure

__all__ = ["embedding_scatter_figure", "forgetting_figure", "retrieval_curves_figure"]

# forgetting_figure's bar colours by order: the fallback colours from the second on
_BAR_COLOURS = FALLBACK[1:] + FALLBACK[:1]
# embedding_scatter_figure's colour per class, by order (10 classes before one repeats)
_CLASS_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442",
                  "#000000", "#999999", "#882255")


def forgetting_figure(values: Mapping[str, Mapping[str, float]], *, title: str = "",
                      yaxis_title: str = "precision@5",
                      colors: Mapping[str, str] | None = None) -> go.Figure:
    """Grouped bars: ``{head: {measurement: value}}``, e.g. the target metric at step 0,
    and the source metric after fine-tuning, at the model's output and at the encoder.
    ``colors``: ``{measurement: colour}``; other measurements are coloured by order."""
    heads = list(values)
    measurements = list(dict.fromkeys(k for v in values.values() for k in v))
    colours = trace_colours(measurements, colors, book_colours=False, fallback=_BAR_COLOURS)
    fig = go.Figure()
    for measurement in measurements:
        fig.add_trace(go.Bar(
            x=heads, y=[values[h].get(measurement, np.nan) for h in heads], name=measurement,
            marker_color=colours[measurement],
            hovertemplate=f"%{{x}}<br>{measurement}: %{{y:.3f}}<extra></extra>"))
    fig.update_layout(title={"text": title, "y": 0.97, "yanchor": "top"}, barmode="group",
                      yaxis_title=yaxis_title,
                      legend={"orientation": "h", "y": 1.02, "yanchor": "bottom"},
                      margin={"t": 120})
    return fig


def embedding_scatter_figure(points: Mapping[str, np.ndarray], labels: np.ndarray, *,
                             class_names: Sequence[str] | None = None,
                             title: str = "", colors: Mapping[str, str] | None = None
                             ) -> go.Figure:
    """2-D embeddings (e.g. PCA) side by side, coloured by class.

    Args:
        points: ``{panel title: (N, 2) array}``, the same N examples in every panel.
        labels: (N,) class of each example.
        class_names: the legend name of each class, in sorted class order (default: the
            class values).
        colors: ``{class name: colour}``; other classes are coloured by order.
    """
    panels = list(points)
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=panels)
    classes = np.unique(labels)
    names = [class_names[i] if class_names is not None else str(c)
             for i, c in enumerate(classes)]
    colours = trace_colours(names, colors, book_colours=False, fallback=_CLASS_COLOURS)
    for col, panel in enumerate(panels, start=1):
        xy = np.asarray(points[panel])
        for c, name in zip(classes, names, strict=True):
            mask = labels == c
            fig.add_trace(go.Scatter(
                x=xy[mask, 0], y=xy[mask, 1], mode="markers", name=name, legendgroup=name,
                showlegend=col == 1, marker={"size": 5, "color": colours[name]},
                hovertemplate=f"class {name}<extra></extra>"), row=1, col=col)
    fig.update_layout(title=title, legend={"title": "class"}, height=420)
    return fig
