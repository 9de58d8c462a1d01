"""The book's one vocabulary for how a block's branch meets its stream.

Every block with a skip (MLP, convolutional, transformer, U-Net level) computes a *branch*
F(x) and then combines it with the *stream* s (x itself, or its projection when the block
changes shape) through one of these modules, chosen by name with ``skip=...``:

=============  =====================================  ==============================
``skip=``      output                                  at initialisation
=============  =====================================  ==============================
``"none"``     F(x)                                    the plain twin: no skip
``"residual"`` s + F(x)                                He et al. (2016)
``"rezero"``   s + α · F(x), α a scalar, α = 0         the identity (Bachlechner et al. 2020;
                                                       SkipInit, De & Smith 2020, is the same
                                                       formula)
``"layerscale"`` s + diag(λ) · F(x), λ per channel     s + 0.1 · F(x) (Touvron et al. 2021)
``"highway"``  T ⊙ F(x) + (1 - T) ⊙ s,                 mostly s: T ≈ σ(-2) = 0.12
               T = σ(W_T s + b_T), b_T = -2            (Srivastava et al. 2015)
``"deepnorm"`` α · s + F(x), α = (2N)^(1/4) fixed       for post-norm stacks of N blocks
                                                       (Wang et al. 2022)
=============  =====================================  ==============================

Kinds that depend on the depth of the stack (``"deepnorm"``) are built with ``depth=N``,
which the model configs that accept them pass; the others ignore it.

Where the norm sits relative to the skip is the other word of the vocabulary,
``norm="post"`` (normalise inside the branch's end or after the sum, the original
layouts) or ``"pre"`` (normalise the branch's input, leave the stream untouched); see
:data:`NORM_PLACEMENTS`.

**Adding a skip kind** is one class and one line: subclass :class:`Skip`, implement
``forward(stream, branch)``, and add it to :data:`SKIPS`. Every block and every model
config that takes ``skip=`` accepts it from then on (``tests/test_skips.py`` shows it with a
kind defined inside the test).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from ..validation import check_choice

__all__ = [
    "NORM_PLACEMENTS",
    "SKIPS",
    "DeepNormSkip",
    "Highway",
    "IdentitySkip",
    "LayerScale",
    "NoSkip",
    "ReZero",
    "Skip",
    "check_norm_placement",
    "check_skip",
    "deepnorm_alpha",
    "deepnorm_beta",
    "make_skip",
]


class Skip(nn.Module):
    """How a block's branch output is combined with its stream.

    Args:
        channels: width of the stream (features, channels or d_model). Kinds with one scalar
            ignore it; per-channel kinds (e.g. LayerScale) size their parameter by it.
        channel_dim: which dimension of the tensors holds the channels (1 for (B, C, *S)
            convolutional maps, -1 for (B, D) or (B, T, D)).
        depth: the number of blocks in the stack, for kinds whose constants depend on it
            (``needs_depth``); the others ignore it.

    Shapes: ``forward(stream, branch)``: two tensors of the same shape -> that shape.
    """

    residual: ClassVar[bool] = True
    """Whether the stream reaches the output (False only for the plain twin)."""
    needs_depth: ClassVar[bool] = False
    """Whether the kind needs ``depth`` (the stack's number of blocks) to be built."""

    def __init__(self, channels: int | None = None, *, channel_dim: int = -1,
                 depth: int | None = None):
        super().__init__()
        self.channels, self.channel_dim = channels, channel_dim
        if self.needs_depth and (depth is None or depth < 1):
            raise ValueError(f"skip kind {type(self).__name__} needs the stack's depth (the "
                             f"number of blocks, >= 1), got depth={depth}; the model configs "
                             "that accept it pass it (e.g. TransformerConfig(skip='deepnorm'))")

    def _per_channel(self, values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """(C,) values shaped to broadcast along ``channel_dim`` of ``like``."""
        shape = [1] * like.dim()
        shape[self.channel_dim] = -1
        return values.view(shape)

    def _need_channels(self) -> int:
        if self.channels is None or self.channels < 1:
            raise ValueError(f"skip kind {type(self).__name__} has one parameter per channel: "
                             f"pass channels (got {self.channels})")
        return self.channels

    def forward(self, stream: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class NoSkip(Skip):
    """The plain twin: the output is the branch alone, the stream is dropped."""

    residual = False

    def forward(self, stream: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        return branch


class IdentitySkip(Skip):
    """The residual connection: stream + branch (He et al. 2016)."""

    def forward(self, stream: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        return stream + branch


class ReZero(Skip):
    """stream + α · branch with one learned scalar α that starts at 0 (Bachlechner et al.
    2020, "ReZero is all you need"), so the block starts as the identity on its stream.

    α receives a gradient from the first step (dL/dα = <dL/dout, branch>), while the
    branch's own weights receive none until α moves away from 0: exactly one factor of the
    product α · F starts at zero, never both.
    """

    def __init__(self, channels: int | None = None, *, channel_dim: int = -1,
                 depth: int | None = None):
        super().__init__(channels, channel_dim=channel_dim, depth=depth)
        self.alpha = nn.Parameter(torch.zeros(()))

    def forward(self, stream: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        return stream + self.alpha * branch

    def extra_repr(self) -> str:
        return f"alpha={self.alpha.item():.4g}"


class LayerScale(Skip):
    """stream + λ ⊙ branch with one learned scale per channel, all starting at
    ``init_value`` (Touvron et al. 2021, "Going deeper with image transformers", CaiT).

    A ReZero with one α per channel that starts small instead of at 0: the branch is on
    from the first step, at a tenth of its size. CaiT uses 0.1 up to depth 18 and smaller
    values deeper (1e-5, 1e-6); this kind starts at 0.1.
    """

    init_value: ClassVar[float] = 0.1

    def __init__(self, channels: int | None = None, *, channel_dim: int = -1,
                 depth: int | None = None):
        super().__init__(channels, channel_dim=channel_dim, depth=depth)
        self.scale = nn.Parameter(torch.full((self._need_channels(),), self.init_value))

    def forward(self, stream: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        return stream + self._per_channel(self.scale, branch) * branch

    def extra_repr(self) -> str:
        return f"channels={self.channels}, mean scale={self.scale.mean().item():.4g}"


class Highway(Skip):
    """T ⊙ branch + (1 - T) ⊙ stream with a *transform gate* T = σ(W_T s + b_T) computed
    from the stream, one value per channel and position (Srivastava et al. 2015, "Training
    very deep networks").

    The gate's bias starts at ``gate_bias`` = -2: the paper initialises it negative "(e.g.
    -1, -3 etc.) such that the network is initially biased towards carry behavior" (and
    suggests -1, -2, -3 for depths of about 10, 20, 30). T ≈ σ(-2) = 0.12, so the block
    starts as mostly its stream. Unlike the other kinds the gate depends on the
    input, and the carry 1 - T shrinks the stream wherever the gate opens.
    """

    gate_bias: ClassVar[float] = -2.0

    def __init__(self, channels: int | None = None, *, channel_dim: int = -1,
                 depth: int | None = None):
        super().__init__(channels, channel_dim=channel_dim, depth=depth)
        channels = self._need_channels()
        self.transform = nn.Linear(channels, channels)
        nn.init.constant_(self.transform.bias, self.gate_bias)

    def gate(self, stream: torch.Tensor) -> torch.Tensor:
        """T = σ(W_T s + b_T), the shape of ``stream``."""
        moved = stream.movedim(self.channel_dim, -1)
        return torch.sigmoid(self.transform(moved)).movedim(-1, self.channel_dim)

    def forward(self, stream: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        t = self.gate(stream)
        return t * branch + (1 - t) * stream

    def extra_repr(self) -> str:
        return f"channels={self.channels}, gate_bias={self.gate_bias}"


class DeepNormSkip(Skip):
    """α · stream + branch with a fixed α = (2N)^(1/4) for a stack of N blocks (Wang et al.
    2022, "DeepNet", the encoder-only constants).

    Meant for post-norm stacks, LN(α x + F(x)): up-weighting the stream keeps each
    LayerNorm from shrinking the gradient that flows back along it, and DeepNorm also
    starts the branches' value, output and feed-forward weights scaled down by
    β = (8N)^(-1/4) (:func:`deepnorm_beta`; ``TransformerConfig(skip="deepnorm")`` does both).
    """

    needs_depth = True

    def __init__(self, channels: int | None = None, *, channel_dim: int = -1,
                 depth: int | None = None):
        super().__init__(channels, channel_dim=channel_dim, depth=depth)
        self.depth = depth
        self.alpha = deepnorm_alpha(depth)

    def forward(self, stream: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        return self.alpha * stream + branch

    def extra_repr(self) -> str:
        return f"depth={self.depth}, alpha={self.alpha:.4g}"


def deepnorm_alpha(depth: int) -> float:
    """DeepNorm's stream weight α = (2N)^(1/4) for an encoder of N blocks."""
    return (2 * depth) ** 0.25


def deepnorm_beta(depth: int) -> float:
    """DeepNorm's initial gain β = (8N)^(-1/4) for the branches' v, out and FFN weights."""
    return (8 * depth) ** -0.25


# Every skip kind, by the name ``skip=`` takes. A new kind is one class above and one line here.
SKIPS: dict[str, type[Skip]] = {
    "none": NoSkip,
    "residual": IdentitySkip,
    "rezero": ReZero,
    "layerscale": LayerScale,
    "highway": Highway,
    "deepnorm": DeepNormSkip,
}

# Where a block's normalisation sits relative to its skip.
NORM_PLACEMENTS: dict[str, str] = {
    "post": "normalise at the end of the branch or after the sum: the original layouts",
    "pre": "normalise the branch's input and leave the stream untouched",
}


def check_skip(kind: str) -> str:
    """``kind`` if it names a skip kind in :data:`SKIPS`, else a ValueError listing them."""
    return check_choice("skip", kind, SKIPS)


def check_norm_placement(placement: str) -> str:
    """``placement`` if it is ``"post"`` or ``"pre"``, else a ValueError listing both."""
    return check_choice("norm", placement, NORM_PLACEMENTS, hint=NORM_PLACEMENTS)


def make_skip(kind: str, channels: int | None = None, *, channel_dim: int = -1,
              depth: int | None = None) -> Skip:
    """A fresh skip module of the named kind (see :data:`SKIPS`); ``depth`` is the stack's
    number of blocks, needed by kinds with ``needs_depth`` and ignored by the others."""
    return SKIPS[check_skip(kind)](channels, channel_dim=channel_dim, depth=depth)
