"""Generic line charts that know no chapter: one line per label over training steps or
layers, coloured by the rule of :mod:`skiplab.figures.base` (``colors=`` wins)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np
import plotly.graph_objects as go

from ..train import History
from .base import _label, _log_range, trace_colours

__all__ = ["depth_law_figure", "history_figure", "layer_series_figure", "retrieval_curves_figure",
           "series_figure"]

# retrieval_curves_figure's colours by order (vermillion, grey, green, blue, ...)
_RUN_COLOURS = ("#D55E00", "#999999", "#009E73", "#0072B2", "#000000", "#CC79A7", "#E69F00")


class MetricHistory(Protocol):
    """What :func:`retrieval_curves_figure` reads: recorded steps and ``{metric: values}``
    (e.g. :class:`~skiplab.finetune.EmbeddingHistory`,
    :class:`~skiplab.segmentation.SegmentationHistory`)."""

    step: list[int]
    metrics: dict[str, list[float]]


def series_figure(steps: Sequence[int], series: Mapping[str, Sequence[float]], *,
                  yaxis_title: str, title: str = "", log_y: bool = False,
                  colors: Mapping[str, str] | None = None) -> go.Figure:
    """Lines over training steps, one per label (hover shows the exact value).

    Args:
        steps: (T,) steps; series: ``{label: (T,) values}``.
        colors: ``{label: colour}``; other labels are coloured by order.
    """
    colours = trace_colours(series, colors, book_colours=False)
    fig = go.Figure()
    for label, values in series.items():
        if len(values) != len(steps):
            raise ValueError(f"series {label!r} has {len(values)} values for {len(steps)} steps")
        fig.add_trace(go.Scatter(
            x=list(steps), y=list(values), mode="lines", name=label,
            line={"color": colours[label], "width": 2},
            hovertemplate=f"{label}<br>step %{{x}}: %{{y:.4g}}<extra></extra>"))
    fig.update_layout(title={"text": title or None}, height=400, xaxis_title="training step",
                      yaxis={"title": yaxis_title, "type": "log" if log_y else "linear"},
                      margin={"t": 60 if title else 30})
    return fig


def layer_series_figure(series: Mapping[str, Sequence[float]], *, xaxis_title: str = "layer",
                        yaxis_title: str = "", title: str = "", log_y: bool = True,
                        colors: Mapping[str, str] | None = None) -> go.Figure:
    """One line per label over layers 0, 1, 2, ... (log y axis by default).

    Args:
        series: ``{label: values per layer}``.
        colors: ``{label: colour}``; labels that name an architecture get its colour.
    """
    colours = trace_colours(series, colors)
    fig = go.Figure()
    every = np.concatenate([np.asarray(v, dtype=float) for v in series.values()])
    for label, values in series.items():
        fig.add_trace(go.Scatter(
            x=np.arange(len(values)), y=np.asarray(values, dtype=float), mode="lines+markers",
            name=_label(label), line={"color": colours[label]}, marker={"size": 5},
            hovertemplate=f"{_label(label)}<br>{xaxis_title.split(' (')[0]} %{{x}}: %{{y:.3g}}"
                          "<extra></extra>"))
    yaxis = {"title": yaxis_title}
    if log_y:
        yaxis.update(type="log", range=_log_range(every), exponentformat="power")
    fig.update_layout(title={"text": title or None}, xaxis_title=xaxis_title, yaxis=yaxis,
                      legend={"orientation": "h", "y": -0.22}, height=440)
    return fig


def depth_law_figure(depths: Sequence[int], series: Mapping[str, Sequence[float]], *,
                     yaxis_title: str, title: str = "",
                     theory: Mapping[str, Sequence[float]] | None = None,
                     colors: Mapping[str, str] | None = None) -> go.Figure:
    """A quantity against the network's depth on log-log axes, one line per label, with
    optional dashed theory lines (a power law L^k is a straight line of slope k).

    Args:
        depths: (K,) depths; series: ``{label: (K,) values}``; theory: ``{label: (K,)
            values}`` drawn dashed in grey.
        colors: ``{label: colour}``; other labels are coloured by order.
    """
    colours = trace_colours(series, colors, book_colours=False)
    fig = go.Figure()
    x = np.asarray(depths, dtype=float)
    for label, values in series.items():
        fig.add_trace(go.Scatter(
            x=x, y=np.asarray(values, dtype=float), mode="lines+markers", name=_label(label),
            line={"color": colours[label]},
            hovertemplate=f"{_label(label)}<br>depth %{{x}}: %{{y:.3g}}<extra></extra>"))
    for label, values in (theory or {}).items():
        fig.add_trace(go.Scatter(
            x=x, y=np.asarray(values, dtype=float), mode="lines", name=_label(label),
            line={"color": "#777777", "dash": "dash"},
            hovertemplate=f"{_label(label)}<br>depth %{{x}}: %{{y:.3g}}<extra></extra>"))
    every = np.concatenate([np.asarray(v, dtype=float) for v in
                            (*series.values(), *(theory or {}).values())])
    fig.update_layout(title={"text": title or None}, xaxis={"title": "depth (blocks)",
                      "type": "log"}, yaxis={"title": yaxis_title, "type": "log",
                      "range": _log_range(every), "exponentformat": "power"},
                      legend={"orientation": "h", "y": -0.22}, height=460)
    return fig


def history_figure(histories: Mapping[str, History], *, title: str = "",
                   log_loss: bool = True, colors: Mapping[str, str] | None = None
                   ) -> go.Figure:
    """Training curves of several runs: a dropdown switches between loss and accuracy.

    Args:
        histories: ``{label: History}``; labels that name an architecture get its colour.
        log_loss: show the loss on a log axis.
        colors: ``{label: colour}``, winning over the architecture colours.
    """
    metrics = [("train_loss", "training loss"), ("train_acc", "training accuracy"),
               ("test_acc", "test accuracy")]
    labels = list(histories)
    colours = trace_colours(labels, colors)
    fig = go.Figure()
    for m, (key, name) in enumerate(metrics):
        for label in labels:
            h = histories[label]
            fig.add_trace(go.Scatter(
                x=h.step, y=getattr(h, key), mode="lines", name=_label(label),
                legendgroup=label, line={"color": colours[label]}, visible=(m == 0),
                hovertemplate=f"{_label(label)}<br>step %{{x}}: %{{y:.3f}}<extra></extra>",
            ))
    buttons = []
    for m, (key, name) in enumerate(metrics):
        visible = [mm == m for mm in range(len(metrics)) for _ in labels]
        is_loss = key.endswith("loss")
        buttons.append({"label": name, "method": "update",
                        "args": [{"visible": visible},
                                 {"yaxis.title.text": name,
                                  "yaxis.type": "log" if (is_loss and log_loss) else "linear",
                                  "yaxis.autorange": True}]})
    fig.update_layout(
        title={"text": title or None, "x": 0.0, "xanchor": "left"}, height=440,
        xaxis_title="step", yaxis_title=metrics[0][1],
        yaxis_type="log" if log_loss else "linear", margin={"t": 110},
        updatemenus=[{"type": "dropdown", "buttons": buttons, "x": 1.0, "xanchor": "right",
                      "y": 1.08, "yanchor": "bottom"}],
    )
    return fig


def retrieval_curves_figure(histories: Mapping[str, MetricHistory], *,
                            reference: float | None = None,
                            reference_label: str = "encoder alone", title: str = "",
                            xaxis_title: str = "fine-tuning step",
                            colors: Mapping[str, str] | None = None) -> go.Figure:
    """Metrics over training steps, one line per run; a dropdown picks the metric.

    ``histories``: objects with ``.step`` and ``.metrics`` (``{name: values}``), e.g.
    :class:`~skiplab.finetune.EmbeddingHistory` or
    :class:`~skiplab.segmentation.SegmentationHistory`. ``reference``: a value of the first
    metric drawn as a dashed line (e.g. the pre-trained encoder's own). ``colors``:
    ``{run: colour}``; other runs are coloured by order.
    """
    names = list(histories)
    metrics = list(next(iter(histories.values())).metrics)
    colours = trace_colours(names, colors, book_colours=False, fallback=_RUN_COLOURS)
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
