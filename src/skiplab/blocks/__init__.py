"""Building blocks, one family per module, plain twins beside skip versions."""

from .dense import DenseBlock, DenseLayer, Transition
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
    Bottleneck,
    ConvBlock,
    ConvNorm,
    NormActConv,
    PreActBlock,
    PlainBasicBlock,
    ShortcutA,
    ShortcutB,
    make_shortcut,
)

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "ConvBlock",
    "ConvNorm",
    "DenseBlock",
    "DenseLayer",
    "NormActConv",
    "PreActBlock",
    "Transition",
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
