"""Figures of the symmetry chapter: a two-parameter loss surface with its symmetry line, and
the size of the permutation group, the deciding experiment's replicates. Its curves over training come from
:func:`skiplab.figures.series.series_figure` (re-exported here)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from ..probes.symmetry import log10_symmetry_order
from .base import trace_colours
from .series import series_figure

__all__ = [
    "landscape_contour_figure",
    "landscape_surface_figure",
    "replicate_figure",
    "series_figure",
    "symmetry_order_figure",
]


def _check(a: Sequence[float], b: Sequence[float], z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=float)
    if z.shape != (len(b), len(a)):
        raise ValueError(f"z must be (len(b), len(a)) = ({len(b)}, {len(a)}), got {z.shape}")
    return z


def landscape_contour_figure(a: Sequence[float], b: Sequence[float], z: np.ndarray,
                             paths: Mapping[str, np.ndarray], *, title: str = "",
                             colors: Mapping[str, str] | None = None) -> go.Figure:
    """Contours of log10(loss) over (a, b), the symmetry line a = b, and descent paths.

    Args:
        a, b: grid values along the two axes; z: (len(b), len(a)) losses.
        paths: ``{label: (T, 2) array of (a, b)}``, e.g. from ``TwoUnitToy.descend``.
        colors: ``{label: colour}``; other paths are coloured by order.
    """
    z = _check(a, b, z)
    colours = trace_colours(paths, colors, book_colours=False)
    fig = go.Figure(go.Contour(
        x=list(a), y=list(b), z=np.log10(np.maximum(z, 1e-12)), colorscale="Viridis",
        contours={"coloring": "heatmap"}, colorbar={"title": "log10 loss"},
        hovertemplate="a %{x:.2f}, b %{y:.2f}<br>log10 loss %{z:.2f}<extra></extra>",
    ))
    low, high = max(min(a), min(b)), min(max(a), max(b))
    fig.add_trace(go.Scatter(x=[low, high], y=[low, high], mode="lines",
                             name="symmetry line a = b",
                             line={"color": "white", "dash": "dash"}))
    for label, path in paths.items():
        path = np.asarray(path, dtype=float)
        fig.add_trace(go.Scatter(
            x=path[:, 0], y=path[:, 1], mode="lines+markers", name=label,
            marker={"size": 3}, line={"color": colours[label], "width": 2},
            hovertemplate=f"{label}<br>a %{{x:.3f}}, b %{{y:.3f}}<extra></extra>",
        ))
    fig.update_layout(title={"text": title or None}, height=520, width=640,
                      xaxis_title="a (unit 1)", yaxis_title="b (unit 2)",
                      legend={"orientation": "h", "y": -0.15},
                      margin={"t": 60 if title else 30})
    return fig


def landscape_surface_figure(a: Sequence[float], b: Sequence[float], z: np.ndarray,
                             paths: Mapping[str, np.ndarray],
                             path_losses: Mapping[str, np.ndarray], *,
                             title: str = "", colors: Mapping[str, str] | None = None
                             ) -> go.Figure:
    """The same surface in 3-D (log10 loss), with the paths drawn on it; drag to rotate.

    Args:
        path_losses: ``{label: (T,) losses along that path}``.
        colors: ``{label: colour}``; other paths are coloured by order.
    """
    z = _check(a, b, z)
    colours = trace_colours(paths, colors, book_colours=False)
    fig = go.Figure(go.Surface(x=list(a), y=list(b), z=np.log10(np.maximum(z, 1e-12)),
                               colorscale="Viridis", showscale=False, opacity=0.9))
    for label, path in paths.items():
        path = np.asarray(path, dtype=float)
        losses = np.log10(np.maximum(np.asarray(path_losses[label], dtype=float), 1e-12))
        if len(losses) != len(path):
            raise ValueError(f"path_losses[{label!r}] needs one loss per point of its path")
        fig.add_trace(go.Scatter3d(x=path[:, 0], y=path[:, 1], z=losses, mode="lines",
                                   name=label,
                                   line={"color": colours[label], "width": 6}))
    fig.update_layout(title={"text": title or None}, height=560,
                      scene={"xaxis_title": "a", "yaxis_title": "b",
                             "zaxis_title": "log10 loss"},
                      margin={"t": 60 if title else 30, "l": 0, "r": 0, "b": 0})
    return fig


def symmetry_order_figure(widths: Sequence[int], depths: Sequence[int], *,
                          colors: Mapping[str, str] | None = None) -> go.Figure:
    """log10 of the permutation-group order against width, a dropdown over depth.

    Three nets of ``depth`` hidden layers of equal width: plain (every layer's n! counts);
    residual with one-layer branches (every branch is tied to the stream, which is
    permuted as a whole: one n!); residual with two-layer branches (the stream's n! plus
    the inner layer of each branch, which stays free). ``colors``: ``{kind: colour}`` for
    these three kinds; the others are coloured by order.
    """
    kinds = {
        "plain": lambda n, d: log10_symmetry_order([n] * d),
        "residual, one-layer branches": lambda n, d: log10_symmetry_order(
            [n] * d, [False] + [True] * (d - 1)),
        "residual, two-layer branches": lambda n, d: log10_symmetry_order(
            [n] * d, [False] + [i % 2 == 1 for i in range(d - 1)]),
    }
    colours = trace_colours(kinds, colors, book_colours=False)
    fig = go.Figure()
    for d in depths:
        for kind, order in kinds.items():
            fig.add_trace(go.Scatter(
                x=list(widths), y=[order(n, d) for n in widths], mode="lines+markers",
                name=kind, visible=(d == depths[-1]), line={"color": colours[kind]},
                hovertemplate=f"{kind}, {d} hidden layers<br>width %{{x}}: "
                              "|G| = 10^%{y:.1f}<extra></extra>"))
    buttons = [{"label": f"{d} hidden layers", "method": "update",
                "args": [{"visible": [dd == d for dd in depths for _ in kinds]}]}
               for d in depths]
    fig.update_layout(height=420, xaxis_title="width n (units per hidden layer)",
                      yaxis_title="log10 (number of function-preserving permutations)",
                      updatemenus=[{"buttons": buttons, "active": len(depths) - 1,
                                    "x": 0.0, "xanchor": "left", "y": 1.15, "yanchor": "bottom"}],
                      legend={"orientation": "h", "y": -0.2}, margin={"t": 70})
    return fig


def replicate_figure(values: Mapping[str, Sequence[float]], *, yaxis_title: str,
                     title: str = "", log_y: bool = True,
                     colors: Mapping[str, str] | None = None) -> go.Figure:
    """One column of points per variant (one point per replicate) over a box whose middle line is the median.

    Args:
        values: ``{variant: [value of replicate 0, 1, ...]}``, in the order to draw them.
        log_y: a logarithmic y axis (for losses that span decades).
        colors: ``{variant: colour}``; the others are coloured by order.
    """
    if not values or any(len(v) == 0 for v in values.values()):
        raise ValueError("values needs at least one variant, each with at least one value")
    colours = trace_colours(values, colors, book_colours=False)
    fig = go.Figure()
    for name, vals in values.items():
        vals = [float(v) for v in vals]
        fig.add_trace(go.Box(
            y=vals, name=name, boxpoints="all", jitter=0.3, pointpos=0,
            marker={"color": colours[name]}, line={"color": colours[name]},
            hovertemplate=f"{name}: %{{y:.4g}}<extra></extra>"))
    fig.update_layout(height=420, title=title, yaxis_title=yaxis_title, showlegend=False,
                      yaxis_type="log" if log_y else "linear", margin={"t": 60})
    return fig
