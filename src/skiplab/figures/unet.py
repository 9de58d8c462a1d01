"""Figures of the U-Net chapter: an image grid with a slider over examples, and per-level
line profiles on a log axis."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .base import _log_range

__all__ = ["level_profile_figure", "segmentation_grid_figure"]

_LINES = ["#009E73", "#D55E00", "#0072B2", "#CC79A7", "#E69F00", "#000000"]


def segmentation_grid_figure(images: np.ndarray, panels: Mapping[str, np.ndarray], *,
                             title: str = "") -> go.Figure:
    """Input image and label maps side by side; a slider picks the example.

    Args:
        images: (N, H, W) inputs, shown in grey.
        panels: ``{title: (N, H, W) maps}``, e.g. the ground truth and each model's
            prediction (0 background, 1 foreground), shown in two colours.
    """
    images = np.asarray(images, dtype=float)
    names = ["input", *panels]
    titles = [name.replace(", ", ",<br>").replace(" (", "<br>(") for name in names]
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=titles,
                        horizontal_spacing=0.015)
    n = len(images)
    fig.add_trace(go.Heatmap(z=images[0], colorscale="Greys", reversescale=True,
                             showscale=False, hovertemplate="x %{x}, y %{y}: %{z:.2f}"
                             "<extra></extra>"), row=1, col=1)
    for col, name in enumerate(panels, start=2):
        fig.add_trace(go.Heatmap(z=np.asarray(panels[name][0], dtype=float), zmin=0, zmax=1,
                                 colorscale=[[0, "#F2F2F2"], [1, "#0072B2"]], showscale=False,
                                 hovertemplate=f"{name}<br>x %{{x}}, y %{{y}}: %{{z}}"
                                 "<extra></extra>"), row=1, col=col)
    steps = []
    for i in range(n):
        z = [images[i]] + [np.asarray(panels[name][i], dtype=float) for name in panels]
        steps.append({"method": "restyle", "label": str(i + 1), "args": [{"z": z}]})
    fig.update_annotations(font_size=11)
    fig.update_layout(title=title, height=330, plot_bgcolor="white",
                      sliders=[{"active": 0, "currentvalue": {"prefix": "example: "},
                                "steps": steps, "pad": {"t": 10}}],
                      margin={"l": 10, "r": 10, "t": 100, "b": 10})
    for axis in fig.layout:
        if axis.startswith(("xaxis", "yaxis")):
            fig.layout[axis].update(showticklabels=False, showgrid=False, zeroline=False)
            if axis.startswith("yaxis"):
                fig.layout[axis].update(autorange="reversed", scaleanchor=axis.replace(
                    "yaxis", "x"), constrain="domain")
    return fig


def level_profile_figure(series: Mapping[str, Sequence[float]], *,
                         xaxis_title: str = "encoder level (0 = full resolution)",
                         yaxis_title: str = "‖∂L/∂W‖ of the level's first convolution",
                         title: str = "") -> go.Figure:
    """One line per configuration over levels, log y axis (values spanning many orders)."""
    fig = go.Figure()
    every = np.concatenate([np.asarray(v, dtype=float) for v in series.values()])
    for i, (label, values) in enumerate(series.items()):
        fig.add_trace(go.Scatter(
            x=np.arange(len(values)), y=list(values), mode="lines+markers",
            name=label, line={"color": _LINES[i % len(_LINES)],
                              "dash": "dash" if "no long" in label else "solid"},
            hovertemplate=f"{label}<br>level %{{x}}: %{{y:.3g}}<extra></extra>"))
    fig.update_layout(title=title, xaxis={"title": xaxis_title, "dtick": 1},
                      yaxis={"title": yaxis_title, "type": "log", "range": _log_range(every)},
                      legend={"orientation": "h", "y": -0.25})
    return fig
