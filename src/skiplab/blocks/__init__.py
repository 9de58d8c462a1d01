"""Building blocks, one family per module, plain twins beside skip versions."""

from .mlp import (
    ACTIVATIONS,
    INITS,
    PlainLinearBlock,
    ResidualLinearBlock,
    init_linear_,
    make_activation,
)
from .residual import (
    BasicBlock,
    ConvNorm,
    PlainBasicBlock,
    ShortcutA,
    ShortcutB,
    make_shortcut,
)

__all__ = [
    "BasicBlock",
    "ConvNorm",
    "PlainBasicBlock",
    "ShortcutA",
    "ShortcutB",
    "make_shortcut",
    "ACTIVATIONS",
    "INITS",
    "PlainLinearBlock",
    "ResidualLinearBlock",
    "init_linear_",
    "make_activation",
]
