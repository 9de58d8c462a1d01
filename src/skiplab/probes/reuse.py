"""Feature reuse in a DenseNet (Huang et al. 2017, figure 5).

In a dense block, layer l reads the block input (c_0 channels) and the k channels of every
earlier layer, concatenated. The first convolution of layer l therefore has one slice of
input channels per *source*; the mean absolute weight on a slice says how strongly layer l
reads that source. The transition after the block reads all of them.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..blocks.dense import DenseBlock, Transition
from ..models.densenet import DenseNet

__all__ = ["normalised_rows", "reuse_ablation_map", "reuse_map"]


def _source_slices(in_channels: int, block_input: int, growth: int) -> list[slice]:
    slices = [slice(0, block_input)]
    start = block_input
    while start < in_channels:
        slices.append(slice(start, start + growth))
        start += growth
    return slices


@torch.no_grad()
def reuse_map(block: DenseBlock, transition: Transition | None = None, *,
              normalise_rows: bool = True) -> np.ndarray:
    """(n_targets, n_sources) mean |weight| of each target layer on each source's channels.

    Targets are the block's layers (and the transition, as the last row, if given); sources
    are the block input (column 0) and layers 1 .. L. A layer cannot read itself or later
    layers: NaN there. With ``normalise_rows`` each row is divided by its largest entry, so
    rows compare *which* sources a layer reads, not how large its weights are overall.
    """
    layers = list(block.layers)
    growth = layers[0].growth_rate
    c0 = block.in_channels
    n_sources = len(layers) + 1
    weights = [layer.reduce.conv.weight for layer in layers]
    if transition is not None:
        weights.append(transition.conv.weight)
    grid = np.full((len(weights), n_sources), np.nan)
    for t, w in enumerate(weights):
        magnitude = w.detach().abs().float().cpu()
        for s, channels in enumerate(_source_slices(w.shape[1], c0, growth)):
            grid[t, s] = magnitude[:, channels].mean().item()
    if normalise_rows:
        grid = grid / np.nanmax(grid, axis=1, keepdims=True)
    return grid


@torch.no_grad()
def reuse_ablation_map(model: DenseNet, block_index: int, x: torch.Tensor, y: torch.Tensor,
                       *, normalise_rows: bool = True, batch_size: int = 1024) -> np.ndarray:
    """(n_targets, n_sources) rise of the loss when one target stops seeing one source.

    For target t (each dense layer of block ``block_index``, then what reads the whole block:
    the next transition, or the final BatchNorm before the classifier) and source s (block
    input, layers 1 .. L), the channels of s in t's input, and only there, are replaced by
    their mean over the batch; the entry is the loss on (x, y) minus the intact loss. It asks
    what the trained net *does* with each connection, where :func:`reuse_map` reads weights.
    The mean is taken over each evaluation batch of ``batch_size`` examples. The model is
    evaluated in eval mode and left in the mode it was in.

    Args:
        model: a :class:`~skiplab.models.DenseNet`.
        block_index: which dense block.
        x, y: an evaluation batch (B, C, *S) and its (B,) labels.
    """
    def loss() -> float:
        total = sum(F.cross_entropy(model(x[i:i + batch_size]), y[i:i + batch_size],
                                    reduction="sum").item()
                    for i in range(0, len(y), batch_size))
        return total / len(y)

    block = model.blocks[block_index]
    layers = list(block.layers)
    growth, c0 = layers[0].growth_rate, block.in_channels
    readers = [layer.reduce for layer in layers]
    readers.append(model.transitions[block_index] if block_index < len(model.transitions)
                   else model.norm)
    was_training = model.training
    model.eval()
    try:
        base = loss()
        grid = np.full((len(readers), len(layers) + 1), np.nan)
        for t, reader in enumerate(readers):
            n_channels = layers[t].in_channels if t < len(layers) else block.out_channels
            for s, channels in enumerate(_source_slices(n_channels, c0, growth)):
                def ablate(_module, inputs, channels=channels):
                    h = inputs[0].clone()
                    h[:, channels] = h[:, channels].mean(dim=0, keepdim=True)
                    return (h,)
                handle = reader.register_forward_pre_hook(ablate)
                try:
                    grid[t, s] = loss() - base
                finally:
                    handle.remove()
    finally:
        model.train(was_training)
    return normalised_rows(grid) if normalise_rows else grid


def normalised_rows(grid: np.ndarray) -> np.ndarray:
    """Clip negative entries to 0 and divide each row by its largest entry.

    NaN entries (connections that do not exist) stay NaN; a row with no positive entry
    becomes all zeros (where it is not NaN) instead of a division by zero. Returns a new
    array.
    """
    missing = np.isnan(grid)
    clipped = np.clip(np.nan_to_num(grid, nan=0.0), 0, None)
    top = clipped.max(axis=1, keepdims=True)
    out = np.divide(clipped, top, out=np.zeros_like(clipped), where=top > 0)
    out[missing] = np.nan
    return out
