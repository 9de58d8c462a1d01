"""Figures of the symmetry chapter: a two-parameter loss surface with its symmetry line."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from .base import _FALLBACK

__all__ = [
    "landscape_contour_figure",
    "landscape_surface_figure",
    "series_figure",
    "symmetry_order_figure",
]


def _check(a: Sequence[float], b: Sequence[float], z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=float)
    if z.shape != (len(b), len(a)):
        raise ValueError(f"z must be (len(b), len(a)) = ({len(b)}, {len(a)}), got {z.shape}")
    return z


def landscape_contour_figure(a: Sequence[float], b: Sequence[float], z: np.ndarray,
                             paths: Mapping[str, np.ndarray], *, title: str = "") -> go.Figure:
    """Contours of log10(loss) over (a, b), the symmetry line a = b, and descent paths.

    Args:
        a, b: grid values along the two axes; z: (len(b), len(a)) losses.
        paths: ``{label: (T, 2) array of (a, b)}``, e.g. from ``TwoUnitToy.descend``.
    """
    z = _check(a, b, z)
    fig = go.Figure(go.Contour(
        x=list(a), y=list(b), z=np.log10(np.maximum(z, 1e-12)), colorscale="Viridis",
        contours={"coloring": "heatmap"}, colorbar={"title": "log10 loss"},
        hovertemplate="a %{x:.2f}, b %{y:.2f}<br>log10 loss %{z:.2f}<extra></extra>",
    ))
    low, high = max(min(a), min(b)), min(max(a), max(b))
    fig.add_trace(go.Scatter(x=[low, high], y=[low, high], mode="lines",
                             name="symmetry line a = b",
                             line={"color": "white", "dash": "dash"}))
    for i, (label, path) in enumerate(paths.items()):
        path = np.asarray(path, dtype=float)
        fig.add_trace(go.Scatter(
            x=path[:, 0], y=path[:, 1], mode="lines+markers", name=label,
            marker={"size": 3}, line={"color": _FALLBACK[i % len(_FALLBACK)], "width": 2},
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
                             title: str = "") -> go.Figure:
    """The same surface in 3-D (log10 loss), with the paths drawn on it; drag to rotate.

    Args:
        path_losses: ``{label: (T,) losses along that path}``.
    """
    z = _check(a, b, z)
    fig = go.Figure(go.Surface(x=list(a), y=list(b), z=np.log10(np.maximum(z, 1e-12)),
                               colorscale="Viridis", showscale=False, opacity=0.9))
    for i, (label, path) in enumerate(paths.items()):
        path = np.asarray(path, dtype=float)
        losses = np.log10(np.maximum(np.asarray(path_losses[label], dtype=float), 1e-12))
        if len(losses) != len(path):
            raise ValueError(f"path_losses[{label!r}] needs one loss per point of its path")
        fig.add_trace(go.Scatter3d(x=path[:, 0], y=path[:, 1], z=losses, mode="lines",
                                   name=label,
                                   line={"color": _FALLBACK[i % len(_FALLBACK)], "width": 6}))
    fig.update_layout(title={"text": title or None}, height=560,
                      scene={"xaxis_title": "a", "yaxis_title": "b",
                             "zaxis_title": "log10 loss"},
                      margin={"t": 60 if title else 30, "l": 0, "r": 0, "b": 0})
    return fig


def series_figure(steps: Sequence[int], series: Mapping[str, Sequence[float]], *,
                  yaxis_title: str, title: str = "", log_y: bool = False) -> go.Figure:
    """Lines over training steps, one per label (hover shows the exact value).

    Args:
        steps: (T,) steps; series: ``{label: (T,) values}``.
    """
    fig = go.Figure()
    for i, (label, values) in enumerate(series.items()):
        if len(values) != len(steps):
            raise ValueError(f"series {label!r} has {len(values)} values for {len(steps)} steps")
        fig.add_trace(go.Scatter(
            x=list(steps), y=list(values), mode="lines", name=label,
            line={"color": _FALLBACK[i % len(_FALLBACK)], "width": 2},
            hovertemplate=f"{label}<br>step %{{x}}: %{{y:.4g}}<extra></extra>"))
    fig.update_layout(title={"text": title or None}, height=400, xaxis_title="training step",
                      yaxis={"title": yaxis_title, "type": "log" if log_y else "linear"},
                      margin={"t": 60 if title else 30})
    return fig


def symmetry_order_figure(widths: Sequence[int], depths: Sequence[int]) -> go.Figure:
    """log10 of the permutation-group order against width, a dropdown over depth.

    Three nets of ``depth`` hidden layers of equal width: plain (every layer's n! counts);
    residual with one-layer branches (every branch is tied to the stream, which is
    permuted as a whole: one n!); residual with two-layer branches (the stream's n! plus
    the inner layer of each branch, which stays free).
    """
    from ..probes.symmetry import log10_symmetry_order

    kinds = {
        "plain": lambda n, d: log10_symmetry_order([n] * d),
        "residual, one-layer branches": lambda n, d: log10_symmetry_order(
            [n] * d, [False] + [True] * (d - 1)),
        "residual, two-layer branches": lambda n, d: log10_symmetry_order(
            [n] * d, [False] + [i % 2 == 1 for i in range(d - 1)]),
    }
    fig = go.Figure()
    for d in depths:
        for i, (kind, order) in enumerate(kinds.items()):
            fig.add_trace(go.Scatter(
                x=list(widths), y=[order(n, d) for n in widths], mode="lines+markers",
                name=kind, visible=(d == depths[-1]), line={"color": _FALLBACK[i]},
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
