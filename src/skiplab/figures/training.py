"""Figures of the gradient-flow chapter: per-layer profiles over a grid of settings.

The training curves it also shows come from :mod:`skiplab.figures.series` (re-exported here).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .base import _label, _log_range, trace_colours
from .series import history_figure, layer_series_figure

__all__ = ["history_figure", "layer_profile_figure", "layer_series_figure"]


def layer_profile_figure(
    norms: Mapping[tuple[str, str, str, int], Sequence[float]],
    *,
    title: str = "",
    yaxis_title: str = "gradient norm",
    xaxis_title: str = "layer (input → output)",
    colors: Mapping[str, str] | None = None,
) -> go.Figure:
    """Per-layer values for a grid of (activation, init, architecture, depth), log scale.

    Columns are initialisations, one line per architecture; a dropdown picks the activation
    and a slider the depth. Each activation keeps one y-range over all depths, so moving the
    slider shows the values grow or shrink.

    Args:
        norms: ``{(activation, init, architecture, depth): per-layer values}``; every
            combination of the keys' four sets must be present.
        colors: ``{architecture: colour}``, winning over the book-wide architecture colours.
    """
    activations = list(dict.fromkeys(k[0] for k in norms))
    inits = list(dict.fromkeys(k[1] for k in norms))
    archs = list(dict.fromkeys(k[2] for k in norms))
    depths = sorted({k[3] for k in norms})
    colours = trace_colours(archs, colors)
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
                name=_label(r), legendgroup=r, line={"color": colours[r]},
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
