"""Deep fully connected classifiers: plain, plain with BatchNorm, and one per skip kind.

All share the linear readout and differ in the depth - 2 hidden blocks; the stem
(input -> width) is a plain layer in all of them, with BatchNorm in ``plain_bn``. Any
difference between them comes from the skip or the normalisation.

``architecture`` names a preset: ``"plain"`` (no skip, no norm), ``"plain_bn"`` (no skip,
BatchNorm after every linear map), or any skip kind of
:data:`~skiplab.blocks.skips.SKIPS` other than ``"none"`` (``"residual"``, ``"rezero"``...:
that skip around every hidden block, no norm). A kind added to ``SKIPS`` is an
architecture from then on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..blocks.mlp import (
    ACTIVATIONS,
    INITS,
    Activation,
    Init,
    PlainLinearBlock,
    ResidualLinearBlock,
    init_linear_,
)
from ..blocks.skips import SKIPS
from ..validation import check_choice

__all__ = ["ARCHITECTURES", "DeepMLP", "MLPConfig", "architectures"]

# The presets without a skip, and the norm each one puts after every linear map.
PLAIN_PRESETS: dict[str, Callable[[int], nn.Module] | None] = {
    "plain": None,
    "plain_bn": nn.BatchNorm1d,
}


def architectures() -> tuple[str, ...]:
    """Every accepted ``architecture``: the plain presets, then each skip kind but "none"."""
    return (*PLAIN_PRESETS, *(kind for kind in SKIPS if SKIPS[kind].residual))


ARCHITECTURES: tuple[str, ...] = architectures()


@dataclass(frozen=True)
class MLPConfig:
    """A deep MLP. ``depth`` counts weight layers: stem + (depth - 2) blocks + readout."""

    in_features: int
    n_classes: int
    depth: int = 20
    width: int = 64
    activation: Activation = "relu"
    init: Init = "kaiming"
    architecture: str = "plain"

    def __post_init__(self) -> None:
        if self.depth < 3:
            raise ValueError(f"depth={self.depth} must be at least 3 (stem, block, readout)")
        check_choice("architecture", self.architecture, architectures())
        check_choice("activation", self.activation, ACTIVATIONS)
        check_choice("init", self.init, INITS)

    @property
    def skip(self) -> str:
        """The hidden blocks' skip kind: ``"none"`` for the plain presets."""
        return "none" if self.architecture in PLAIN_PRESETS else self.architecture


class DeepMLP(nn.Module):
    """Stem, ``depth - 2`` hidden blocks, linear readout.

    Shapes: (B, in_features) or (B, *F) with prod(F) = in_features -> (B, n_classes) logits.
    """

    def __init__(self, config: MLPConfig):
        super().__init__()
        self.config = c = config
        act_layer = ACTIVATIONS[c.activation]
        norm_layer = PLAIN_PRESETS.get(c.architecture)
        self.stem = PlainLinearBlock(c.in_features, c.width, init=c.init,
                                     norm_layer=norm_layer, act_layer=act_layer)
        if c.skip == "none":
            blocks = [PlainLinearBlock(c.width, c.width, init=c.init, norm_layer=norm_layer,
                                       act_layer=act_layer) for _ in range(c.depth - 2)]
        else:
            blocks = [ResidualLinearBlock(c.width, skip=c.skip, init=c.init,
                                          act_layer=act_layer, depth=c.depth - 2)
                      for _ in range(c.depth - 2)]
        self.blocks = nn.Sequential(*blocks)
        self.readout = init_linear_(nn.Linear(c.width, c.n_classes), c.init)

    def weight_layers(self) -> list[nn.Linear]:
        """The ``depth`` linear layers, input to output."""
        return [self.stem.linear, *(b.linear for b in self.blocks), self.readout]

    def hidden_modules(self) -> list[nn.Module]:
        """The modules whose outputs are the ``depth - 1`` hidden states h_1 ... h_{depth-1}."""
        return [self.stem, *self.blocks]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.blocks(self.stem(x.flatten(1))))

    def extra_repr(self) -> str:
        c = self.config
        return (f"depth={c.depth}, width={c.width}, activation={c.activation}, init={c.init}, "
                f"architecture={c.architecture}")
