"""U-Net (Ronneberger, Fischer & Brox 2015): an encoder-decoder with *long* skips.

The encoder (contracting path) halves the resolution ``depth`` times; the decoder
(expanding path) doubles it back. A long skip carries each encoder level's feature map to
the decoder level of the same resolution, where it is merged with the up-sampled coarse
features: concatenated (the paper), added, or not at all (``"none"``: the decoder sees
only what passed through the bottleneck). Encoder and decoder are otherwise the same in
all three modes, so comparisons are fair; ``decoder_scale`` widens the decoder's
convolutions so that the modes can also be compared at equal parameter count.

``padding="valid"`` is the paper's network: unpadded 3x3 convolutions shrink every map by
2 pixels per convolution, so the encoder's maps are larger than the decoder's and are
centre-cropped before merging; only some input sizes work (:func:`unet_valid_sizes`).
``padding="same"`` keeps sizes (input sides divisible by 2**depth).

>>> paper = UNet(UNetConfig())                  # 1 channel in, 2 classes, base 64, depth 4
>>> paper(torch.randn(1, 1, 572, 572)).shape
torch.Size([1, 2, 388, 388])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

__all__ = ["DecoderStage", "EncoderStage", "UNet", "UNetConfig", "center_crop", "local_net",
           "match_decoder_scale", "unet_sizes", "unet_valid_sizes"]

SkipMode = Literal["concat", "add", "none"]


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
    """A U-Net: channels, classes, base width, depth, padding, long-skip mode, up-sampling,
    normalisation, optional residual (short) skips inside each level, and the weights'
    initialisation: ``"pytorch"`` (PyTorch's default, uniform with variance gain 1/3) or
    ``"he"`` (Gaussian with std sqrt(2 / fan_in), the paper's choice; biases zero).
    ``upsample="interpolate"`` is nearest resize + a padded 3x3 convolution, whatever the
    padding of the rest."""

    in_channels: int = 1
    n_classes: int = 2
    base_width: int = 64
    depth: int = 4
    padding: Literal["valid", "same"] = "valid"
    skip: SkipMode = "concat"
    upsample: Literal["transpose", "interpolate"] = "transpose"
    norm: bool = False
    residual: bool = False
    decoder_scale: float = 1.0
    init: Literal["pytorch", "he"] = "pytorch"

    def __post_init__(self) -> None:
        choices = {"padding": ("valid", "same"), "skip": ("concat", "add", "none"),
                   "upsample": ("transpose", "interpolate"), "init": ("pytorch", "he")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r} is not known; accepted: "
                                 f"{', '.join(map(repr, allowed))}")
        if self.depth < 1 or self.base_width < 1:
            raise ValueError("depth and base_width must be at least 1")
        if self.decoder_scale <= 0:
            raise ValueError("decoder_scale must be positive")

    def width(self, level: int) -> int:
        return self.base_width * 2 ** level


class DoubleConv(nn.Module):
    """Two 3x3 convolutions, each followed by [BatchNorm and] ReLU; with ``residual`` a
    1x1-projected shortcut is added around the pair (a short skip, Drozdzal et al. 2016).

    Shapes: (B, C_in, H, W) -> (B, C_out, H - 4, W - 4) for valid padding, else (H, W).
    """

    def __init__(self, in_channels: int, out_channels: int, *, padding: str, norm: bool,
                 residual: bool):
        super().__init__()
        pad = 1 if padding == "same" else 0
        layers: list[nn.Module] = []
        for i, c_in in enumerate((in_channels, out_channels)):
            layers.append(nn.Conv2d(c_in, out_channels, 3, padding=pad, bias=not norm))
            if norm:
                layers.append(nn.BatchNorm2d(out_channels))
            if i == 0 or not residual:
                layers.append(nn.ReLU(inplace=True))
        self.body = nn.Sequential(*layers)
        self.residual = residual
        self.shortcut = (nn.Conv2d(in_channels, out_channels, 1, bias=False)
                         if residual and in_channels != out_channels else nn.Identity())
        self.act = nn.ReLU(inplace=True) if residual else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        if self.residual:
            y = self.act(y + center_crop(self.shortcut(x), y.shape[-2:]))
        return y


class EncoderStage(nn.Module):
    """One level of the contracting path: [2x2 max-pool, unless first] then DoubleConv."""

    def __init__(self, in_channels: int, out_channels: int, *, first: bool, padding: str,
                 norm: bool, residual: bool):
        super().__init__()
        self.pool = nn.Identity() if first else nn.MaxPool2d(2)
        self.convs = DoubleConv(in_channels, out_channels, padding=padding, norm=norm,
                                residual=residual)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(self.pool(x))


class DecoderStage(nn.Module):
    """One level of the expanding path: up-sample (x2) to ``skip_channels``, merge with the
    (centre-cropped) encoder map by the skip mode, then DoubleConv.

    Shapes: x (B, C_in, h, w), skip (B, skip_channels, H, W) with H, W >= 2h, 2w ->
    (B, out_channels, 2h [- 4], 2w [- 4]).
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, *,
                 skip: SkipMode, upsample: str, padding: str, norm: bool, residual: bool):
        super().__init__()
        self.skip = skip
        if upsample == "transpose":
            self.up: nn.Module = nn.ConvTranspose2d(in_channels, skip_channels, 2, stride=2)
        else:
            self.up = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                    nn.Conv2d(in_channels, skip_channels, 3, padding=1))
        merged = 2 * skip_channels if skip == "concat" else skip_channels
        self.convs = DoubleConv(merged, out_channels, padding=padding, norm=norm,
                                residual=residual)

    def merge(self, up: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Crop the encoder map to the up-sampled map's size and merge them."""
        if self.skip == "none":
            return up
        cropped = center_crop(skip, up.shape[-2:])
        return torch.cat([cropped, up], 1) if self.skip == "concat" else up + cropped

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.convs(self.merge(self.up(x), skip))


class UNet(nn.Module):
    """Encoder stages, decoder stages, 1x1 classifier. Print it to see the stages.

    Shapes: (B, in_channels, N, N) -> (B, n_classes, N', N') with N' = N - 184 for the
    paper's valid depth-4 net (see :func:`unet_sizes`), N' = N for ``"same"``.
    """

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = c = config
        kw = dict(padding=c.padding, norm=c.norm, residual=c.residual)
        self.encoder = nn.ModuleList(
            EncoderStage(c.in_channels if level == 0 else c.width(level - 1), c.width(level),
                         first=level == 0, **kw)
            for level in range(c.depth + 1))
        decoder = []
        channels = c.width(c.depth)
        for level in reversed(range(c.depth)):
            out = max(1, round(c.width(level) * c.decoder_scale))
            decoder.append(DecoderStage(channels, c.width(level), out, skip=c.skip,
                                        upsample=c.upsample, **kw))
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
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        x = skips.pop()
        for stage in self.decoder:
            x = stage(x, skips.pop())
        return self.classifier(x)


def match_decoder_scale(config: UNetConfig, parameters: int, *, tolerance: float = 0.005
                        ) -> UNetConfig:
    """``config`` with the ``decoder_scale`` that brings its parameter count closest to
    ``parameters`` (bisection; within ``tolerance`` relative where the widths allow).

    Used to compare skip modes at equal parameter count: ``"add"`` and ``"none"`` merge
    fewer channels than ``"concat"``, so their decoders are widened to match.
    """
    from dataclasses import replace

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
