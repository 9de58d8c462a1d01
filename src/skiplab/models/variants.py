"""One hidden layer, four ways to wrap it: the symmetry chapter's exact experiment.

    h = tanh(W_in x + b_in)                      (width n)
    g = tanh(W_mid h + b_mid)                    (width n, the layer under study)
    plain:      z = g                  additive:  z = h + g
    concat:     z = [h, g]             dropout:   z = dropout(g)
    logits = W_out z + b_out

Two units of g that start identical (same row of W_mid, same bias, same column of W_out)
receive identical gradients in the plain net, so they stay identical forever. The additive
skip adds a *different* coordinate of h to each unit, the dropout mask differs between
them, and both break the tie; concatenation leaves g's units interchangeable.

``variant`` is this experiment's own vocabulary, because two of its four ways (concatenation,
dropout) are not skip kinds: ``"plain"`` is the skip kind ``"none"`` and ``"additive"`` the
skip kind ``"residual"`` of :data:`~skiplab.blocks.skips.SKIPS`.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ..validation import check_choice

__all__ = ["SKIP_VARIANTS", "SkipVariantMLP"]

SkipVariant = Literal["plain", "additive", "concat", "dropout"]
SKIP_VARIANTS: tuple[str, ...] = ("plain", "additive", "concat", "dropout")


class SkipVariantMLP(nn.Module):
    """Shapes: (B, in_features) -> (B, n_classes).

    Args:
        in_features, n_classes, width: sizes.
        variant: how the middle layer's output g is combined with its input h
            (``"additive"``: the skip kind ``"residual"``, z = h + g).
        dropout: drop probability of the ``"dropout"`` variant.
    """

    def __init__(self, in_features: int, n_classes: int, width: int = 32, *,
                 variant: SkipVariant = "plain", dropout: float = 0.1):
        super().__init__()
        self.variant = check_choice("variant", variant, SKIP_VARIANTS)
        self.inp = nn.Linear(in_features, width)
        self.mid = nn.Linear(width, width)
        self.drop = nn.Dropout(dropout) if variant == "dropout" else nn.Identity()
        self.out = nn.Linear(2 * width if variant == "concat" else width, n_classes)

    @property
    def offset(self) -> int:
        """Where g's units start among the readout's inputs (after h when concatenated)."""
        return self.mid.out_features if self.variant == "concat" else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.inp(x.flatten(1)))
        g = self.drop(torch.tanh(self.mid(h)))
        if self.variant == "additive":
            z = h + g
        elif self.variant == "concat":
            z = torch.cat([h, g], dim=1)
        else:
            z = g
        return self.out(z)

    def extra_repr(self) -> str:
        return f"variant={self.variant}"
