"""The U-Net's blocks (Ronneberger, Fischer & Brox 2015): one level's convolutions, the
encoder and decoder stages around them, and the long skip that joins the two paths.

A level is :class:`DoubleConv`, two 3x3 convolutions with an optional *short* skip around
the pair, named from the book's vocabulary (:data:`~skiplab.blocks.skips.SKIPS`)::

    skip="none" (the paper):  x' = act(branch(x))
    otherwise:                x' = act(skip(stream, branch(x)))
    branch  =  conv3x3 -> [norm] -> act -> conv3x3 -> [norm]
    stream  =  centre-crop(shortcut(x)), shortcut a bias-free 1x1 convolution when the
               channels change, else the identity

A *long* skip carries an encoder level's map across to the decoder level of the same
resolution, where :func:`merge_long_skip` joins it to the up-sampled coarse map by one of
:data:`LONG_SKIPS`. With unpadded ("valid") convolutions the encoder's map is the larger
of the two and is centre-cropped first (:func:`center_crop`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Literal

import torch
from torch import nn

from ..validation import check_choice
from .skips import make_skip

__all__ = ["LONG_SKIPS", "PADDINGS", "UPSAMPLES", "DecoderStage", "DoubleConv", "EncoderStage",
           "LongSkip", "Padding", "Upsample", "center_crop", "merge_long_skip"]

LongSkip = Literal["concat", "add", "none"]
Padding = Literal["valid", "same"]
Upsample = Literal["transpose", "interpolate"]

# How a decoder level meets the encoder map of its resolution, by the name ``long_skip=`` takes.
LONG_SKIPS: dict[str, str] = {
    "concat": "concatenate on channels, the paper",
    "add": "add",
    "none": "no long skip: the decoder sees only the bottleneck's path",
}
PADDINGS: dict[str, str] = {
    "valid": "unpadded, the paper: every 3x3 convolution trims a pixel from each side",
    "same": "padded: sizes kept",
}
UPSAMPLES: dict[str, str] = {
    "transpose": "2x2 transposed convolution, stride 2",
    "interpolate": "nearest resize + padded 3x3 convolution",
}

ActLayer = Callable[[], nn.Module]
NormLayer = Callable[[int], nn.Module]


def center_crop(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The central (H', W') window of x (B, C, H, W); H - H' and W - W' must be >= 0.

    When the margin is odd the extra pixel is dropped on the bottom/right (the paper's
    sizes never need that).
    """
    h, w = x.shape[-2:]
    th, tw = size
    if th > h or tw > w:
        raise ValueError(f"cannot crop {h}x{w} to the larger {th}x{tw}")
    top, left = (h - th) // 2, (w - tw) // 2
    return x[..., top:top + th, left:left + tw]


def merge_long_skip(up: torch.Tensor, encoder_map: torch.Tensor, long_skip: str
                    ) -> torch.Tensor:
    """Join the up-sampled map (B, C, h, w) and the encoder map (B, C', H, W), H, W >= h, w.

    Returns: ``"concat"``: (B, C' + C, h, w), the cropped encoder map first; ``"add"``
    (C' = C): (B, C, h, w); ``"none"``: ``up`` itself.
    """
    check_choice("long_skip", long_skip, LONG_SKIPS)
    if long_skip == "none":
        return up
    cropped = center_crop(encoder_map, up.shape[-2:])
    return torch.cat([cropped, up], 1) if long_skip == "concat" else up + cropped


class DoubleConv(nn.Module):
    """One U-Net level: two 3x3 convolutions, each followed by [norm and] the activation,
    with an optional short skip around the pair (Drozdzal et al. 2016); see the module
    docstring for the computation.

    Args:
        in_channels, out_channels: channels in and out.
        padding: ``"valid"`` (the paper: unpadded) or ``"same"``.
        norm_layer: builds a norm from a channel count (e.g. ``nn.BatchNorm2d``); ``None``
            (the paper) for none, and then the convolutions have biases.
        act_layer: builds each activation; ReLU by default (in place: it only ever
            rectifies a tensor nothing else reads).
        skip: the short skip's kind, one of :data:`~skiplab.blocks.skips.SKIPS`.

    Shapes: (B, C_in, H, W) -> (B, C_out, H - 4, W - 4) for valid padding, else (H, W).
    """

    def __init__(self, in_channels: int, out_channels: int, *, padding: Padding = "valid",
                 norm_layer: NormLayer | None = None,
                 act_layer: ActLayer = partial(nn.ReLU, inplace=True), skip: str = "none"):
        super().__init__()
        pad = 1 if check_choice("padding", padding, PADDINGS) == "same" else 0
        bias = norm_layer is None
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=pad, bias=bias)
        self.norm1 = norm_layer(out_channels) if norm_layer else nn.Identity()
        self.act1 = act_layer()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=pad, bias=bias)
        self.norm2 = norm_layer(out_channels) if norm_layer else nn.Identity()
        skip_module = make_skip(skip, out_channels, channel_dim=1)
        self.shortcut = (nn.Conv2d(in_channels, out_channels, 1, bias=False)
                         if skip_module.residual and in_channels != out_channels
                         else nn.Identity())
        self.skip = skip_module
        self.act2 = act_layer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.norm2(self.conv2(self.act1(self.norm1(self.conv1(x)))))
        shortcut = center_crop(self.shortcut(x), branch.shape[-2:])
        return self.act2(self.skip(shortcut, branch))


class EncoderStage(nn.Module):
    """One level of the contracting path: [2x2 max-pool, unless ``first``] then DoubleConv.

    Shapes: (B, C_in, H, W) -> (B, C_out, H / 2 [- 4], W / 2 [- 4]); without the pooling
    (``first``) the sides are H [- 4], W [- 4]. The 4 is trimmed by valid padding only.
    """

    def __init__(self, in_channels: int, out_channels: int, *, first: bool,
                 padding: Padding = "valid", norm_layer: NormLayer | None = None,
                 act_layer: ActLayer = partial(nn.ReLU, inplace=True), skip: str = "none"):
        super().__init__()
        self.pool = nn.Identity() if first else nn.MaxPool2d(2)
        self.convs = DoubleConv(in_channels, out_channels, padding=padding,
                                norm_layer=norm_layer, act_layer=act_layer, skip=skip)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(self.pool(x))


class DecoderStage(nn.Module):
    """One level of the expanding path: up-sample (x2) to ``encoder_channels``, merge with
    the (centre-cropped) encoder map by ``long_skip``, then DoubleConv.

    Shapes: x (B, C_in, h, w), encoder map (B, encoder_channels, H, W) with H, W >= 2h, 2w
    -> (B, out_channels, 2h [- 4], 2w [- 4]).
    """

    def __init__(self, in_channels: int, encoder_channels: int, out_channels: int, *,
                 long_skip: LongSkip = "concat", upsample: Upsample = "transpose",
                 padding: Padding = "valid", norm_layer: NormLayer | None = None,
                 act_layer: ActLayer = partial(nn.ReLU, inplace=True), skip: str = "none"):
        super().__init__()
        self.long_skip = check_choice("long_skip", long_skip, LONG_SKIPS)
        if check_choice("upsample", upsample, UPSAMPLES) == "transpose":
            self.up: nn.Module = nn.ConvTranspose2d(in_channels, encoder_channels, 2, stride=2)
        else:
            self.up = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                    nn.Conv2d(in_channels, encoder_channels, 3, padding=1))
        merged = 2 * encoder_channels if long_skip == "concat" else encoder_channels
        self.convs = DoubleConv(merged, out_channels, padding=padding, norm_layer=norm_layer,
                                act_layer=act_layer, skip=skip)

    def merge(self, up: torch.Tensor, encoder_map: torch.Tensor) -> torch.Tensor:
        """Crop the encoder map to the up-sampled map's size and merge them."""
        return merge_long_skip(up, encoder_map, self.long_skip)

    def forward(self, x: torch.Tensor, encoder_map: torch.Tensor) -> torch.Tensor:
        return self.convs(self.merge(self.up(x), encoder_map))

    def extra_repr(self) -> str:
        return f"long_skip={self.long_skip!r}"
