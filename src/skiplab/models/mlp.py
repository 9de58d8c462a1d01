"""Deep fully connected classifiers: plain, plain with BatchNorm, and residual.

All three share the linear readout and differ in the depth - 2 hidden blocks; the stem
(input -> width) is a plain layer in all three, with BatchNorm in ``plain_bn``. Any
difference between them comes from the skip or the normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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

__all__ = ["ARCHITECTURES", "DeepMLP", "MLPConfig"]

Architecture = Literal["plain", "plain_bn", "residual"]
ARCHITECTURES: tuple[str, ...] = ("plain", "plain_bn", "residual")


@dataclass(frozen=True)
class MLPConfig:
    """A deep MLP. ``depth`` counts weight layers: stem + (depth - 2) blocks + readout."""

    in_features: int
    n_classes: int
    depth: int = 20
    width: int = 64
    activation: Activation = "relu"
    init: Init = "kaiming"
    architecture: Architecture = "plain"

    def __post_init__(self) -> None:
        if self.depth < 3:
            raise ValueError(f"depth={self.depth} must be at least 3 (stem, block, readout)")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture={self.architecture!r} is not known; accepted: "
                             f"{', '.join(ARCHITECTURES)}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation={self.activation!r} is not known; accepted: "
                             f"{', '.join(ACTIVATIONS)}")
        if self.init not in INITS:
            raise ValueError(f"init={self.init!r} is not known; accepted: {', '.join(INITS)}")


class DeepMLP(nn.Module):
    """Stem, ``depth - 2`` hidden blocks, linear readout.

    Shapes: (B, in_features) or (B, *F) with prod(F) = in_features -> (B, n_classes) logits.
    """

    def __init__(self, config: MLPConfig):
        super().__init__()
        self.config = config
        c = config
        norm = c.architecture == "plain_bn"
        self.stem = PlainLinearBlock(c.in_features, c.width, activation=c.activation,
                                     init=c.init, norm=norm)
        if c.architecture == "residual":
            blocks = [ResidualLinearBlock(c.width, activation=c.activation, init=c.init)
                      for _ in range(c.depth - 2)]
        else:
            blocks = [PlainLinearBlock(c.width, c.width, activation=c.activation, init=c.init,
                                       norm=norm) for _ in range(c.depth - 2)]
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
