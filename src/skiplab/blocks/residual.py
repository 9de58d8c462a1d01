"""Convolutional residual blocks and their plain twins, in 1-D or 2-D (He et al. 2016).

Basic block (two 3x3 convolutions, ``ConvNorm`` = conv -> norm [-> act])::

    plain:     x' = relu(branch(x))
    residual:  x' = relu(skip(shortcut(x), branch(x)))    (skip="residual": shortcut(x) + branch(x))
    branch  =  ConvNorm(c_in -> c_out, stride, ReLU) -> ConvNorm(c_out -> c_out, no ReLU)

The two blocks have exactly the same branch; the residual one adds ``self.shortcut`` through
``self.skip``, one of the kinds of :data:`~skiplab.blocks.skips.SKIPS` (``skip="none"`` is
the plain block, :class:`PlainBasicBlock`). When the block changes shape (stride 2, more
channels) the shortcut must change shape too:

- option ``"A"``: subsample by the stride and append zero channels. No parameters; the
  paper's CIFAR nets use it, so their plain and residual twins have equal parameter counts.
- option ``"B"``: a 1x1 convolution with the stride, then a norm (a projection).

When the shapes already agree the shortcut is the identity, whatever the option. A block
without a skip has no shortcut (``shortcut`` is None).

The norm and the activation are injectable, as in torchvision: ``norm_layer`` builds a norm
from a channel count (default BatchNorm of the block's dims) and ``act_layer`` an activation
(default ``nn.ReLU(inplace=True)``, as torchvision's: it always follows an operation whose
output nothing else reads, and it saves one tensor per layer; a forward hook that keeps a
norm's output should therefore ``clone()`` it).

Two more members of the family (torchvision's layouts, so that weights convert one to one):

- :class:`Bottleneck` (ResNet-50 and deeper): 1x1 conv to ``width`` channels, 3x3 conv with
  the stride, 1x1 conv up to ``expansion * width``; the 3x3 carries the stride ("ResNet
  v1.5", as torchvision). x' = relu(skip(shortcut(x), branch(x))).
- :class:`PreActBlock` (He et al. 2016b): the norm and ReLU move *before* each
  convolution, and nothing follows the skip: x' = skip(x, branch(x)). The stream between
  blocks is never normalised or rectified, a clean identity path.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..validation import check_choice
from .skips import make_skip

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
    "inplace_relu",
    "make_shortcut",
    "norm",
]

Dims = Literal[1, 2]
ShortcutOption = Literal["A", "B"]
NormLayer = Callable[[int], nn.Module]
ActLayer = Callable[[], nn.Module]


def _check_dims(dims: int) -> None:
    check_choice("dims", dims, (1, 2), hint={1: "signals", 2: "images"})


def conv(dims: Dims, in_channels: int, out_channels: int, kernel_size: int = 3,
         stride: int = 1) -> nn.Module:
    """A bias-free convolution with "same" padding (a norm follows, so a bias is redundant).

    Initialised with Kaiming normal (fan-out, ReLU), as torchvision's ResNets are.
    """
    _check_dims(dims)
    cls = nn.Conv1d if dims == 1 else nn.Conv2d
    layer = cls(in_channels, out_channels, kernel_size, stride=stride,
                padding=kernel_size // 2, bias=False)
    nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
    return layer


def norm(dims: Dims, channels: int) -> nn.Module:
    """BatchNorm over ``channels``, weight 1 and bias 0: the blocks' default norm."""
    _check_dims(dims)
    return nn.BatchNorm1d(channels) if dims == 1 else nn.BatchNorm2d(channels)


def inplace_relu() -> nn.Module:
    """``nn.ReLU(inplace=True)``: the blocks' default activation."""
    return nn.ReLU(inplace=True)


def _norm_layer(norm_layer: NormLayer | None, dims: Dims) -> NormLayer:
    return norm_layer if norm_layer is not None else partial(norm, dims)


class ConvNorm(nn.Module):
    """One weight layer: conv -> norm -> (act if ``act``); ``normalise=False`` drops the
    norm (the stem of a pre-activation net, whose first block normalises).

    Shapes: (B, C_in, *S) -> (B, C_out, *S / stride), with S of length ``dims``.
    """

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1,
                 kernel_size: int = 3, dims: Dims = 2, act: bool = True,
                 normalise: bool = True, norm_layer: NormLayer | None = None,
                 act_layer: ActLayer = inplace_relu):
        super().__init__()
        self.conv = conv(dims, in_channels, out_channels, kernel_size, stride)
        self.norm = _norm_layer(norm_layer, dims)(out_channels) if normalise else nn.Identity()
        self.act = act_layer() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class NormActConv(nn.Module):
    """One pre-activation weight layer: norm -> act -> conv.

    Shapes: (B, C_in, *S) -> (B, C_out, *S / stride).
    """

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1,
                 kernel_size: int = 3, dims: Dims = 2, norm_layer: NormLayer | None = None,
                 act_layer: ActLayer = inplace_relu):
        super().__init__()
        self.norm = _norm_layer(norm_layer, dims)(in_channels)
        self.act = act_layer()
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
    """Option B: a 1x1 convolution with the stride, then a norm (a learned projection).

    Shapes: (B, C_in, *S) -> (B, C_out, *S / stride).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, *,
                 dims: Dims = 2, norm_layer: NormLayer | None = None):
        super().__init__(conv(dims, in_channels, out_channels, 1, stride),
                         _norm_layer(norm_layer, dims)(out_channels))


def make_shortcut(in_channels: int, out_channels: int, stride: int = 1, *,
                  option: ShortcutOption = "A", dims: Dims = 2,
                  norm_layer: NormLayer | None = None) -> nn.Module:
    """The skip path of a block: identity when shapes agree, else option A or B."""
    check_choice("shortcut", option, ("A", "B"))
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    if option == "A":
        return ShortcutA(in_channels, out_channels, stride)
    return ShortcutB(in_channels, out_channels, stride, dims=dims, norm_layer=norm_layer)


class ConvBlock(nn.Module):
    """What every block of the family shares: its shape, its skip and a clear input check.

    Subclasses set ``branch`` (an ``nn.Sequential`` of weight layers), then call
    :meth:`_set_skip`, which sets ``skip`` and ``shortcut`` (None where the skip drops the
    stream).
    """

    branch: nn.Sequential

    def __init__(self, in_channels: int, out_channels: int, stride: int, dims: Dims):
        super().__init__()
        _check_dims(dims)
        self.in_channels, self.out_channels, self.stride, self.dims = (
            in_channels, out_channels, stride, dims)

    def _set_skip(self, kind: str, *, option: ShortcutOption, zero_init_last: bool,
                  norm_layer: NormLayer | None) -> None:
        skip = make_skip(kind, self.out_channels, channel_dim=1)
        if zero_init_last and not skip.residual:
            raise ValueError(f"zero_init_last=True needs a skip: with skip={kind!r} the block "
                             "would start as a constant")
        self.shortcut = (make_shortcut(self.in_channels, self.out_channels, self.stride,
                                       option=option, dims=self.dims, norm_layer=norm_layer)
                         if skip.residual else None)
        self.skip = skip

    @property
    def residual(self) -> bool:
        """Whether the stream reaches the output (False for ``skip="none"``)."""
        return self.skip.residual

    def stream(self, x: torch.Tensor) -> torch.Tensor:
        """What the skip path carries: ``shortcut(x)``; x itself (unused) without a skip."""
        return x if self.shortcut is None else self.shortcut(x)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != self.dims + 2 or x.shape[1] != self.in_channels:
            shape = "(B, C, L)" if self.dims == 1 else "(B, C, H, W)"
            raise ValueError(f"{type(self).__name__} expects {shape} with C = "
                             f"{self.in_channels}, got {tuple(x.shape)}")


class BasicBlock(ConvBlock):
    """The basic block: x' = act(skip(shortcut(x), branch(x))), by default
    relu(shortcut(x) + branch(x)).

    Args:
        in_channels, out_channels: channels of x and x'.
        stride: stride of the first convolution (2 halves every spatial size).
        dims: 1 for signals (B, C, L), 2 for images (B, C, H, W).
        skip: a key of :data:`~skiplab.blocks.skips.SKIPS`; ``"none"`` is the plain block.
        shortcut: ``"A"`` (parameter-free) or ``"B"`` (projection), used only where the
            block changes shape.
        zero_init_last: start the branch's last norm weight at 0, so the block starts as
            relu(shortcut(x)) (Goyal et al. 2017); off by default, as in He et al. (2016).
        norm_layer: builds a norm from a channel count (default BatchNorm of ``dims``).
        act_layer: builds the activation (default ``nn.ReLU(inplace=True)``).

    Shapes: (B, in_channels, *S) -> (B, out_channels, *S / stride).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, *,
                 dims: Dims = 2, skip: str = "residual", shortcut: ShortcutOption = "A",
                 zero_init_last: bool = False, norm_layer: NormLayer | None = None,
                 act_layer: ActLayer = inplace_relu):
        super().__init__(in_channels, out_channels, stride, dims)
        layer = partial(ConvNorm, dims=dims, norm_layer=norm_layer, act_layer=act_layer)
        self.branch = nn.Sequential(
            layer(in_channels, out_channels, stride=stride, act=True),
            layer(out_channels, out_channels, act=False),
        )
        self.act = act_layer()
        self._set_skip(skip, option=shortcut, zero_init_last=zero_init_last,
                       norm_layer=norm_layer)
        if zero_init_last:
            nn.init.zeros_(self.branch[-1].norm.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return self.act(self.skip(self.stream(x), self.branch(x)))


class PlainBasicBlock(BasicBlock):
    """Two weight layers with no skip: x' = relu(branch(x)), the basic block with
    ``skip="none"``. Arguments as :class:`BasicBlock`, without the skip's.

    Shapes: (B, in_channels, *S) -> (B, out_channels, *S / stride).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, *,
                 dims: Dims = 2, norm_layer: NormLayer | None = None,
                 act_layer: ActLayer = inplace_relu):
        super().__init__(in_channels, out_channels, stride, dims=dims, skip="none",
                         norm_layer=norm_layer, act_layer=act_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return self.act(self.branch(x))


class Bottleneck(ConvBlock):
    """The bottleneck block: x' = act(skip(shortcut(x), branch(x))), three weight layers.

    branch = ConvNorm(1x1, C_in -> width, ReLU) -> ConvNorm(3x3, width -> width, stride,
    ReLU) -> ConvNorm(1x1, width -> expansion * width, no ReLU). The 1x1 layers shrink and
    restore the channels so that the costly 3x3 works on ``width`` channels only.

    Args:
        in_channels: channels of x.
        width: channels inside the bottleneck; the block outputs ``expansion * width``.
        stride: stride of the 3x3 convolution.
        skip: a key of :data:`~skiplab.blocks.skips.SKIPS`.
        shortcut: ``"B"`` (projection, torchvision's choice) or ``"A"``; used only where the
            block changes shape.
        zero_init_last: start the last norm weight at 0 (the block starts as
            relu(shortcut(x))).
        norm_layer, act_layer: as :class:`BasicBlock`.

    Shapes: (B, in_channels, *S) -> (B, expansion * width, *S / stride).
    """

    def __init__(self, in_channels: int, width: int, stride: int = 1, *, expansion: int = 4,
                 dims: Dims = 2, skip: str = "residual", shortcut: ShortcutOption = "B",
                 zero_init_last: bool = False, norm_layer: NormLayer | None = None,
                 act_layer: ActLayer = inplace_relu):
        out_channels = expansion * width
        super().__init__(in_channels, out_channels, stride, dims)
        self.width, self.expansion = width, expansion
        layer = partial(ConvNorm, dims=dims, norm_layer=norm_layer, act_layer=act_layer)
        self.branch = nn.Sequential(
            layer(in_channels, width, kernel_size=1),
            layer(width, width, stride=stride),
            layer(width, out_channels, kernel_size=1, act=False),
        )
        self._set_skip(skip, option=shortcut, zero_init_last=zero_init_last,
                       norm_layer=norm_layer)
        self.act = act_layer()
        if zero_init_last:
            nn.init.zeros_(self.branch[-1].norm.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return self.act(self.skip(self.stream(x), self.branch(x)))


class PreActBlock(ConvBlock):
    """The pre-activation basic block (He et al. 2016b): x' = skip(shortcut(x), branch(x)),
    by default shortcut(x) + branch(x).

    branch = NormActConv(3x3, C_in -> C_out, stride) -> NormActConv(3x3, C_out -> C_out).
    Where the block changes shape, the shortcut (option A or B) is applied to x itself, so
    the path from block to block holds no norm and no activation. (The authors' code feeds
    the projection the pre-activated x in the first block of a stage; both keep the
    identity path clean everywhere else.)

    Args: as :class:`BasicBlock`; ``zero_init_last`` zeroes the last convolution's weight,
    so the block starts as exactly ``shortcut(x)``.

    Shapes: (B, in_channels, *S) -> (B, out_channels, *S / stride).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, *,
                 dims: Dims = 2, skip: str = "residual", shortcut: ShortcutOption = "A",
                 zero_init_last: bool = False, norm_layer: NormLayer | None = None,
                 act_layer: ActLayer = inplace_relu):
        super().__init__(in_channels, out_channels, stride, dims)
        layer = partial(NormActConv, dims=dims, norm_layer=norm_layer, act_layer=act_layer)
        self.branch = nn.Sequential(
            layer(in_channels, out_channels, stride=stride),
            layer(out_channels, out_channels),
        )
        self._set_skip(skip, option=shortcut, zero_init_last=zero_init_last,
                       norm_layer=norm_layer)
        if zero_init_last:
            nn.init.zeros_(self.branch[-1].conv.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return self.skip(self.stream(x), self.branch(x))
