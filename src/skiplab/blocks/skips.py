"""The book's one vocabulary for how a block's branch meets its stream.

Every block with a skip (MLP, convolutional, transformer, U-Net level) computes a *branch*
F(x) and then combines it with the *stream* s (x itself, or its projection when the block
changes shape) through one of these modules, chosen by name with ``skip=...``:

=============  =====================================  ==============================
``skip=``      output                                  at initialisation
=============  =====================================  ==============================
``"none"``     F(x)                                    the plain twin: no skip
``"residual"`` s + F(x)                                He et al. (2016)
``"rezero"``   s + α · F(x), α a scalar, α = 0         the identity (Bachlechner et al. 2020)
=============  =====================================  ==============================

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

__all__ = ["IdentitySkip", "NORM_PLACEMENTS", "NoSkip", "ReZero", "SKIPS", "Skip",
           "check_norm_placement", "check_skip", "make_skip"]


class Skip(nn.Module):
    """How a block's branch output is combined with its stream.

    Args:
        channels: width of the stream (features, channels or d_model). Kinds with one scalar
            ignore it; per-channel kinds (e.g. LayerScale) size their parameter by it.
        channel_dim: which dimension of the tensors holds the channels (1 for (B, C, *S)
            convolutional maps, -1 for (B, D) or (B, T, D)).

    Shapes: ``forward(stream, branch)``: two tensors of the same shape -> that shape.
    """

    residual: ClassVar[bool] = True
    """Whether the stream reaches the output (False only for the plain twin)."""

    def __init__(self, channels: int | None = None, *, channel_dim: int = -1):
        super().__init__()
        self.channels, self.channel_dim = channels, channel_dim

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

    def __init__(self, channels: int | None = None, *, channel_dim: int = -1):
        super().__init__(channels, channel_dim=channel_dim)
        self.alpha = nn.Parameter(torch.zeros(()))

    def forward(self, stream: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        return stream + self.alpha * branch

    def extra_repr(self) -> str:
        return f"alpha={self.alpha.item():.4g}"


# Every skip kind, by the name ``skip=`` takes. A new kind is one class above and one line here.
SKIPS: dict[str, type[Skip]] = {
    "none": NoSkip,
    "residual": IdentitySkip,
    "rezero": ReZero,
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


def make_skip(kind: str, channels: int | None = None, *, channel_dim: int = -1) -> Skip:
    """A fresh skip module of the named kind (see :data:`SKIPS`)."""
    return SKIPS[check_skip(kind)](channels, channel_dim=channel_dim)
