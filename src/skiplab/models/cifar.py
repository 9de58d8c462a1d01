"""The CIFAR-layout networks of He et al. (2016), section 4.2, and their plain twins.

``depth = 6n + 2`` weight layers: a 3x3 stem convolution, three stages of n basic blocks
(2n convolutions each) at widths 16/32/64 whose first block halves the spatial size (from
the second stage on), global average pooling and a linear classifier. The residual net adds
option-A (parameter-free) shortcuts, so the twins have the same parameters and differ only
in the skips. ``skip`` names the blocks' skip kind (``"residual"``, ``"none"`` for the plain
twin, ``"rezero"``..., see :data:`~skiplab.blocks.skips.SKIPS`). ``dims=1`` builds the same
net with 1-D convolutions for signals such as MNIST-1D. ``norm="pre"`` builds the
pre-activation twin (He et al. 2016b): pre-activation blocks, a stem that is only a
convolution, and BatchNorm + ReLU before the pooling.

>>> net = CifarNet(CifarNetConfig(depth=20, skip="residual"))   # ResNet-20, 0.27M parameters
>>> net(torch.randn(8, 3, 32, 32)).shape
torch.Size([8, 10])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..blocks.residual import (
    BasicBlock,
    ConvBlock,
    ConvNorm,
    Dims,
    NormActConv,
    PlainBasicBlock,
    PreActBlock,
    ShortcutOption,
    norm,
)
from ..blocks.skips import SKIPS, check_norm_placement, check_skip
from ..validation import check_choice

__all__ = ["CifarNet", "CifarNetConfig", "cifar_depths"]


def cifar_depths(max_n: int = 18) -> list[int]:
    """The valid depths 6n + 2 for n = 1 ... max_n (8, 14, 20, 26, 32, ...)."""
    return [6 * n + 2 for n in range(1, max_n + 1)]


@dataclass(frozen=True)
class CifarNetConfig:
    """One CIFAR-layout net. ``depth`` counts weight layers and must be 6n + 2.

    ``skip``: the blocks' skip kind (a key of :data:`~skiplab.blocks.skips.SKIPS`);
    ``norm``: ``"post"`` (basic blocks) or ``"pre"`` (pre-activation blocks, which need a
    skip); ``zero_init_last`` applies to blocks with a skip.
    """

    depth: int = 20
    skip: str = "residual"
    dims: Dims = 2
    in_channels: int = 3
    n_classes: int = 10
    widths: tuple[int, int, int] = (16, 32, 64)
    shortcut: ShortcutOption = "A"
    zero_init_last: bool = False
    norm: str = "post"

    def __post_init__(self) -> None:
        check_skip(self.skip)
        check_norm_placement(self.norm)
        if self.norm == "pre" and not self.residual:
            raise ValueError(f"norm='pre' needs a skip, not skip={self.skip!r} (a "
                             "pre-activation block is defined by its clean identity path)")
        if self.depth < 8 or (self.depth - 2) % 6:
            raise ValueError(f"depth={self.depth} is not of the form 6n + 2 with n >= 1; "
                             f"valid depths: {', '.join(map(str, cifar_depths(6)))}, ...")
        check_choice("dims", self.dims, (1, 2))
        check_choice("shortcut", self.shortcut, ("A", "B"))
        if len(self.widths) != 3:
            raise ValueError(f"widths={self.widths} must give the three stages' widths")

    @property
    def blocks_per_stage(self) -> int:
        return (self.depth - 2) // 6

    @property
    def residual(self) -> bool:
        """Whether the blocks keep the stream (False for ``skip="none"``)."""
        return SKIPS[self.skip].residual

    @property
    def name(self) -> str:
        """The net's label: resnet-20, plain-20, preact-resnet-20, rezero-resnet-20..."""
        kind = {"none": "plain", "residual": "resnet"}.get(self.skip, f"{self.skip}-resnet")
        return f"{'preact-' if self.norm == 'pre' else ''}{kind}-{self.depth}"


class CifarNet(nn.Module):
    """Stem, three stages of basic blocks, global average pool, linear classifier.

    Shapes: (B, in_channels, *S) -> (B, n_classes), S = (H, W) for ``dims=2`` or (L,) for 1.
    """

    def __init__(self, config: CifarNetConfig):
        super().__init__()
        self.config = c = config
        pre = c.norm == "pre"
        self.stem = ConvNorm(c.in_channels, c.widths[0], dims=c.dims, act=not pre,
                             normalise=not pre)
        stages = []
        in_channels = c.widths[0]
        for stage, width in enumerate(c.widths):
            blocks = []
            for i in range(c.blocks_per_stage):
                stride = 2 if stage > 0 and i == 0 else 1
                block: ConvBlock
                if pre:
                    block = PreActBlock(in_channels, width, stride, dims=c.dims, skip=c.skip,
                                        shortcut=c.shortcut, zero_init_last=c.zero_init_last)
                elif c.residual:
                    block = BasicBlock(in_channels, width, stride, dims=c.dims, skip=c.skip,
                                       shortcut=c.shortcut, zero_init_last=c.zero_init_last)
                else:
                    block = PlainBasicBlock(in_channels, width, stride, dims=c.dims)
                blocks.append(block)
                in_channels = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        # a pre-activation stack ends un-normalised: one BatchNorm + ReLU before pooling
        self.final = (nn.Sequential(norm(c.dims, c.widths[-1]), nn.ReLU(inplace=True)) if pre
                      else nn.Identity())
        self.pool = nn.AdaptiveAvgPool1d(1) if c.dims == 1 else nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c.widths[-1], c.n_classes)

    def blocks(self) -> list[ConvBlock]:
        """The blocks still in the net, input to output (3n unless some were deleted)."""
        return [m for stage in self.stages for m in stage if isinstance(m, ConvBlock)]

    def weight_layers(self) -> list[nn.Module]:
        """Every convolution and the classifier, input to output (6n + 2 of them when intact).

        Projection shortcuts (option B) are not counted, as in the paper's layer count.
        """
        convs = [self.stem.conv]
        for block in self.blocks():
            convs.extend(layer.conv for layer in block.branch
                         if isinstance(layer, ConvNorm | NormActConv))
        return [*convs, self.fc]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled embedding, (B, widths[-1])."""
        self._check_input(x)
        return self.pool(self.final(self.stages(self.stem(x)))).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))

    def _check_input(self, x: torch.Tensor) -> None:
        c = self.config
        if x.dim() != c.dims + 2 or x.shape[1] != c.in_channels:
            shape = "(B, C, L)" if c.dims == 1 else "(B, C, H, W)"
            raise ValueError(f"{c.name} expects {shape} with C = {c.in_channels}, "
                             f"got {tuple(x.shape)}")

    def extra_repr(self) -> str:
        c = self.config
        return (f"{c.name}, dims={c.dims}, widths={c.widths}, "
                f"shortcut={c.shortcut if c.residual else 'none'}")
