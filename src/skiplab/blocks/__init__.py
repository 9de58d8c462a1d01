"""Building blocks, one family per module, plain twins beside skip versions."""

from .mlp import (
    ACTIVATIONS,
    INITS,
    PlainLinearBlock,
    ResidualLinearBlock,
    init_linear_,
    make_activation,
)

__all__ = [
    "ACTIVATIONS",
    "INITS",
    "PlainLinearBlock",
    "ResidualLinearBlock",
    "init_linear_",
    "make_activation",
]
