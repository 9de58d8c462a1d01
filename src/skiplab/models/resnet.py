"""ImageNet ResNets (He et al. 2016) in torchvision's layout: ResNet-18, -34 and -50.

Stem: 7x7 convolution with stride 2 (64 channels), BatchNorm, ReLU, 3x3 max pool with
stride 2. Then four stages at widths 64/128/256/512 of basic blocks (18, 34) or bottleneck
blocks (50; each outputs 4x its width); every stage after the first starts with stride 2.
Where a block changes shape the shortcut is a projection ("option B"). Global average
pool, linear classifier.

The parameter counts equal torchvision's (tested), and :mod:`skiplab.models.convert`
loads a torchvision state dict into these models.

>>> resnet50()(torch.randn(1, 3, 224, 224)).shape
torch.Size([1, 1000])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..blocks.residual import BasicBlock, Bottleneck, ConvBlock, ConvNorm, ShortcutOption
from ..validation import check_choice

__all__ = ["RESNET_LAYERS", "ResNet", "ResNetConfig", "resnet18", "resnet34", "resnet50"]

BlockKind = Literal["basic", "bottleneck"]

#: blocks per stage of the published ImageNet ResNets
RESNET_LAYERS: dict[str, tuple[BlockKind, tuple[int, int, int, int]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
    "resnet152": ("bottleneck", (3, 8, 36, 3)),
}


@dataclass(frozen=True)
class ResNetConfig:
    """An ImageNet-layout ResNet: block kind, blocks per stage, stage widths."""

    block: BlockKind = "basic"
    layers: tuple[int, ...] = (2, 2, 2, 2)
    widths: tuple[int, ...] = (64, 128, 256, 512)
    in_channels: int = 3
    n_classes: int = 1000
    shortcut: ShortcutOption = "B"
    zero_init_last: bool = False

    def __post_init__(self) -> None:
        check_choice("block", self.block, ("basic", "bottleneck"))
        if len(self.layers) != len(self.widths) or not self.layers:
            raise ValueError(f"layers={self.layers} and widths={self.widths} must have the "
                             "same, non-zero length (one entry per stage)")
        if any(n < 1 for n in self.layers):
            raise ValueError(f"every stage needs at least one block, got layers={self.layers}")

    @property
    def expansion(self) -> int:
        return 4 if self.block == "bottleneck" else 1


class ResNet(nn.Module):
    """Stem, stages of residual blocks, global average pool, linear classifier.

    Shapes: (B, in_channels, H, W) -> (B, n_classes); H, W >= 32 (five halvings).
    """

    def __init__(self, config: ResNetConfig):
        super().__init__()
        self.config = c = config
        stem_width = c.widths[0]
        self.stem = ConvNorm(c.in_channels, stem_width, kernel_size=7, stride=2)
        self.pool0 = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        stages, channels = [], stem_width
        for stage, (n_blocks, width) in enumerate(zip(c.layers, c.widths, strict=True)):
            blocks: list[ConvBlock] = []
            for i in range(n_blocks):
                stride = 2 if stage > 0 and i == 0 else 1
                if c.block == "basic":
                    block: ConvBlock = BasicBlock(channels, width, stride, shortcut=c.shortcut,
                                                  zero_init_last=c.zero_init_last)
                else:
                    block = Bottleneck(channels, width, stride, shortcut=c.shortcut,
                                       zero_init_last=c.zero_init_last)
                blocks.append(block)
                channels = block.out_channels
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, c.n_classes)
        self.embedding_dim = channels

    def blocks(self) -> list[ConvBlock]:
        """The residual blocks, input to output."""
        return [m for stage in self.stages for m in stage]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled embedding, (B, embedding_dim): 512 for ResNet-18/34, 2048 for -50."""
        if x.dim() != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"ResNet expects (B, {self.config.in_channels}, H, W), "
                             f"got {tuple(x.shape)}")
        return self.pool(self.stages(self.pool0(self.stem(x)))).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def _published(name: str, **overrides) -> ResNet:
    block, layers = RESNET_LAYERS[name]
    return ResNet(ResNetConfig(block=block, layers=layers, **overrides))


def resnet18(**overrides) -> ResNet:
    """ResNet-18 (11,689,512 parameters with 1000 classes). ``overrides``: ResNetConfig."""
    return _published("resnet18", **overrides)


def resnet34(**overrides) -> ResNet:
    """ResNet-34 (21,797,672 parameters with 1000 classes)."""
    return _published("resnet34", **overrides)


def resnet50(**overrides) -> ResNet:
    """ResNet-50 (25,557,032 parameters with 1000 classes)."""
    return _published("resnet50", **overrides)
