"""Building blocks, one family per module, plain twins beside skip versions."""

from .attention import MultiHeadAttention, attention, causal_mask, merge_masks
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
from .transformer import NORMS, DecoderBlock, EncoderBlock, FeedForward, PositionalEncoding

__all__ = [
    "DecoderBlock",
    "EncoderBlock",
    "FeedForward",
    "MultiHeadAttention",
    "NORMS",
    "PositionalEncoding",
    "attention",
    "causal_mask",
    "merge_masks",
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
