"""Figures of the gradient-flow chapter: per-layer profiles and training curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..train import History
from .base import _colour, _label, _log_range

__all__ = ["history_figure", "layer_profile_figure"]


def layer_profile_figure(
    norms: Mapping[tuple[str, str, str, int], Sequence[float]],
    *,
    title: str = "",
    yaxis_title: str = "gradient norm",
    xaxis_title: str = "layer (input → output)",
) -> go.Figure:
    """Per-layer values for a grid of (activation, init, architecture, depth), log scale.

    Columns are initialisations, one line per architecture; a dropdown picks the activation
    and a slider the depth. Each activation keeps one y-range over all depths, so moving the
    slider shows the values grow or shrink.

    Args:
        norms: ``{(activation, init, architecture, depth): per-layer values}``; every
            combination of the keys' four sets must be present.
    """
    activations = list(dict.fromkeys(k[0] for k in norms))
    inits = list(dict.fromkeys(k[1] for k in norms))
    archs = list(dict.fromkeys(k[2] for k in norms))
    depths = sorted({k[3] for k in norms})
    missing = [(a, i, r, d) for a in activations for i in inits for r in archs for d in depths
               if (a, i, r, d) not in norms]
    if missing:
        raise ValueError(f"norms lacks {len(missing)} combinations, e.g. {missing[0]}")

    fig = make_subplots(rows=1, cols=len(inits), shared_yaxes=True, horizontal_spacing=0.03,
                        subplot_titles=[_label(i) for i in inits])
    order = [(a, i, r) for a in activations for i in inits for r in archs]
    start_depth = depths[-1]
    for a, i, r in order:
        y = np.asarray(norms[(a, i, r, start_depth)], dtype=float)
        fig.add_trace(
            go.Scatter(
                x=np.arange(1, len(y) + 1), y=y, mode="lines+markers", marker={"size": 4},
                name=_label(r), legendgroup=r, line={"color": _colour(r, archs.index(r))},
                showlegend=(i == inits[0]), visible=(a == activations[0]),
                hovertemplate=f"{_label(r)}, {a}, {_label(i)}<br>layer %{{x}}: %{{y:.2e}}"
                              "<extra></extra>",
            ),
            row=1, col=inits.index(i) + 1,
        )
    fig.frames = [
        go.Frame(name=str(d), data=[
            go.Scatter(x=np.arange(1, len(norms[(a, i, r, d)]) + 1),
                       y=np.asarray(norms[(a, i, r, d)], dtype=float))
            for a, i, r in order
        ])
        for d in depths
    ]
    ranges = {a: _log_range(np.concatenate([np.asarray(v, dtype=float)
                                            for k, v in norms.items() if k[0] == a]))
              for a in activations}
    axis_names = ["yaxis"] + [f"yaxis{c}" for c in range(2, len(inits) + 1)]
    buttons = [
        {"label": a, "method": "update",
         "args": [{"visible": [o[0] == a for o in order]},
                  {f"{ax}.range": ranges[a] for ax in axis_names}]}
        for a in activations
    ]
    for ax in axis_names:
        fig.layout[ax].update(type="log", range=ranges[activations[0]], exponentformat="power")
    fig.update_yaxes(title_text=yaxis_title, row=1, col=1)
    for c in range(1, len(inits) + 1):
        fig.update_xaxes(title_text=xaxis_title if c == (len(inits) + 1) // 2 else None,
                         row=1, col=c)
    fig.update_layout(
        title={"text": title or None, "y": 0.98, "yanchor": "top"},
        height=540,
        margin={"t": 130, "b": 40, "l": 70, "r": 20},
        legend={"orientation": "h", "x": 1.0, "xanchor": "right", "y": 1.2, "yanchor": "bottom"},
        updatemenus=[{"type": "dropdown", "buttons": buttons, "x": 0.1, "xanchor": "left",
                      "y": 1.2, "yanchor": "bottom", "showactive": True}],
        sliders=[{
            "active": len(depths) - 1,
            "currentvalue": {"prefix": "depth = "},
            "pad": {"t": 60},
            "steps": [{"label": str(d), "method": "animate",
                       "args": [[str(d)], {"mode": "immediate", "frame": {"duration": 0,
                                                                          "redraw": True},
                                           "transition": {"duration": 0}}]}
                      for d in depths],
        }],
        annotations=list(fig.layout.annotations) + [
            {"text": "activation:", "x": 0.1, "xref": "paper", "xanchor": "right",
             "y": 1.2, "yref": "paper", "yanchor": "bottom", "showarrow": False,
             "yshift": 6}],
    )
    return fig


def history_figure(histories: Mapping[str, History], *, title: str = "",
                   log_loss: bool = True) -> go.Figure:
    """Training curves of several runs: a dropdown switches between loss and accuracy.

    Args:
        histories: ``{label: History}``; labels that name an architecture get its colour.
        log_loss: show the loss on a log axis.
    """
    metrics = [("train_loss", "training loss"), ("train_acc", "training accuracy"),
               ("test_acc", "test accuracy")]
    fig = go.Figure()
    labels = list(histories)
    for m, (key, name) in enumerate(metrics):
        for n, label in enumerate(labels):
            h = histories[label]
            fig.add_trace(go.Scatter(
                x=h.step, y=getattr(h, key), mode="lines", name=_label(label),
                legendgroup=label, line={"color": _colour(label, n)}, visible=(m == 0),
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


def layer_series_figure(series: Mapping[str, Sequence[float]], *, xaxis_title: str = "layer",
                        yaxis_title: str = "", title: str = "",
                        log_y: bool = True) -> go.Figure:
    """One line per label over layers 0, 1, 2, ... (log y axis by default)."""
    fig = go.Figure()
    every = np.concatenate([np.asarray(v, dtype=float) for v in series.values()])
    for i, (label, values) in enumerate(series.items()):
        fig.add_trace(go.Scatter(
            x=np.arange(len(values)), y=np.asarray(values, dtype=float), mode="lines+markers",
            name=_label(label), line={"color": _colour(label, i)}, marker={"size": 5},
            hovertemplate=f"{_label(label)}<br>{xaxis_title.split(' (')[0]} %{{x}}: %{{y:.3g}}"
                          "<extra></extra>"))
    yaxis = {"title": yaxis_title}
    if log_y:
        yaxis.update(type="log", range=_log_range(every), exponentformat="power")
    fig.update_layout(title={"text": title or None}, xaxis_title=xaxis_title, yaxis=yaxis,
                      legend={"orientation": "h", "y": -0.22}, height=440)
    return fig
