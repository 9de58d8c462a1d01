"""DenseNets (Huang et al. 2017): DenseNet-121 in torchvision's layout, and the CIFAR
DenseNet-BC.

- ImageNet (``stem="imagenet"``): 7x7 convolution with stride 2 to ``2k`` channels,
  BatchNorm, ReLU, 3x3 max pool; dense blocks of (6, 12, 24, 16) layers for DenseNet-121
  with growth rate k = 32 and transitions of compression 0.5 between them; final BatchNorm,
  ReLU, global average pool, linear classifier. 7,978,856 parameters, as torchvision's.
- CIFAR (``stem="cifar"``): one 3x3 convolution to ``2k`` channels (no BatchNorm, the first
  dense layer normalises), three dense blocks of (L - 4) / 6 layers each, so that
  DenseNet-BC with L = 100, k = 12 has 16 layers per block (0.8M parameters).

>>> densenet_bc(depth=100, growth_rate=12)(torch.randn(2, 3, 32, 32)).shape
torch.Size([2, 10])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..blocks.dense import DenseBlock, Transition
from ..blocks.residual import ConvNorm, Dims, norm
from ..validation import check_choice

__all__ = ["DenseNet", "DenseNetConfig", "densenet121", "densenet_bc"]


@dataclass(frozen=True)
class DenseNetConfig:
    """A DenseNet: growth rate k, layers per block, stem, compression theta."""

    growth_rate: int = 32
    block_layers: tuple[int, ...] = (6, 12, 24, 16)
    init_channels: int | None = None       # default 2k
    bn_size: int = 4
    compression: float = 0.5
    stem: Literal["imagenet", "cifar"] = "imagenet"
    in_channels: int = 3
    n_classes: int = 1000
    efficient: bool = False
    dims: Dims = 2

    def __post_init__(self) -> None:
        check_choice("stem", self.stem, ("imagenet", "cifar"))
        if not 0 < self.compression <= 1:
            raise ValueError(f"compression theta={self.compression} must be in (0, 1]")
        if not self.block_layers or any(n < 1 for n in self.block_layers):
            raise ValueError(f"block_layers={self.block_layers} needs at least one block, "
                             "each with at least one layer")
        if self.stem == "imagenet" and self.dims != 2:
            raise ValueError("the ImageNet stem is 2-D; use stem='cifar' for dims=1")

    @property
    def stem_channels(self) -> int:
        return self.init_channels if self.init_channels is not None else 2 * self.growth_rate


class DenseNet(nn.Module):
    """Stem, dense blocks with transitions between them, BN-ReLU, pool, classifier.

    Shapes: (B, in_channels, *S) -> (B, n_classes).
    """

    def __init__(self, config: DenseNetConfig):
        super().__init__()
        self.config = c = config
        channels = c.stem_channels
        if c.stem == "imagenet":
            self.stem = nn.Sequential(
                ConvNorm(c.in_channels, channels, kernel_size=7, stride=2),
                nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        else:
            self.stem = nn.Sequential(
                ConvNorm(c.in_channels, channels, dims=c.dims, act=False, normalise=False))
        blocks, transitions = [], []
        for i, n_layers in enumerate(c.block_layers):
            block = DenseBlock(channels, n_layers, c.growth_rate, bn_size=c.bn_size,
                               efficient=c.efficient, dims=c.dims)
            blocks.append(block)
            channels = block.out_channels
            if i < len(c.block_layers) - 1:
                out = math.floor(c.compression * channels)
                transitions.append(Transition(channels, out, dims=c.dims))
                channels = out
        self.blocks = nn.ModuleList(blocks)
        self.transitions = nn.ModuleList(transitions)
        self.norm = norm(c.dims, channels)
        self.act = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool1d(1) if c.dims == 1 else nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, c.n_classes)
        self.embedding_dim = channels

    def set_efficient(self, efficient: bool) -> None:
        """Switch gradient checkpointing in every dense layer on or off."""
        for block in self.blocks:
            block.set_efficient(efficient)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled embedding, (B, embedding_dim)."""
        c = self.config
        if x.dim() != c.dims + 2 or x.shape[1] != c.in_channels:
            shape = "(B, C, L)" if c.dims == 1 else "(B, C, H, W)"
            raise ValueError(f"DenseNet expects {shape} with C = {c.in_channels}, "
                             f"got {tuple(x.shape)}")
        x = self.stem(x)
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i < len(self.transitions):
                x = self.transitions[i](x)
        return self.pool(self.act(self.norm(x))).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def densenet121(**overrides) -> DenseNet:
    """DenseNet-121: k = 32, blocks of (6, 12, 24, 16) layers (7,978,856 parameters)."""
    return DenseNet(DenseNetConfig(**{"growth_rate": 32, "block_layers": (6, 12, 24, 16),
                                      **overrides}))


def densenet_bc(depth: int = 100, growth_rate: int = 12, **overrides) -> DenseNet:
    """The CIFAR DenseNet-BC of depth L: three blocks of (L - 4) / 6 dense layers.

    L counts weight layers: the stem, two per dense layer, the two transitions and the
    classifier. L = 100, k = 12 is the paper's 0.8M-parameter net.
    """
    if depth < 10 or (depth - 4) % 6:
        raise ValueError(f"DenseNet-BC depth L={depth} must be 6m + 4 with m >= 1 "
                         "(e.g. 40, 100, 190, 250)")
    n = (depth - 4) // 6
    settings = {"growth_rate": growth_rate, "block_layers": (n, n, n), "stem": "cifar",
                "n_classes": 10, **overrides}
    return DenseNet(DenseNetConfig(**settings))
