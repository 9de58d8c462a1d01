"""The residual tower: the simplest deep residual network, for comparing how blocks start.

A linear stem, ``blocks`` identical :class:`~skiplab.blocks.mlp.ResidualMLPBlock`\\ s (a
two-layer branch around each skip), a LayerNorm when the blocks are pre-norm, and a linear
readout. Every identity-at-initialisation scheme of the book is a setting of the same
config: the skip kind (``"residual"``, ``"rezero"``, ``"layerscale"``, ``"highway"``,
``"none"`` for the plain twin), where the norm sits (``"none"``, ``"pre"``, ``"post"``) and
how the branch starts (``branch_init``: ``"default"``, ``"zero"``, ``"fixup"``,
``"scaled"``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..blocks.mlp import ACTIVATIONS, BRANCH_INITS, ResidualMLPBlock
from ..blocks.skips import check_skip
from ..validation import check_choice

__all__ = ["ResidualTower", "TowerConfig"]


@dataclass(frozen=True)
class TowerConfig:
    """A residual tower: stem, ``blocks`` residual MLP blocks, readout."""

    in_features: int
    n_classes: int
    blocks: int = 32
    width: int = 64
    hidden: int | None = None
    skip: str = "residual"
    norm: str = "none"
    branch_init: str = "default"
    activation: str = "relu"

    def __post_init__(self) -> None:
        if self.blocks < 1 or self.width < 1 or self.in_features < 1 or self.n_classes < 1:
            raise ValueError("blocks, width, in_features and n_classes must be >= 1")
        check_skip(self.skip)
        check_choice("norm", self.norm, ResidualMLPBlock.NORMS)
        check_choice("branch_init", self.branch_init, BRANCH_INITS, hint=BRANCH_INITS)
        check_choice("activation", self.activation, ACTIVATIONS)

    @property
    def name(self) -> str:
        parts = [self.skip, f"{self.norm}-norm" if self.norm != "none" else "no-norm"]
        if self.branch_init != "default":
            parts.append(f"{self.branch_init}-init")
        return "-".join(parts) + f"-{self.blocks}"


class ResidualTower(nn.Module):
    """Stem, residual MLP blocks, (final LayerNorm for pre-norm), readout.

    Shapes: (B, in_features) or (B, *F) with prod(F) = in_features -> (B, n_classes).
    The stream has width ``width``; :attr:`blocks` holds the blocks in order.
    """

    def __init__(self, config: TowerConfig):
        super().__init__()
        self.config = c = config
        self.stem = nn.Linear(c.in_features, c.width)
        nn.init.kaiming_normal_(self.stem.weight, nonlinearity="linear")
        nn.init.zeros_(self.stem.bias)
        self.blocks = nn.Sequential(*(
            ResidualMLPBlock(c.width, c.hidden, skip=c.skip, norm=c.norm,
                             branch_init=c.branch_init, depth=c.blocks,
                             act_layer=ACTIVATIONS[c.activation])
            for _ in range(c.blocks)))
        self.final_norm = nn.LayerNorm(c.width) if c.norm == "pre" else nn.Identity()
        self.readout = nn.Linear(c.width, c.n_classes)

    def streams(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The stream (B, width) after the stem and after each block: ``blocks + 1`` tensors."""
        h = self.stem(x.flatten(1))
        out = [h]
        for block in self.blocks:
            h = block(h)
            out.append(h)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.final_norm(self.blocks(self.stem(x.flatten(1)))))

    def extra_repr(self) -> str:
        return f"name={self.config.name}"
