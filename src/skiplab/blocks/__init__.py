"""Building blocks, one family per module, plain twins beside skip versions.

Every block with a skip takes ``skip=`` (a key of :data:`SKIPS`), and the norm and the
activation as callables (``norm_layer=``, ``act_layer=``).
"""

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
    inplace_relu,
    make_shortcut,
)
from .skips import (
    NORM_PLACEMENTS,
    SKIPS,
    IdentitySkip,
    NoSkip,
    ReZero,
    Skip,
    check_norm_placement,
    check_skip,
    make_skip,
)
from .transformer import DecoderBlock, EncoderBlock, FeedForward, PositionalEncoding
from .unet import (
    LONG_SKIPS,
    DecoderStage,
    DoubleConv,
    EncoderStage,
    center_crop,
    merge_long_skip,
)

__all__ = [
    "DecoderBlock",
    "EncoderBlock",
    "FeedForward",
    "MultiHeadAttention",
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
    "inplace_relu",
    "make_shortcut",
    "ACTIVATIONS",
    "INITS",
    "PlainLinearBlock",
    "ResidualLinearBlock",
    "init_linear_",
    "make_activation",
    "IdentitySkip",
    "NORM_PLACEMENTS",
    "NoSkip",
    "ReZero",
    "SKIPS",
    "Skip",
    "check_norm_placement",
    "check_skip",
    "make_skip",
    "LONG_SKIPS",
    "DecoderStage",
    "DoubleConv",
    "EncoderStage",
    "center_crop",
    "merge_long_skip",
]
