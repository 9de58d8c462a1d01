"""Figures of the architecture chapters: block anatomy, per-block profiles, accuracy per
parameter, DenseNet's feature-reuse heatmap, and the colours of the chapters' own legends."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from torch import nn

from ..blocks.residual import (ConvBlock, ConvNorm, NormActConv, PreActBlock, ShortcutA,
                               ShortcutB)
from .base import _label, _log_range, trace_colours

__all__ = ["TRANSFORMER_PALETTE", "accuracy_per_parameter_figure", "block_anatomy_figure",
           "block_profile_figure", "branch_ratio_figure", "reuse_heatmap_figure",
           "width_profile_figure"]

# The transformer chapter's legends (its runs and probes), for ``colors=`` of the builders it
# calls; "post-norm" and "pre-norm" themselves are book-wide (figures.base.PALETTE).
TRANSFORMER_PALETTE: dict[str, str] = {
    "post-norm + warm-up": "#E69F00",
    "attention only": "#D55E00",
    "attention + skip": "#009E73",
    "attention + FFN, no skip": "#E69F00",
    "pre-norm (at initialisation)": "#56B4E9",
    "pre-norm (trained)": "#009E73",
    "pre-norm, no skips (at initialisation)": "#CC79A7",
    "pre-norm, no skips (trained)": "#D55E00",
    "post-norm + warm-up (at initialisation)": "#F0C05A",
    "post-norm + warm-up (trained)": "#E69F00",
    "post-norm, no skips": "#CC79A7",
    "pre-norm, no skips": "#56B4E9",
}


def _conv_text(conv: nn.Module) -> str:
    k = "x".join(map(str, conv.kernel_size))
    stride = f", /{conv.stride[0]}" if conv.stride[0] > 1 else ""
    return f"conv {k}, {conv.in_channels}→{conv.out_channels}{stride}"


def _branch_boxes(block: ConvBlock) -> list[tuple[str, str]]:
    """(kind, text) for each operation of the branch, input to output."""
    boxes: list[tuple[str, str]] = []
    for layer in block.branch:
        if isinstance(layer, ConvNorm):
            boxes.append(("conv", _conv_text(layer.conv)))
            if not isinstance(layer.norm, nn.Identity):
                boxes.append(("norm", "BatchNorm"))
            if not isinstance(layer.act, nn.Identity):
                boxes.append(("act", "ReLU"))
        elif isinstance(layer, NormActConv):
            boxes += [("norm", "BatchNorm"), ("act", "ReLU"), ("conv", _conv_text(layer.conv))]
        else:  # pragma: no cover - every block of the family is built from the two above
            boxes.append(("other", type(layer).__name__))
    return boxes


def _shortcut_text(block: ConvBlock) -> str | None:
    shortcut = getattr(block, "shortcut", None)
    if shortcut is None:
        return None
    if isinstance(shortcut, ShortcutA):
        return (f"option A:<br>subsample /{shortcut.stride},<br>zero-pad to "
                f"{shortcut.out_channels}")
    if isinstance(shortcut, ShortcutB):
        return f"option B:<br>{_conv_text(shortcut[0])}<br>+ BatchNorm"
    return "identity"


_BOX_COLOUR = {"conv": "#DCEAF7", "norm": "#FCE9D9", "act": "#E3F2E1", "other": "#EEEEEE"}


def block_anatomy_figure(blocks: Mapping[str, ConvBlock], *, title: str = "") -> go.Figure:
    """Draw each block as its modules say it is: branch operations top to bottom, the
    shortcut beside them, the addition and what follows it. Hover a box for its parameters.

    Args:
        blocks: ``{column title: block}``, e.g. a plain, a basic, a bottleneck and a
            pre-activation block.
    """
    fig = go.Figure()
    shapes, annotations = [], []
    box_w, box_h, gap = 1.6, 0.55, 0.35
    tallest = 0
    hover_x, hover_y, hover_text = [], [], []
    for col, (name, block) in enumerate(blocks.items()):
        x0 = col * 3.6
        boxes = _branch_boxes(block)
        shortcut = _shortcut_text(block)
        post_act = not isinstance(block, PreActBlock)
        y = 0.0
        annotations.append({"x": x0 + box_w / 2, "y": 0.6, "text": f"<b>{name}</b>",
                            "showarrow": False, "font": {"size": 13}})
        annotations.append({"x": x0 + box_w / 2, "y": 0.05, "text": "x", "showarrow": False})
        top = -0.25
        y = top - gap
        previous_bottom = top
        modules = [m for layer in block.branch for m in layer.children()
                   if not isinstance(m, nn.Identity)]
        for (kind, text), module in zip(boxes, modules, strict=False):
            y0, y1 = y - box_h, y
            shapes.append({"type": "rect", "x0": x0, "x1": x0 + box_w, "y0": y0, "y1": y1,
                           "fillcolor": _BOX_COLOUR[kind], "line": {"color": "#555"}})
            annotations.append({"x": x0 + box_w / 2, "y": (y0 + y1) / 2, "text": text,
                                "showarrow": False, "font": {"size": 11}})
            shapes.append({"type": "line", "x0": x0 + box_w / 2, "x1": x0 + box_w / 2,
                           "y0": previous_bottom, "y1": y1, "line": {"color": "#555"}})
            hover_x.append(x0 + box_w / 2)
            hover_y.append((y0 + y1) / 2)
            n = sum(p.numel() for p in module.parameters())
            hover_text.append(f"{name}: {text}<br>{n:,} parameters")
            previous_bottom = y0
            y = y0 - gap
        merge_y = y - 0.2
        shapes.append({"type": "line", "x0": x0 + box_w / 2, "x1": x0 + box_w / 2,
                       "y0": previous_bottom, "y1": merge_y + 0.2, "line": {"color": "#555"}})
        if shortcut is not None:
            side = x0 + box_w + 0.45
            line = {"color": "#009E73", "width": 3}
            shapes += [
                {"type": "line", "x0": x0 + box_w / 2, "x1": side, "y0": top, "y1": top,
                 "line": line},
                {"type": "line", "x0": side, "x1": side, "y0": top, "y1": merge_y,
                 "line": line},
                {"type": "line", "x0": side, "x1": x0 + box_w / 2 + 0.2, "y0": merge_y,
                 "y1": merge_y, "line": line},
                {"type": "circle", "x0": x0 + box_w / 2 - 0.2, "x1": x0 + box_w / 2 + 0.2,
                 "y0": merge_y - 0.2, "y1": merge_y + 0.2, "line": {"color": "#555"}},
            ]
            annotations.append({"x": x0 + box_w / 2, "y": merge_y, "text": "+",
                                "showarrow": False, "font": {"size": 16}})
            annotations.append({"x": side + 0.05, "y": (top + merge_y) / 2, "text": shortcut,
                                "showarrow": False, "xanchor": "left", "textangle": 0,
                                "font": {"size": 10, "color": "#00684d"}})
            hover_x.append(side)
            hover_y.append((top + merge_y) / 2)
            n = sum(p.numel() for p in block.shortcut.parameters())
            hover_text.append(f"{name}: shortcut<br>{n:,} parameters")
        end = merge_y - 0.2 if shortcut is not None else merge_y + 0.2
        if post_act:
            shapes.append({"type": "line", "x0": x0 + box_w / 2, "x1": x0 + box_w / 2,
                           "y0": end, "y1": end - 0.15, "line": {"color": "#555"}})
            end -= 0.05
            y0 = end - 0.15 - box_h
            shapes.append({"type": "rect", "x0": x0, "x1": x0 + box_w, "y0": y0,
                           "y1": end - 0.15, "fillcolor": _BOX_COLOUR["act"],
                           "line": {"color": "#555"}})
            annotations.append({"x": x0 + box_w / 2, "y": (y0 + end - 0.15) / 2,
                                "text": "ReLU", "showarrow": False, "font": {"size": 11}})
            end = y0
        annotations.append({"x": x0 + box_w / 2, "y": end - 0.3, "text": "x′",
                            "showarrow": False})
        total = sum(p.numel() for p in block.parameters())
        annotations.append({"x": x0 + box_w / 2, "y": end - 0.65,
                            "text": f"{total:,} parameters", "showarrow": False,
                            "font": {"size": 11, "color": "#444"}})
        tallest = min(tallest, end - 0.9)
    fig.add_trace(go.Scatter(x=hover_x, y=hover_y, mode="markers", hovertext=hover_text,
                             hoverinfo="text", marker={"size": 30, "opacity": 0},
                             showlegend=False))
    width = 3.6 * len(blocks)
    fig.update_layout(
        title=title, shapes=shapes, annotations=annotations, height=120 + 70 * -tallest,
        xaxis={"visible": False, "range": [-0.3, width - 0.6], "fixedrange": True},
        yaxis={"visible": False, "range": [tallest, 0.85], "fixedrange": True},
        plot_bgcolor="white", margin={"l": 10, "r": 10, "t": 50 if title else 20, "b": 10},
    )
    return fig


def block_profile_figure(values: Mapping[tuple[str, int], Sequence[float]], *,
                         yaxis_title: str = "‖∂L/∂x‖ at the block's output",
                         title: str = "", colors: Mapping[str, str] | None = None
                         ) -> go.Figure:
    """Per-block values for several architectures at several depths, log scale.

    One line per architecture; a slider picks the depth; the y-range is shared by all
    depths so that moving the slider shows growth.

    Args:
        values: ``{(architecture, depth): per-block values, input to output}``.
        colors: ``{architecture: colour}``, winning over the book-wide architecture colours.
    """
    archs = list(dict.fromkeys(k[0] for k in values))
    colours = trace_colours(archs, colors)
    depths = sorted({k[1] for k in values})
    missing = [(a, d) for a in archs for d in depths if (a, d) not in values]
    if missing:
        raise ValueError(f"values missing for {missing}")
    fig = go.Figure()
    for d_index, depth in enumerate(depths):
        for arch in archs:
            v = np.asarray(values[(arch, depth)], dtype=float)
            fig.add_trace(go.Scatter(
                x=np.arange(1, len(v) + 1), y=v, mode="lines+markers", name=_label(arch),
                legendgroup=arch, showlegend=d_index == 0, visible=d_index == 0,
                line={"color": colours[arch]}, marker={"size": 4},
                hovertemplate=f"{_label(arch)}, depth {depth}<br>block %{{x}}: %{{y:.3g}}"
                              "<extra></extra>"))
    steps = []
    for d_index, depth in enumerate(depths):
        visible = [i == d_index for i in range(len(depths)) for _ in archs]
        steps.append({"method": "update", "label": str(depth),
                      "args": [{"visible": visible},
                               {"xaxis.range": [0.5, len(values[(archs[0], depth)]) + 0.5]}]})
    every = np.concatenate([np.asarray(v, dtype=float) for v in values.values()])
    fig.update_layout(
        title=title, xaxis_title="block (input → output)", yaxis_title=yaxis_title,
        yaxis={"type": "log", "range": _log_range(every)},
        xaxis={"range": [0.5, len(values[(archs[0], depths[0])]) + 0.5]},
        sliders=[{"active": 0, "currentvalue": {"prefix": "depth: "}, "steps": steps,
                  "pad": {"t": 40}}],
        legend={"orientation": "h", "y": 1.12}, margin={"t": 80},
    )
    return fig


def branch_ratio_figure(series: Mapping[str, Sequence[float]], *,
                        yaxis_title: str = "‖branch‖ / ‖stream‖",
                        title: str = "", colors: Mapping[str, str] | None = None) -> go.Figure:
    """How large each block's branch output is against the stream it is added to, per block.

    One line per label over blocks 1..L (log y axis); labels that contain "initialisation"
    are drawn dashed, so that a model at initialisation and trained can share a colour family.

    Args:
        series: ``{label: per-block values, input to output}`` (e.g. the mean over a block's
            sub-layers of :func:`~skiplab.probes.stream.branch_stream_ratios`).
        colors: ``{label: colour}``, winning over the book-wide architecture colours.
    """
    colours = trace_colours(series, colors)
    every = np.concatenate([np.asarray(v, dtype=float) for v in series.values()])
    fig = go.Figure()
    for label, values in series.items():
        v = np.asarray(values, dtype=float)
        fig.add_trace(go.Scatter(
            x=np.arange(1, len(v) + 1), y=v, mode="lines+markers", name=_label(label),
            line={"color": colours[label],
                  "dash": "dash" if "initialisation" in label else "solid"},
            marker={"size": 5},
            hovertemplate=f"{_label(label)}<br>block %{{x}}: %{{y:.3g}}<extra></extra>"))
    fig.update_layout(title={"text": title or None}, xaxis_title="block (input → output)",
                      yaxis={"title": yaxis_title, "type": "log", "range": _log_range(every)},
                      legend={"orientation": "h", "y": -0.22}, height=440)
    return fig


def accuracy_per_parameter_figure(results: Mapping[str, Sequence[tuple[str, int, float]]], *,
                                  metric: str = "test accuracy", title: str = "",
                                  colors: Mapping[str, str] | None = None) -> go.Figure:
    """Accuracy against parameter count (log axis), one line per family.

    Args:
        results: ``{family: [(model label, parameters, accuracy), ...]}``.
        colors: ``{family: colour}``, winning over the book-wide colours (ResNet, ...).
    """
    colours = trace_colours(results, colors)
    fig = go.Figure()
    for family, rows in results.items():
        rows = sorted(rows, key=lambda r: r[1])
        fig.add_trace(go.Scatter(
            x=[r[1] for r in rows], y=[r[2] for r in rows], text=[r[0] for r in rows],
            mode="lines+markers+text", textposition="top center", name=_label(family),
            line={"color": colours[family]}, marker={"size": 9},
            hovertemplate="%{text}<br>%{x:,} parameters<br>" + metric
                          + " %{y:.3f}<extra></extra>"))
    counts = [r[1] for rows in results.values() for r in rows]
    low, high = np.log10(min(counts)), np.log10(max(counts))
    pad = 0.25 * max(high - low, 0.5)     # room for the labels at both ends
    fig.update_layout(title=title,
                      xaxis={"type": "log", "title": "parameters",
                             "range": [low - pad, high + pad]},
                      yaxis_title=metric, legend={"orientation": "h", "y": 1.02,
                                                  "yanchor": "bottom"},
                      margin={"t": 90})
    return fig


def reuse_heatmap_figure(maps: Mapping[str, np.ndarray], *, title: str = "",
                         colorbar_title: str = "row max = 1",
                         last_row: str = "transition") -> go.Figure:
    """DenseNet's feature-reuse maps: cell (target, source) says how much the target layer
    reads the source's channels (mean |weight|, or the loss rise when the source is
    ablated); a dropdown picks the map.

    Args:
        maps: ``{label: (n_targets, n_sources) array}``, NaN where a target cannot read a
            source (itself and later layers); if there are as many rows as sources, the
            last row is what reads the whole block, named ``last_row``.
    """
    fig = go.Figure()
    labels = list(maps)
    for index, label in enumerate(labels):
        grid = np.asarray(maps[label], dtype=float)
        n_targets, n_sources = grid.shape
        sources = ["block input"] + [f"layer {s}" for s in range(1, n_sources)]
        targets = [f"layer {t}" for t in range(1, n_targets + 1)]
        if n_targets == n_sources:   # the last row reads the whole block
            targets[-1] = last_row
        fig.add_trace(go.Heatmap(
            z=grid, x=sources, y=targets, colorscale="Viridis", visible=index == 0,
            colorbar={"title": colorbar_title}, zmin=0, zmax=1,
            hovertemplate="target %{y}<br>source %{x}<br>%{z:.2f}<extra></extra>"))
    buttons = [{"method": "update", "label": label,
                "args": [{"visible": [i == j for j in range(len(labels))]}]}
               for i, label in enumerate(labels)]
    fig.update_layout(
        title={"text": title, "y": 0.97, "yanchor": "top"},
        xaxis_title="source: whose channels are read",
        yaxis={"title": "target layer", "autorange": "reversed"},
        updatemenus=[{"buttons": buttons, "x": 0.0, "y": 1.02, "xanchor": "left",
                      "yanchor": "bottom", "direction": "down"}] if len(labels) > 1 else [],
        margin={"t": 110},
    )
    return fig


def width_profile_figure(profiles: Mapping[str, Sequence[int]], *,
                         yaxis_title: str = "channels entering the layer",
                         title: str = "", colors: Mapping[str, str] | None = None
                         ) -> go.Figure:
    """Channels along a network, one line per configuration (e.g. growth rate and
    compression of a DenseNet); the saw-tooth shows blocks growing and transitions
    compressing.

    Args:
        profiles: ``{label: channels at each layer, input to output}``.
        colors: ``{label: colour}``; labels that name an architecture get its colour.
    """
    colours = trace_colours(profiles, colors)
    fig = go.Figure()
    for label, widths in profiles.items():
        fig.add_trace(go.Scatter(
            x=np.arange(1, len(widths) + 1), y=list(widths), mode="lines", name=label,
            line={"color": colours[label]},
            hovertemplate=f"{label}<br>layer %{{x}}: %{{y}} channels<extra></extra>"))
    fig.update_layout(title=title, xaxis_title="layer (input → output)",
                      yaxis_title=yaxis_title, legend={"orientation": "h", "y": 1.12})
    return fig
