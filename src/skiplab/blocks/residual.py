"""Convolutional residual blocks and their plain twins, in 1-D or 2-D (He et al. 2016).

Basic block (two 3x3 convolutions, ``ConvNorm`` = conv -> BatchNorm [-> ReLU])::

    plain:     x' = relu(branch(x))
    residual:  x' = relu(branch(x) + shortcut(x))
    branch  =  ConvNorm(c_in -> c_out, stride, ReLU) -> ConvNorm(c_out -> c_out, no ReLU)

The two blocks have exactly the same branch; the residual one adds ``self.shortcut``. When
the block changes shape (stride 2, more channels) the shortcut must change shape too:

- option ``"A"``: subsample by the stride and append zero channels. No parameters; the
  paper's CIFAR nets use it, so their plain and residual twins have equal parameter counts.
- option ``"B"``: a 1x1 convolution with the stride, then BatchNorm (a projection).

When the shapes already agree the shortcut is the identity, whatever the option.

Every ReLU here is in place (``nn.ReLU(inplace=True)``), as in torchvision: it always
follows an operation whose output nothing else reads, and it saves one tensor per layer.
A forward hook that keeps a BatchNorm's output should therefore ``clone()`` it.

Two more members of the family (torchvision's layouts, so that weights convert one to one):

- :class:`Bottleneck` (ResNet-50 and deeper): 1x1 conv to ``width`` channels, 3x3 conv with
  the stride, 1x1 conv up to ``expansion * width``; the 3x3 carries the stride ("ResNet
  v1.5", as torchvision). x' = relu(branch(x) + shortcut(x)).
- :class:`PreActBlock` (He et al. 2016b): BatchNorm and ReLU move *before* each
  convolution, and nothing follows the addition: x' = x + branch(x). The stream between
  blocks is never normalised or rectified, a clean identity path.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "ConvBlock",
    "NormActConv",
    "PreActBlock",
    "ConvNorm",
    "Dims",
    "PlainBasicBlock",
    "ShortcutA",
    "ShortcutB",
    "ShortcutOption",
    "conv",
    "make_shortcut",
    "norm",
]

Dims = Literal[1, 2]
ShortcutOption = Literal["A", "B"]


def _check_dims(dims: int) -> None:
    if dims not in (1, 2):
        raise ValueError(f"dims={dims!r} is not supported; accepted: 1 (signals), 2 (images)")


def conv(dims: Dims, in_channels: int, out_channels: int, kernel_size: int = 3,
         stride: int = 1) -> nn.Module:
    """A bias-free convolution with "same" padding (BatchNorm follows, so a bias is redundant).

    Initialised with Kaiming normal (fan-out, ReLU), as torchvision's ResNets are.
    """
    _check_dims(dims)
    cls = nn.Conv1d if dims == 1 else nn.Conv2d
    layer = cls(in_channels, out_channels, kernel_size, stride=stride,
                padding=kernel_size // 2, bias=False)
    nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
    return layer


def norm(dims: Dims, channels: int) -> nn.Module:
    """BatchNorm over ``channels``, weight 1 and bias 0."""
    _check_dims(dims)
    return nn.BatchNorm1d(channels) if dims == 1 else nn.BatchNorm2d(channels)


class ConvNorm(nn.Module):
    """One weight layer: conv -> BatchNorm -> (ReLU if ``act``); ``normalise=False`` drops the
    BatchNorm (the stem of a pre-activation net, whose first block normalises).

    Shapes: (B, C_in, *S) -> (B, C_out, *S / stride), with S of length ``dims``.
    """

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1,
                 kernel_size: int = 3, dims: Dims = 2, act: bool = True,
                 normalise: bool = True):
        super().__init__()
        self.conv = conv(dims, in_channels, out_channels, kernel_size, stride)
        self.norm = norm(dims, out_channels) if normalise else nn.Identity()
        self.act = nn.ReLU(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class NormActConv(nn.Module):
    """One pre-activation weight layer: BatchNorm -> ReLU -> conv.

    Shapes: (B, C_in, *S) -> (B, C_out, *S / stride).
    """

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1,
                 kernel_size: int = 3, dims: Dims = 2):
        super().__init__()
        self.norm = norm(dims, in_channels)
        self.act = nn.ReLU(inplace=True)
        self.conv = conv(dims, in_channels, out_channels, kernel_size, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.act(self.norm(x)))


class ShortcutA(nn.Module):
    """Option A: keep every ``stride``-th position and zero-pad the new channels.

    Parameter-free. Shapes: (B, C_in, *S) -> (B, C_out, *S / stride), C_out >= C_in.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        if out_channels < in_channels:
            raise ValueError("option A can only add channels (zero padding), not remove them; "
                             f"got {in_channels} -> {out_channels}: use option B")
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial = x.dim() - 2
        index = (slice(None), slice(None)) + (slice(None, None, self.stride),) * spatial
        x = x[index]
        extra = self.out_channels - self.in_channels
        # F.pad lists (before, after) pairs from the last dimension backwards; channels is dim 1
        return F.pad(x, (0, 0) * spatial + (0, extra)) if extra else x

    def extra_repr(self) -> str:
        return f"{self.in_channels} -> {self.out_channels}, stride={self.stride}, no parameters"


class ShortcutB(nn.Sequential):
    """Option B: a 1x1 convolution with the stride, then BatchNorm (a learned projection).

    Shapes: (B, C_in, *S) -> (B, C_out, *S / stride).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, *,
                 dims: Dims = 2):
        super().__init__(conv(dims, in_channels, out_channels, 1, stride),
                         norm(dims, out_channels))


def make_shortcut(in_channels: int, out_channels: int, stride: int = 1, *,
                  option: ShortcutOption = "A", dims: Dims = 2) -> nn.Module:
    """The skip path of a block: identity when shapes agree, else option A or B."""
    if option not in ("A", "B"):
        raise ValueError(f"shortcut option {option!r} is not known; accepted: 'A', 'B'")
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    if option == "A":
        return ShortcutA(in_channels, out_channels, stride)
    return ShortcutB(in_channels, out_channels, stride, dims=dims)


class ConvBlock(nn.Module):
    """What every block of the family shares: its shape and a clear input check.

    Subclasses set ``branch`` (an ``nn.Sequential`` of weight layers) and, when residual,
    ``shortcut``.
    """

    branch: nn.Sequential

    def __init__(self, in_channels: int, out_channels: int, stride: int, dims: Dims):
        super().__init__()
        _check_dims(dims)
        self.in_channels, self.out_channels, self.stride, self.dims = (
            in_channels, out_channels, stride, dims)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != self.dims + 2 or x.shape[1] != self.in_channels:
            shape = "(B, C, L)" if self.dims == 1 else "(B, C, H, W)"
            raise ValueError(f"{type(self).__name__} expects {shape} with C = "
                             f"{self.in_channels}, got {tuple(x.shape)}")


class PlainBasicBlock(ConvBlock):
    """Two weight layers with no skip: x' = relu(branch(x)).

    Args:
        in_channels, out_channels: channels of x and x'.
        stride: stride of the first convolution (2 halves every spatial size).
        dims: 1 for signals (B, C, L), 2 for images (B, C, H, W).

    Shapes: (B, in_channels, *S) -> (B, out_channels, *S / stride).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, *,
                 dims: Dims = 2):
        super().__init__(in_channels, out_channels, stride, dims)
        self.branch = nn.Sequential(
            ConvNorm(in_channels, out_channels, stride=stride, dims=dims, act=True),
            ConvNorm(out_channels, out_channels, dims=dims, act=False),
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return self.act(self.branch(x))


class BasicBlock(PlainBasicBlock):
    """The residual basic block: x' = relu(branch(x) + shortcut(x)).

    Same arguments as :class:`PlainBasicBlock`, plus:
        shortcut: ``"A"`` (parameter-free) or ``"B"`` (projection), used only where the
            block changes shape.
        zero_init_last: start the branch's last BatchNorm weight at 0, so the block starts as
            relu(shortcut(x)) (Goyal et al. 2017); off by default, as in He et al. (2016).

    Shapes: (B, in_channels, *S) -> (B, out_channels, *S / stride).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, *,
                 dims: Dims = 2, shortcut: ShortcutOption = "A", zero_init_last: bool = False):
        super().__init__(in_channels, out_channels, stride, dims=dims)
        self.shortcut = make_shortcut(in_channels, out_channels, stride, option=shortcut,
                                      dims=dims)
        if zero_init_last:
            nn.init.zeros_(self.branch[-1].norm.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return self.act(self.branch(x) + self.shortcut(x))


class Bottleneck(ConvBlock):
    """The bottleneck block: x' = relu(branch(x) + shortcut(x)), three weight layers.

    branch = ConvNorm(1x1, C_in -> width, ReLU) -> ConvNorm(3x3, width -> width, stride,
    ReLU) -> ConvNorm(1x1, width -> expansion * width, no ReLU). The 1x1 layers shrink and
    restore the channels so that the costly 3x3 works on ``width`` channels only.

    Args:
        in_channels: channels of x.
        width: channels inside the bottleneck; the block outputs ``expansion * width``.
        stride: stride of the 3x3 convolution.
        shortcut: ``"B"`` (projection, torchvision's choice) or ``"A"``; used only where the
            block changes shape.
        zero_init_last: start the last BatchNorm weight at 0 (the block starts as
            relu(shortcut(x))).

    Shapes: (B, in_channels, *S) -> (B, expansion * width, *S / stride).
    """

    def __init__(self, in_channels: int, width: int, stride: int = 1, *, expansion: int = 4,
                 dims: Dims = 2, shortcut: ShortcutOption = "B", zero_init_last: bool = False):
        out_channels = expansion * width
        super().__init__(in_channels, out_channels, stride, dims)
        self.width, self.expansion = width, expansion
        self.branch = nn.Sequential(
            ConvNorm(in_channels, width, kernel_size=1, dims=dims),
            ConvNorm(width, width, stride=stride, dims=dims),
            ConvNorm(width, out_channels, kernel_size=1, dims=dims, act=False),
        )
        self.shortcut = make_shortcut(in_channels, out_channels, stride, option=shortcut,
                                      dims=dims)
        self.act = nn.ReLU(inplace=True)
        if zero_init_last:
            nn.init.zeros_(self.branch[-1].norm.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return self.act(self.branch(x) + self.shortcut(x))


class PreActBlock(ConvBlock):
    """The pre-activation basic block (He et al. 2016b): x' = x + branch(x).

    branch = NormActConv(3x3, C_in -> C_out, stride) -> NormActConv(3x3, C_out -> C_out).
    Where the block changes shape, the shortcut (option A or B) is applied to x itself, so
    the path from block to block holds no BatchNorm and no ReLU. (The authors' code feeds
    the projection the pre-activated x in the first block of a stage; both keep the
    identity path clean everywhere else.)

    Args: as :class:`BasicBlock`; ``zero_init_last`` zeroes the last convolution's weight,
    so the block starts as exactly ``shortcut(x)``.

    Shapes: (B, in_channels, *S) -> (B, out_channels, *S / stride).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, *,
                 dims: Dims = 2, shortcut: ShortcutOption = "A", zero_init_last: bool = False):
        super().__init__(in_channels, out_channels, stride, dims)
        self.branch = nn.Sequential(
            NormActConv(in_channels, out_channels, stride=stride, dims=dims),
            NormActConv(out_channels, out_channels, dims=dims),
        )
        self.shortcut = make_shortcut(in_channels, out_channels, stride, option=shortcut,
                                      dims=dims)
        if zero_init_last:
            nn.init.zeros_(self.branch[-1].conv.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return self.branch(x) + self.shortcut(x)
