"""Figures of the degradation chapter: curves per depth, gradients in time, shattered
gradients, lesions, paths."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from ..train import History
from .base import PALETTE, _label, trace_colours

__all__ = [
    "depth_curves_figure",
    "final_loss_figure",
    "gradient_heatmap_figure",
    "lesion_figure",
    "path_length_figure",
    "shattering_figure",
]

Runs = Mapping[tuple[str, int], History]


def _depth_colours(depths: Sequence[int]) -> dict[int, str]:
    if len(depths) == 1:
        return {depths[0]: "#0072B2"}
    points = [0.1 + 0.8 * i / (len(depths) - 1) for i in range(len(depths))]
    return dict(zip(depths, sample_colorscale("Viridis", points)))


def _split_runs(runs: Runs) -> tuple[list[str], list[int]]:
    archs = list(dict.fromkeys(a for a, _ in runs))
    depths = sorted({d for _, d in runs})
    missing = [(a, d) for a in archs for d in depths if (a, d) not in runs]
    if missing:
        raise ValueError(f"runs lacks {missing}; every architecture needs every depth")
    return archs, depths


def depth_curves_figure(runs: Runs, *, title: str = "",
                        colors: Mapping[int, str] | None = None) -> go.Figure:
    """Training curves, one panel per architecture and one line per depth.

    A dropdown picks the quantity (training loss, training error, test error) and another the
    depth ("all depths" or one); clicking a depth in the legend hides it in both panels.

    Args:
        runs: ``{(architecture, depth): History}``, e.g. ``("plain", 56)``.
        colors: ``{depth: colour}``, winning over the default Viridis colour per depth.
    """
    archs, depths = _split_runs(runs)
    colours = {**_depth_colours(depths), **(colors or {})}
    fig = make_subplots(rows=1, cols=len(archs), shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=[_label(a) for a in archs])
    order = [(a, d) for a in archs for d in depths]
    metrics = {
        "training loss": lambda h: h.train_loss,
        "training error": lambda h: [1.0 - a for a in h.train_acc],
        "test error": lambda h: [1.0 - a for a in h.test_acc],
    }
    first = next(iter(metrics.values()))
    for a, d in order:
        h = runs[(a, d)]
        fig.add_trace(go.Scatter(
            x=h.step, y=first(h), mode="lines", name=f"depth {d}", legendgroup=str(d),
            showlegend=(a == archs[0]), line={"color": colours[d], "width": 2},
            hovertemplate=f"{_label(a)}-{d}<br>step %{{x}}: %{{y:.4g}}<extra></extra>",
        ), row=1, col=archs.index(a) + 1)
    axes = ["yaxis"] + [f"yaxis{c}" for c in range(2, len(archs) + 1)]
    metric_buttons = []
    for name, get in metrics.items():
        log = name.endswith("loss")
        layout = {f"{ax}.type": "log" if log else "linear" for ax in axes}
        layout.update({f"{ax}.autorange": True for ax in axes})
        layout["yaxis.title.text"] = name
        metric_buttons.append({"label": name, "method": "update",
                               "args": [{"y": [get(runs[k]) for k in order]}, layout]})
    depth_buttons = [{"label": "all depths", "method": "restyle",
                      "args": [{"visible": [True] * len(order)}]}]
    depth_buttons += [{"label": f"depth {d}", "method": "restyle",
                       "args": [{"visible": [dd == d for _, dd in order]}]} for d in depths]
    for ax in axes:
        fig.layout[ax].update(type="log", exponentformat="power")
    fig.update_yaxes(title_text="training loss", row=1, col=1)
    fig.update_xaxes(title_text="step")
    fig.update_layout(
        title={"text": title or None, "y": 0.98, "yanchor": "top"}, height=480,
        margin={"t": 120, "b": 40, "l": 70, "r": 20},
        legend={"orientation": "h", "x": 1.0, "xanchor": "right", "y": 1.14,
                "yanchor": "bottom"},
        updatemenus=[
            {"type": "dropdown", "buttons": metric_buttons, "x": 0.0, "xanchor": "left",
             "y": 1.14, "yanchor": "bottom"},
            {"type": "dropdown", "buttons": depth_buttons, "x": 0.2, "xanchor": "left",
             "y": 1.14, "yanchor": "bottom"},
        ],
    )
    return fig


def final_loss_figure(runs: Runs, *, records: int = 2, title: str = "",
                      colors: Mapping[str, str] | None = None) -> go.Figure:
    """Final training loss against depth, one line per architecture (log scale).

    The degradation problem in one picture: the plain line rises with depth. ``colors``:
    ``{architecture: colour}``, winning over the book-wide architecture colours.
    """
    archs, depths = _split_runs(runs)
    colours = trace_colours(archs, colors)
    fig = go.Figure()
    for a in archs:
        fig.add_trace(go.Scatter(
            x=depths, y=[runs[(a, d)].final("train_loss", records) for d in depths],
            mode="lines+markers", name=_label(a), line={"color": colours[a]},
            marker={"size": 9},
            hovertemplate=f"{_label(a)}-%{{x}}<br>final training loss %{{y:.3g}}<extra></extra>",
        ))
    fig.update_layout(
        title={"text": title or None}, height=380, xaxis={"title": "depth (weight layers)",
                                                          "tickvals": depths},
        yaxis={"title": "final training loss", "type": "log", "exponentformat": "power"},
        margin={"t": 60 if title else 30, "b": 40},
    )
    return fig


def gradient_heatmap_figure(steps: Sequence[int], norms: np.ndarray,
                            layer_labels: Sequence[str] | None = None, *,
                            yaxis_title: str = "layer (input → output)",
                            title: str = "") -> go.Figure:
    """How strongly the loss signal reaches each layer, over training (log10 colour scale).

    Args:
        steps: (T,) training steps at which the norms were recorded.
        norms: (T, L) gradient norms, layer 0 nearest the input.
        layer_labels: (L,) names for hover; default "1" ... "L".
    """
    norms = np.asarray(norms, dtype=float)
    if norms.ndim != 2 or norms.shape[0] != len(steps):
        raise ValueError(f"norms must be (T, L) with T = len(steps) = {len(steps)}, "
                         f"got {norms.shape}")
    labels = list(layer_labels) if layer_labels is not None else [
        str(i + 1) for i in range(norms.shape[1])]
    z = np.log10(np.maximum(norms.T, 1e-300))
    low, high = math.floor(z.min()), math.ceil(z.max())
    ticks = list(range(low, high + 1))
    fig = go.Figure(go.Heatmap(
        x=list(steps), y=labels, z=z, customdata=norms.T,
        text=[[label] * len(steps) for label in labels], colorscale="Viridis",
        zmin=low, zmax=high,
        colorbar={"title": "norm", "tickvals": ticks, "ticktext": [f"1e{t}" for t in ticks]},
        hovertemplate="step %{x}<br>%{text}<br>norm %{customdata:.3g}<extra></extra>",
    ))
    fig.update_layout(title={"text": title or None}, height=440,
                      xaxis_title="training step", yaxis_title=yaxis_title,
                      margin={"t": 60 if title else 30, "b": 40})
    return fig


def _net_colour(name: str, colors: Mapping[str, str] | None) -> str:
    """A net's colour: explicit, book-wide, else by its name (``resnet-20``, ``plain-20``)."""
    if colors and name in colors:
        return colors[name]
    return PALETTE.get(name) or PALETTE["residual" if "res" in name.lower() else "plain"]


def lesion_figure(accuracy: Mapping[str, Mapping[int, float]], intact: Mapping[str, float],
                  *, chance: float, unit: Mapping[str, str] | None = None,
                  title: str = "", chance_label: str = "chance",
                  colors: Mapping[str, str] | None = None) -> go.Figure:
    """Test accuracy after deleting one part, one panel per net, with intact and chance lines.

    Args:
        accuracy: ``{net label: {index deleted: accuracy}}``.
        intact: ``{net label: accuracy of the intact net}``.
        chance: accuracy of guessing (1 / classes), or another baseline named by
            ``chance_label``.
        unit: ``{net label: "block" | "layer"}`` for the axis titles.
        colors: ``{net label: colour}``. Other labels take their book-wide colour, else
            the residual colour when they mention "res" (``resnet-20``) and the plain one
            otherwise (``plain-20``).
    """
    names = list(accuracy)
    fig = make_subplots(rows=1, cols=len(names), shared_yaxes=True, horizontal_spacing=0.05,
                        subplot_titles=[f"{n}: intact {intact[n]:.3f}" for n in names])
    for c, name in enumerate(names, start=1):
        what = (unit or {}).get(name, "part")
        idx = list(accuracy[name])
        fig.add_trace(go.Bar(
            x=idx, y=[accuracy[name][i] for i in idx], name=name, showlegend=False,
            marker_color=_net_colour(name, colors),
            hovertemplate=f"{name}, {what} %{{x}} deleted<br>test accuracy %{{y:.3f}}"
                          "<extra></extra>",
        ), row=1, col=c)
        fig.add_hline(y=intact[name], line={"dash": "dash", "color": "black"}, row=1, col=c,
                      annotation_text="intact", annotation_position="top left")
        fig.add_hline(y=chance, line={"dash": "dot", "color": "grey"}, row=1, col=c,
                      annotation_text=chance_label, annotation_position="bottom right")
        fig.update_xaxes(title_text=f"{what} deleted", row=1, col=c)
    fig.update_yaxes(title_text="test accuracy", range=[0, 1.05], row=1, col=1)
    fig.update_layout(title={"text": title or None}, height=400,
                      margin={"t": 80 if title else 50, "b": 40})
    return fig


def path_length_figure(block_counts: Sequence[int], *, title: str = "") -> go.Figure:
    """How the 2^n paths of n unrolled residual blocks distribute over their lengths.

    A path takes, at each block, either the branch (+1 to its length) or the skip, so
    C(n, k) of the 2^n paths pass through exactly k branches: a binomial(n, 1/2)
    distribution with mean n / 2. A slider picks n.
    """
    counts = sorted(set(block_counts))
    fig = go.Figure()
    for i, n in enumerate(counts):
        k = np.arange(n + 1)
        paths = [math.comb(n, int(j)) for j in k]
        fig.add_trace(go.Bar(
            x=k, y=[p / 2 ** n for p in paths], name=f"n = {n}", visible=(i == len(counts) - 1),
            marker_color=PALETTE["residual"],
            customdata=[f"{p:,}" for p in paths],
            hovertemplate=(f"n = {n} blocks<br>%{{customdata}} of 2^{n} paths go through "
                           "%{x} branches<br>share %{y:.3g}<extra></extra>"),
        ))
    steps = [{"label": str(n), "method": "update",
              "args": [{"visible": [m == n for m in counts]},
                       {"xaxis.range": [-0.5, n + 0.5]}]} for n in counts]
    fig.update_layout(
        title={"text": title or None}, height=400, showlegend=False,
        xaxis={"title": "path length (residual branches on the path)",
               "range": [-0.5, counts[-1] + 0.5]},
        yaxis={"title": "share of all paths"},
        sliders=[{"active": len(counts) - 1, "currentvalue": {"prefix": "blocks n = "},
                  "pad": {"t": 50}, "steps": steps}],
        margin={"t": 60 if title else 30},
    )
    return fig


def shattering_figure(profiles: Mapping[tuple[str, int], Sequence[float]], points: int, *,
                      title: str = "", colors: Mapping[int, str] | None = None) -> go.Figure:
    """Correlation of input gradients against the distance between inputs on a line, one
    panel per architecture and one line per depth (Balduzzi et al.'s shattered gradients).

    Args:
        profiles: ``{(architecture, depth): (K,) correlations at lags 0 ... K - 1}``, e.g.
            from :func:`skiplab.probes.shattered.shattering_profile`; every architecture
            needs every depth.
        points: the inputs per line the profiles were measured with: lag k is drawn at
            k / (points - 1), the share of the segment between the two inputs.
        colors: ``{depth: colour}``, winning over the default Viridis colour per depth.
    """
    archs = list(dict.fromkeys(a for a, _ in profiles))
    depths = sorted({d for _, d in profiles})
    missing = [(a, d) for a in archs for d in depths if (a, d) not in profiles]
    if missing:
        raise ValueError(f"profiles lacks {missing}; every architecture needs every depth")
    if points < 2:
        raise ValueError(f"points={points}: a line has at least 2")
    colours = {**_depth_colours(depths), **(colors or {})}
    fig = make_subplots(rows=1, cols=len(archs), shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=[_label(a) for a in archs])
    for a in archs:
        for d in depths:
            y = np.asarray(profiles[(a, d)], dtype=float)
            fig.add_trace(go.Scatter(
                x=np.arange(len(y)) / (points - 1), y=y, mode="lines+markers",
                name=f"depth {d}", legendgroup=str(d), showlegend=(a == archs[0]),
                line={"color": colours[d], "width": 2}, marker={"size": 4},
                hovertemplate=(f"{_label(a)}-{d}<br>inputs %{{x:.3f}} of the segment apart"
                               "<br>gradient correlation %{y:.3f}<extra></extra>"),
            ), row=1, col=archs.index(a) + 1)
    for c in range(1, len(archs) + 1):
        fig.add_hline(y=0, line={"dash": "dot", "color": "grey"}, row=1, col=c)
    fig.update_xaxes(title_text="distance between the two inputs (share of the segment)")
    fig.update_yaxes(title_text="correlation of their input gradients", range=[-0.2, 1.02],
                     row=1, col=1)
    fig.update_layout(title={"text": title or None}, height=420,
                      margin={"t": 90 if title else 60, "b": 40},
                      legend={"orientation": "h", "x": 1.0, "xanchor": "right", "y": 1.12,
                              "yanchor": "bottom"})
    return fig
