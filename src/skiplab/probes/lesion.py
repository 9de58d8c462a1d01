"""Lesion studies (Veit, Wilber & Belongie 2016): delete one part of a trained net, re-test.

- Residual net: deleting block i keeps its shortcut, x' = shortcut(x). (The block's final
  ReLU is dropped with it; its input is already the output of a ReLU and option A only
  subsamples and appends zeros, so nothing else changes.)
- Plain net: deleting layer j (one conv -> BatchNorm -> ReLU) passes its input on
  unchanged. Only layers that keep the shape can go: the first layer of a stage changes
  channels and resolution, and deleting it would leave the next layer with the wrong input.

The functions return modified deep copies; the trained model is never touched.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from ..blocks.residual import BasicBlock, ConvNorm
from ..models.cifar import CifarNet
from ..train import evaluate

__all__ = ["LayerSite", "delete_block", "delete_layer", "lesion_study", "plain_layer_sites"]


@dataclass(frozen=True)
class LayerSite:
    """Where one weight layer of a plain CifarNet sits: block index, position in its branch."""

    block: int
    position: int
    deletable: bool


def delete_block(model: CifarNet, index: int) -> CifarNet:
    """A copy of the residual ``model`` with block ``index`` replaced by its shortcut.

    The copy has one block fewer. Raises for plain nets (their blocks have no shortcut).
    """
    blocks = model.blocks()
    if not model.config.residual:
        raise ValueError("a plain net has no shortcut to keep; use delete_layer")
    if not 0 <= index < len(blocks):
        raise IndexError(f"block index {index} out of range 0..{len(blocks) - 1}")
    lesioned = copy.deepcopy(model)
    target = lesioned.blocks()[index]
    assert isinstance(target, BasicBlock)
    for stage in lesioned.stages:
        for i, module in enumerate(stage):
            if module is target:
                stage[i] = target.shortcut
                return lesioned
    raise RuntimeError("block not found in any stage")  # pragma: no cover


def plain_layer_sites(model: CifarNet) -> list[LayerSite]:
    """Every convolution inside the blocks of ``model`` (stem and classifier excluded)."""
    sites = []
    for b, block in enumerate(model.blocks()):
        for p, layer in enumerate(block.branch):
            if isinstance(layer, ConvNorm):
                same = (layer.conv.in_channels == layer.conv.out_channels
                        and layer.conv.stride[0] == 1)
                sites.append(LayerSite(b, p, same))
    return sites


def delete_layer(model: CifarNet, index: int) -> CifarNet:
    """A copy of the plain ``model`` with weight layer ``index`` of :func:`plain_layer_sites`
    replaced by the identity. Raises for layers that change the shape."""
    sites = plain_layer_sites(model)
    if not 0 <= index < len(sites):
        raise IndexError(f"layer index {index} out of range 0..{len(sites) - 1}")
    site = sites[index]
    if not site.deletable:
        raise ValueError(f"layer {index} changes the shape (stride or channels); deleting it "
                         "would break the net")
    lesioned = copy.deepcopy(model)
    lesioned.blocks()[site.block].branch[site.position] = nn.Identity()
    return lesioned


@torch.no_grad()
def lesion_study(model: CifarNet, x: torch.Tensor, y: torch.Tensor) -> dict[int, float]:
    """Test accuracy after deleting each single block (residual) or layer (plain).

    Args:
        model: a trained CifarNet; evaluated in eval mode (BatchNorm's running statistics
            stay those of the intact net, as in Veit et al.).
        x: (N, C, *S) test inputs; y: (N,) labels.

    Returns:
        {index: accuracy}: block indices for a residual net, indices into
        :func:`plain_layer_sites` (deletable ones only) for a plain net.
    """
    if model.config.residual:
        candidates = {i: delete_block(model, i) for i in range(len(model.blocks()))}
    else:
        candidates = {i: delete_layer(model, i)
                      for i, site in enumerate(plain_layer_sites(model)) if site.deletable}
    return {i: evaluate(net, x, y)[1] for i, net in candidates.items()}
