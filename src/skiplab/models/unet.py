"""U-Net (Ronneberger, Fischer & Brox 2015): an encoder-decoder with *long* skips, built
from :mod:`skiplab.blocks.unet`.

The encoder (contracting path) halves the resolution ``depth`` times; the decoder
(expanding path) doubles it back. A long skip carries each encoder level's feature map to
the decoder level of the same resolution, where it is merged with the up-sampled coarse
features (``long_skip=``): concatenated (the paper), added, or not at all (``"none"``: the
decoder sees only what passed through the bottleneck). Encoder and decoder are otherwise
the same in all three modes, so comparisons are fair; ``decoder_scale`` widens the
decoder's convolutions so that the modes can also be compared at equal parameter count.
Inside every level, ``skip=`` adds a *short* skip around its two convolutions, any kind
of the book's vocabulary (:data:`~skiplab.blocks.skips.SKIPS`; the paper has none).

``padding="valid"`` is the paper's network: unpadded 3x3 convolutions shrink every map by
2 pixels per convolution, so the encoder's maps are larger than the decoder's and are
centre-cropped before merging; only some input sizes work (:func:`unet_valid_sizes`).
``padding="same"`` keeps sizes (input sides divisible by 2**depth).

>>> paper = UNet(UNetConfig())                  # 1 channel in, 2 classes, base 64, depth 4
>>> paper(torch.randn(1, 1, 572, 572)).shape
torch.Size([1, 2, 388, 388])
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import nn

from ..blocks.skips import check_skip
from ..blocks.unet import (LONG_SKIPS, PADDINGS, UPSAMPLES, DecoderStage, EncoderStage,
                           LongSkip, Padding, Upsample, center_crop)
from ..validation import check_choice

# center_crop is re-exported: the segmentation metrics crop targets with it
__all__ = ["UNet", "UNetConfig", "center_crop", "local_net", "match_decoder_scale",
           "unet_sizes", "unet_valid_sizes"]

WEIGHT_INITS: dict[str, str] = {
    "pytorch": "PyTorch's default",
    "he": "Gaussian, std sqrt(2 / fan_in), the paper's",
}


def unet_sizes(n: int, depth: int = 4, padding: str = "valid") -> dict[str, list[int]]:
    """Spatial sizes through a U-Net for an n x n input: ``{"encoder": [...], "decoder":
    [...]}`` listing the side after every convolution, pooling and up-sampling.

    Raises ``ValueError`` if the input does not fit (an odd size before a pooling, or a
    size that shrinks to nothing), naming the nearest valid sizes.
    """
    shrink = 2 if padding == "valid" else 0
    enc, dec, side = [], [], n
    problem = None
    for level in range(depth + 1):
        for _ in range(2):
            side -= shrink
            enc.append(side)
        if side < 1:
            problem = f"the maps shrink to nothing at level {level}"
            break
        if level < depth:
            if side % 2:
                problem = f"level {level} ends at {side} pixels, odd, before a 2x2 pooling"
                break
            side //= 2
            enc.append(side)
    if problem is None:
        for _ in range(depth):
            side *= 2
            dec.append(side)
            for _ in range(2):
                side -= shrink
                dec.append(side)
            if side < 1:
                problem = "the decoder's maps shrink to nothing"
                break
    if problem is not None:
        near = unet_valid_sizes(depth, padding, near=n)
        raise ValueError(f"a {padding} U-Net of depth {depth} cannot take {n}x{n} inputs "
                         f"({problem}); nearest valid sizes: {near}")
    return {"encoder": enc, "decoder": dec}


def unet_valid_sizes(depth: int = 4, padding: str = "valid", *, near: int = 572,
                     count: int = 4) -> list[int]:
    """The ``count`` valid input sides closest to ``near``."""
    found: list[int] = []
    for distance in range(0, 4096):
        for n in sorted({near - distance, near + distance}):
            if n > 0 and n not in found and _fits(n, depth, padding):
                found.append(n)
        if len(found) >= count:
            break
    return sorted(found[:count])


def _fits(n: int, depth: int, padding: str) -> bool:
    shrink = 2 if padding == "valid" else 0
    side = n
    for level in range(depth + 1):
        side -= 2 * shrink
        if side < 1:
            return False
        if level < depth:
            if side % 2:
                return False
            side //= 2
    for _ in range(depth):
        side = 2 * side - 2 * shrink
        if side < 1:
            return False
    return True


@dataclass(frozen=True)
class UNetConfig:
    """A U-Net: channels, classes, base width, depth, padding, the long skips' merge
    (``long_skip``: ``"concat"``, ``"add"`` or ``"none"``), up-sampling, BatchNorm or not,
    the short skips inside each level (``skip``: ``"none"``, the paper, or another kind of
    :data:`~skiplab.blocks.skips.SKIPS`, e.g. ``"residual"``), and the weights'
    initialisation: ``"pytorch"`` (PyTorch's default, uniform with variance gain 1/3) or
    ``"he"`` (Gaussian with std sqrt(2 / fan_in), the paper's choice; biases zero).
    ``upsample="interpolate"`` is nearest resize + a padded 3x3 convolution, whatever the
    padding of the rest."""

    in_channels: int = 1
    n_classes: int = 2
    base_width: int = 64
    depth: int = 4
    padding: Padding = "valid"
    long_skip: LongSkip = "concat"
    upsample: Upsample = "transpose"
    norm: bool = False
    skip: str = "none"
    decoder_scale: float = 1.0
    init: Literal["pytorch", "he"] = "pytorch"

    def __post_init__(self) -> None:
        check_choice("padding", self.padding, PADDINGS)
        check_choice("long_skip", self.long_skip, LONG_SKIPS)
        check_choice("upsample", self.upsample, UPSAMPLES)
        check_choice("init", self.init, WEIGHT_INITS)
        if self.skip in LONG_SKIPS and self.skip != "none":
            raise ValueError(f"skip={self.skip!r} names a long-skip merge: pass "
                             f"long_skip={self.skip!r} (skip= is the short skip inside "
                             f"each level: 'none', 'residual', ...)")
        check_skip(self.skip)
        if self.depth < 1 or self.base_width < 1:
            raise ValueError("depth and base_width must be at least 1")
        if self.decoder_scale <= 0:
            raise ValueError("decoder_scale must be positive")

    def width(self, level: int) -> int:
        return self.base_width * 2 ** level


class UNet(nn.Module):
    """Encoder stages, decoder stages, 1x1 classifier. Print it to see the stages.

    Shapes: (B, in_channels, N, N) -> (B, n_classes, N', N') with N' = N - 184 for the
    paper's valid depth-4 net (see :func:`unet_sizes`), N' = N for ``"same"``.
    """

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = c = config
        kw = dict(padding=c.padding, norm_layer=nn.BatchNorm2d if c.norm else None,
                  skip=c.skip)
        self.encoder = nn.ModuleList(
            EncoderStage(c.in_channels if level == 0 else c.width(level - 1), c.width(level),
                         first=level == 0, **kw)
            for level in range(c.depth + 1))
        decoder = []
        channels = c.width(c.depth)
        for level in reversed(range(c.depth)):
            out = max(1, round(c.width(level) * c.decoder_scale))
            decoder.append(DecoderStage(channels, c.width(level), out,
                                        long_skip=c.long_skip, upsample=c.upsample, **kw))
            channels = out
        self.decoder = nn.ModuleList(decoder)
        self.classifier = nn.Conv2d(channels, c.n_classes, 1)
        if c.init == "he":
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                    nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        if x.dim() != 4 or x.shape[1] != c.in_channels:
            raise ValueError(f"UNet expects (B, {c.in_channels}, H, W), got {tuple(x.shape)}")
        for side in x.shape[-2:]:
            if c.padding == "valid":
                unet_sizes(side, c.depth, "valid")        # raises with the nearest sizes
            elif side % 2 ** c.depth:
                raise ValueError(f"a same-padded U-Net of depth {c.depth} needs sides "
                                 f"divisible by {2 ** c.depth}, got {side}")
        encoder_maps = []
        for stage in self.encoder:
            x = stage(x)
            encoder_maps.append(x)
        x = encoder_maps.pop()
        for stage in self.decoder:
            x = stage(x, encoder_maps.pop())
        return self.classifier(x)


def match_decoder_scale(config: UNetConfig, parameters: int, *, tolerance: float = 0.005
                        ) -> UNetConfig:
    """``config`` with the ``decoder_scale`` that brings its parameter count closest to
    ``parameters`` (bisection; within ``tolerance`` relative where the widths allow).

    Used to compare long-skip merges at equal parameter count: ``"add"`` and ``"none"``
    merge fewer channels than ``"concat"``, so their decoders are widened to match.
    """
    def count(scale: float) -> int:
        return sum(p.numel() for p in UNet(replace(config, decoder_scale=scale)).parameters())

    low, high = 0.25, 4.0
    if not count(low) <= parameters <= count(high):
        raise ValueError(f"no decoder_scale in [{low}, {high}] gives {parameters:,} parameters")
    best = (abs(count(1.0) - parameters), 1.0)
    for _ in range(30):
        mid = (low + high) / 2
        n = count(mid)
        best = min(best, (abs(n - parameters), mid))
        if abs(n - parameters) <= tolerance * parameters:
            break
        low, high = (mid, high) if n < parameters else (low, mid)
    return replace(config, decoder_scale=best[1])


def local_net(in_channels: int = 1, n_classes: int = 2, width: int = 32) -> nn.Sequential:
    """A purely local segmenter: two 3x3 convolutions (BatchNorm, ReLU) and a 1x1
    classifier. Each output pixel sees only a 5x5 window of the input: full detail, no
    context."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, n_classes, 1))
