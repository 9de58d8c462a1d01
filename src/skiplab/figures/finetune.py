"""Figures of the fine-tuning chapter: retrieval curves per head, step-0 bars, and a 2-D
view of embeddings before and after fine-tuning."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..finetune import EmbeddingHistory
from .base import _FALLBACK

__all__ = ["embedding_scatter_figure", "forgetting_figure", "retrieval_curves_figure"]


_SERIES = ["#D55E00", "#999999", "#009E73", "#0072B2", "#000000", "#CC79A7", "#E69F00"]


def _colours(names: Sequence[str]) -> dict[str, str]:
    return {name: _SERIES[i % len(_SERIES)] for i, name in enumerate(names)}


def retrieval_curves_figure(histories: Mapping[str, EmbeddingHistory], *,
                            reference: float | None = None,
                            reference_label: str = "encoder alone", title: str = "",
                            xaxis_title: str = "fine-tuning step") -> go.Figure:
    """Metrics over training steps, one line per run; a dropdown picks the metric.

    ``histories``: objects with ``.step`` and ``.metrics`` (``{name: values}``), e.g.
    :class:`~skiplab.finetune.EmbeddingHistory` or
    :class:`~skiplab.segmentation.SegmentationHistory`. ``reference``: a value of the first
    metric drawn as a dashed line (e.g. the pre-trained encoder's own).
    """
    names = list(histories)
    metrics = list(next(iter(histories.values())).metrics)
    colours = _colours(names)
    fig = go.Figure()
    for m, metric in enumerate(metrics):
        for name in names:
            h = histories[name]
            fig.add_trace(go.Scatter(
                x=h.step, y=h.metrics[metric], mode="lines+markers", name=name,
                legendgroup=name, showlegend=m == 0, visible=m == 0,
                line={"color": colours[name]}, marker={"size": 5},
                hovertemplate=f"{name}<br>step %{{x}}: {metric} %{{y:.3f}}<extra></extra>"))
    if reference is not None:
        fig.add_hline(y=reference, line_dash="dash", line_color="#444",
                      annotation_text=reference_label, annotation_position="bottom right")
    buttons = [{"method": "update", "label": metric,
                "args": [{"visible": [mm == m for mm in range(len(metrics)) for _ in names]},
                         {"yaxis.title.text": metric}]}
               for m, metric in enumerate(metrics)]
    fig.update_layout(
        title=title, xaxis_title=xaxis_title, yaxis_title=metrics[0],
        updatemenus=[{"buttons": buttons, "x": 0.0, "y": 1.02, "xanchor": "left",
                      "yanchor": "bottom", "direction": "down"}] if len(metrics) > 1 else [],
        legend={"orientation": "h", "y": -0.2}, margin={"t": 90})
    return fig


def forgetting_figure(values: Mapping[str, Mapping[str, float]], *, title: str = "",
                      yaxis_title: str = "precision@5") -> go.Figure:
    """Grouped bars: ``{head: {measurement: value}}``, e.g. the target metric at step 0,
    and the source metric after fine-tuning, at the model's output and at the encoder."""
    heads = list(values)
    measurements = list(dict.fromkeys(k for v in values.values() for k in v))
    fig = go.Figure()
    for i, measurement in enumerate(measurements):
        fig.add_trace(go.Bar(
            x=heads, y=[values[h].get(measurement, np.nan) for h in heads], name=measurement,
            marker_color=_FALLBACK[(i + 1) % len(_FALLBACK)],
            hovertemplate=f"%{{x}}<br>{measurement}: %{{y:.3f}}<extra></extra>"))
    fig.update_layout(title={"text": title, "y": 0.97, "yanchor": "top"}, barmode="group",
                      yaxis_title=yaxis_title,
                      legend={"orientation": "h", "y": 1.02, "yanchor": "bottom"},
                      margin={"t": 120})
    return fig


def embedding_scatter_figure(points: Mapping[str, np.ndarray], labels: np.ndarray, *,
                             class_names: Sequence[str] | None = None,
                             title: str = "") -> go.Figure:
    """2-D embeddings (e.g. PCA) side by side, coloured by class.

    Args:
        points: ``{panel title: (N, 2) array}``, the same N examples in every panel.
        labels: (N,) class of each example.
    """
    panels = list(points)
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=panels)
    classes = np.unique(labels)
    palette = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442",
               "#000000", "#999999", "#882255"]
    for col, panel in enumerate(panels, start=1):
        xy = np.asarray(points[panel])
        for i, c in enumerate(classes):
            mask = labels == c
            name = class_names[i] if class_names is not None else str(c)
            fig.add_trace(go.Scatter(
                x=xy[mask, 0], y=xy[mask, 1], mode="markers", name=name, legendgroup=name,
                showlegend=col == 1, marker={"size": 5, "color": palette[i % len(palette)]},
                hovertemplate=f"class {name}<extra></extra>"), row=1, col=col)
    fig.update_layout(title=title, legend={"title": "class"}, height=420)
    return fig
