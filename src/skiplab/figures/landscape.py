"""Figures of loss landscapes: 1-D slices, 2-D contours and 3-D surfaces with a model dropdown."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..landscape import Surface
from ..validation import check_choice
from .base import trace_colours

__all__ = ["slices_figure", "surfaces_figure"]


def _log_loss(loss: np.ndarray) -> np.ndarray:
    return np.log10(np.maximum(np.asarray(loss, dtype=float), 1e-8))


def slices_figure(panels: Mapping[str, Mapping[str, Surface]], *, title: str = "",
                  log_loss: bool = True, colors: Mapping[str, str] | None = None
                  ) -> go.Figure:
    """1-D slices side by side: one panel per key of ``panels``, one line per model in it.

    Args:
        panels: ``{panel title: {line label: 1-D Surface}}``; the same labels in every panel
            get the same colour.
        colors: ``{line label: colour}``; other labels are coloured by order (the first
            label's line is solid and thicker, the others dashed).
    """
    names = list(panels)
    labels = list(dict.fromkeys(label for p in panels.values() for label in p))
    colours = trace_colours(labels, colors, book_colours=False)
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names, shared_yaxes=True,
                        horizontal_spacing=0.06)
    for c, name in enumerate(names, start=1):
        for label, s in panels[name].items():
            if s.betas is not None:
                raise ValueError(f"{name} / {label} is a 2-D surface; slices need 1-D ones")
            i = labels.index(label)
            fig.add_trace(go.Scatter(
                x=s.alphas, y=_log_loss(s.loss) if log_loss else s.loss, mode="lines",
                name=label, legendgroup=label, showlegend=c == 1,
                line={"color": colours[label], "dash": "solid" if i == 0 else "dash",
                      "width": 3 if i == 0 else 2},
                customdata=s.loss,
                hovertemplate=f"{label}<br>α %{{x:.2f}}: loss %{{customdata:.3g}}<extra></extra>",
            ), row=1, col=c)
        fig.update_xaxes(title_text="α (step along the direction)", row=1, col=c)
    fig.update_yaxes(title_text="log10 loss" if log_loss else "loss", row=1, col=1)
    fig.update_layout(title={"text": title or None}, height=420,
                      legend={"orientation": "h", "y": -0.25},
                      margin={"t": 80 if title else 50})
    return fig


def surfaces_figure(surfaces: Mapping[str, Surface], *, kind: str = "contour",
                    notes: Mapping[str, str] | None = None, title: str = "") -> go.Figure:
    """2-D surfaces of log10(loss), one at a time, picked with a dropdown.

    Args:
        surfaces: ``{model label: 2-D Surface}``, all on the same grid.
        kind: ``"contour"`` (filled contour map) or ``"surface"`` (3-D, drag to rotate).
        notes: ``{model label: text}`` shown under the title when that model is picked
            (e.g. its non-convexity fraction).
    """
    check_choice("kind", kind, ("contour", "surface"))
    labels = list(surfaces)
    every = np.concatenate([_log_loss(s.loss).ravel() for s in surfaces.values()])
    low, high = float(every.min()), float(every.max())
    fig = go.Figure()
    for i, label in enumerate(labels):
        s = surfaces[label]
        if s.betas is None:
            raise ValueError(f"{label} is a 1-D surface")
        z = _log_loss(s.loss)
        common = dict(x=s.alphas, y=s.betas, z=z, customdata=s.loss, visible=i == 0,
                      name=label, colorscale="Viridis", zmin=low, zmax=high,
                      hovertemplate="α %{x:.2f}, β %{y:.2f}<br>loss %{customdata:.4g}"
                                    "<extra></extra>")
        if kind == "contour":
            fig.add_trace(go.Contour(**common, contours={"coloring": "heatmap"},
                                     colorbar={"title": "log10 loss"}))
        else:
            common.pop("zmin"), common.pop("zmax")
            fig.add_trace(go.Surface(**common, cmin=low, cmax=high,
                                     colorbar={"title": "log10 loss"}))
    notes = notes or {}

    def heading(label: str) -> str:
        note = notes.get(label, "")
        sub = f"<br><sub>{note}</sub>" if note else ""
        return f"{title + ': ' if title else ''}{label}{sub}"

    buttons = [{"label": label, "method": "update",
                "args": [{"visible": [j == i for j in range(len(labels))]},
                         {"title.text": heading(label)}]}
               for i, label in enumerate(labels)]
    layout = dict(title={"text": heading(labels[0])}, height=560,
                  updatemenus=[{"type": "dropdown", "buttons": buttons, "x": 1.0,
                                "xanchor": "right", "y": 1.12, "yanchor": "bottom"}],
                  margin={"t": 120})
    if kind == "contour":
        layout.update(xaxis_title="α (first direction)", yaxis_title="β (second direction)",
                      width=680)
    else:
        layout.update(scene={"xaxis_title": "α", "yaxis_title": "β",
                             "zaxis_title": "log10 loss", "zaxis": {"range": [low, high]},
                             "camera": {"eye": {"x": 1.5, "y": -1.5, "z": 0.9}},
                             "aspectmode": "manual",
                             "aspectratio": {"x": 1, "y": 1, "z": 0.7}})
    fig.update_layout(**layout)
    return fig
