"""Small transformers for synthetic sequence tasks, and converters from PyTorch's layers.

:class:`SequenceModel` is an encoder stack that maps a (B, T) token sequence to (B, T, V)
logits, one prediction per position (sorting, reversal, prefix sums...). With
``causal=True`` position t sees tokens 0..t only. :class:`EncoderDecoder` is the original
encoder-decoder with teacher forcing.

>>> model = SequenceModel(TransformerConfig(vocab_size=10, n_layers=2, norm="post"))
>>> model(torch.randint(0, 10, (4, 12))).shape
torch.Size([4, 12, 10])

``encoder_block_from_torch`` / ``decoder_block_from_torch`` build a skiplab block with the
weights of a :class:`torch.nn.TransformerEncoderLayer` / ``TransformerDecoderLayer``, so
the two compute the same function (tested to float tolerance, both ``norm_first``
settings, with causal and key-padding masks).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..blocks.attention import MultiHeadAttention
from ..blocks.skips import SKIPS, check_norm_placement, check_skip, deepnorm_beta
from ..blocks.transformer import DecoderBlock, EncoderBlock, PositionalEncoding
from ..validation import check_choice

__all__ = [
    "EncoderDecoder",
    "SequenceModel",
    "TRANSFORMER_ACTIVATIONS",
    "TRANSFORMER_INITS",
    "TransformerConfig",
    "decoder_block_from_torch",
    "deepnorm_init_",
    "encoder_block_from_torch",
    "init_transformer_",
]

TRANSFORMER_INITS: tuple[str, ...] = ("xavier", "pytorch")
# The feed-forward networks' activations, by the name ``TransformerConfig.activation`` takes.
TRANSFORMER_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU}


@dataclass(frozen=True)
class TransformerConfig:
    """One small transformer.

    ``init="xavier"`` (Xiong et al. 2020's setting): every weight matrix Xavier-uniform,
    every bias zero, token embeddings N(0, 1). ``init="pytorch"``: PyTorch's defaults for
    ``TransformerEncoderLayer`` (the stacked attention matrix Xavier, the other Linear
    layers Kaiming-uniform with a = √5). LayerNorms start at weight 1, bias 0 either way.

    ``norm`` places the LayerNorms (``"post"`` or ``"pre"``) and ``skip`` names every
    sub-layer's skip, a key of :data:`~skiplab.blocks.skips.SKIPS` (``"none"`` removes them).
    ``skip="deepnorm"`` (with ``norm="post"``) is DeepNorm: LN(α·x + F(x)) with
    α = (2N)^(1/4) for N = ``n_layers``, and after the ``init`` scheme the value, output
    and feed-forward weights scaled by β = (8N)^(-1/4) (:func:`deepnorm_init_`; the
    encoder-only constants, so :class:`EncoderDecoder` refuses it).
    """

    vocab_size: int
    d_model: int = 64
    n_heads: int = 4
    d_ff: int | None = None
    n_layers: int = 4
    norm: Literal["post", "pre"] = "pre"
    skip: str = "residual"
    positional: bool = True
    causal: bool = False
    max_len: int = 512
    dropout: float = 0.0
    activation: str = "relu"
    init: str = "xavier"
    n_outputs: int | None = None
    fast: bool = True

    def __post_init__(self) -> None:
        check_norm_placement(self.norm)
        check_skip(self.skip)
        check_choice("activation", self.activation, TRANSFORMER_ACTIVATIONS)
        check_choice("init", self.init, TRANSFORMER_INITS)
        if self.vocab_size < 1 or self.n_layers < 0 or self.d_model < 2:
            raise ValueError("vocab_size >= 1, n_layers >= 0 and d_model >= 2 are required")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if self.skip == "deepnorm" and (self.norm != "post" or self.n_layers < 1):
            raise ValueError("skip='deepnorm' is DeepNorm's post-norm layout, LN(α·x + F(x)): "
                             f"it needs norm='post' and n_layers >= 1 (got norm={self.norm!r}, "
                             f"n_layers={self.n_layers})")

    @property
    def residual(self) -> bool:
        """Whether the sub-layers keep the stream (False for ``skip="none"``)."""
        return SKIPS[self.skip].residual

    @property
    def name(self) -> str:
        skip = {"residual": "", "none": "-noskip"}.get(self.skip, f"-{self.skip}")
        return f"{self.norm}-norm-{self.n_layers}{skip}"


def _block_kwargs(c: TransformerConfig) -> dict:
    """The config's block settings, names mapped to what the blocks take."""
    return dict(d_ff=c.d_ff, norm=c.norm, skip=c.skip, dropout=c.dropout,
                act_layer=TRANSFORMER_ACTIVATIONS[c.activation], fast=c.fast,
                depth=c.n_layers)


@torch.no_grad()
def deepnorm_init_(blocks: Iterable[EncoderBlock], depth: int) -> None:
    """DeepNorm's initialisation (Wang et al. 2022): scale each block's value and output
    projections and both feed-forward weights by β = (8N)^(-1/4) (Xavier with gain β), and
    leave the query and key projections as they are."""
    beta = deepnorm_beta(depth)
    for block in blocks:
        for layer in (block.self_attn.v_proj, block.self_attn.out_proj, block.ff.linear1,
                      block.ff.linear2):
            layer.weight.mul_(beta)


@torch.no_grad()
def init_transformer_(model: nn.Module, scheme: str) -> nn.Module:
    """Re-initialise ``model``'s Linear, Embedding and LayerNorm parameters in place.

    ``"xavier"``: Xavier-uniform weight matrices, zero biases, N(0, 1) embeddings;
    ``"pytorch"``: each module's own ``reset_parameters`` (PyTorch's defaults).
    """
    check_choice("scheme", scheme, TRANSFORMER_INITS)
    in_attention = {id(child) for m in model.modules() if isinstance(m, MultiHeadAttention)
                    for child in m.children()}
    for module in model.modules():
        if scheme == "pytorch":
            if isinstance(module, (MultiHeadAttention, nn.Embedding, nn.LayerNorm)) or (
                    isinstance(module, nn.Linear) and id(module) not in in_attention):
                module.reset_parameters()
        elif isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight)
        elif isinstance(module, nn.LayerNorm):
            module.reset_parameters()
    return model


class SequenceModel(nn.Module):
    """Token embedding (+ sinusoidal positions), a stack of encoder blocks, per-token logits.

    Shapes: tokens (B, T) int64 -> logits (B, T, V) with V = ``n_outputs`` (default
    ``vocab_size``). A pre-norm stack ends with a LayerNorm (``final_norm``); a post-norm
    stack's last block already ends with one.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        c = config
        self.embed = nn.Embedding(c.vocab_size, c.d_model)
        self.positions = PositionalEncoding(c.d_model, c.max_len) if c.positional else None
        self.blocks = nn.ModuleList(EncoderBlock(c.d_model, c.n_heads, **_block_kwargs(c))
                                    for _ in range(c.n_layers))
        self.final_norm = nn.LayerNorm(c.d_model) if c.norm == "pre" else nn.Identity()
        self.head = nn.Linear(c.d_model, c.n_outputs or c.vocab_size)
        init_transformer_(self, c.init)
        if c.skip == "deepnorm":
            deepnorm_init_(self.blocks, c.n_layers)

    def _check_tokens(self, tokens: torch.Tensor) -> None:
        if tokens.dim() != 2 or tokens.dtype != torch.long:
            raise ValueError(f"tokens have shape {tuple(tokens.shape)} and dtype {tokens.dtype};"
                             " expected (batch, length) int64")
        if tokens.shape[1] > self.config.max_len:
            raise ValueError(f"length {tokens.shape[1]} exceeds max_len={self.config.max_len}")

    def streams(self, tokens: torch.Tensor,
                key_padding_mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        """The residual stream (B, T, D) before the first block and after each block."""
        self._check_tokens(tokens)
        x = self.embed(tokens)
        if self.positions is not None:
            x = self.positions(x)
        out = [x]
        for block in self.blocks:
            x = block(x, key_padding_mask=key_padding_mask, is_causal=self.config.causal)
            out.append(x)
        return out

    def forward(self, tokens: torch.Tensor,
                key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.final_norm(self.streams(tokens, key_padding_mask)[-1]))

    def without_blocks(self, indices: Iterable[int]) -> SequenceModel:
        """A deep copy with the blocks at ``indices`` deleted (the stream skips them)."""
        drop = set(indices)
        bad = [i for i in drop if not 0 <= i < len(self.blocks)]
        if bad:
            raise IndexError(f"block indices {bad} out of range 0..{len(self.blocks) - 1}")
        copied = copy.deepcopy(self)
        copied.blocks = nn.ModuleList(b for i, b in enumerate(copied.blocks) if i not in drop)
        return copied


class EncoderDecoder(nn.Module):
    """The original encoder-decoder: source (B, S) and shifted target (B, T) -> (B, T, V).

    The decoder's self-attention is causal (teacher forcing: position t predicts target
    token t from target tokens 0..t, which the caller shifts right by one); its
    cross-attention reads the encoder's output. Both stacks have ``n_layers`` blocks.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = c = config
        if c.skip == "deepnorm":
            raise ValueError("skip='deepnorm' uses DeepNet's encoder-only constants; the "
                             "encoder-decoder ones are not implemented (use SequenceModel)")
        self.src_embed = nn.Embedding(c.vocab_size, c.d_model)
        self.tgt_embed = nn.Embedding(c.vocab_size, c.d_model)
        self.positions = PositionalEncoding(c.d_model, c.max_len)
        self.encoder = nn.ModuleList(EncoderBlock(c.d_model, c.n_heads, **_block_kwargs(c))
                                     for _ in range(c.n_layers))
        self.decoder = nn.ModuleList(DecoderBlock(c.d_model, c.n_heads, **_block_kwargs(c))
                                     for _ in range(c.n_layers))
        pre = c.norm == "pre"
        self.encoder_norm = nn.LayerNorm(c.d_model) if pre else nn.Identity()
        self.decoder_norm = nn.LayerNorm(c.d_model) if pre else nn.Identity()
        self.head = nn.Linear(c.d_model, c.n_outputs or c.vocab_size)
        init_transformer_(self, c.init)

    def encode(self, src: torch.Tensor,
               src_key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.positions(self.src_embed(src))
        for block in self.encoder:
            x = block(x, key_padding_mask=src_key_padding_mask)
        return self.encoder_norm(x)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor,
                src_key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        for name, t in (("src", src), ("tgt", tgt)):
            if t.dim() != 2 or t.dtype != torch.long:
                raise ValueError(f"{name} has shape {tuple(t.shape)} and dtype {t.dtype}; "
                                 "expected (batch, length) int64")
        memory = self.encode(src, src_key_padding_mask)
        x = self.positions(self.tgt_embed(tgt))
        for block in self.decoder:
            x = block(x, memory, tgt_is_causal=True,
                      memory_key_padding_mask=src_key_padding_mask)
        return self.head(self.decoder_norm(x))


# --- converters from torch.nn ------------------------------------------------------------

def _activation_name(layer: nn.Module) -> str:
    """The name in :data:`TRANSFORMER_ACTIVATIONS` of a torch layer's activation."""
    act = layer.activation
    if act is F.relu or isinstance(act, nn.ReLU):
        return "relu"
    if act is F.gelu or (isinstance(act, nn.GELU) and act.approximate == "none"):
        return "gelu"
    raise ValueError(f"activation {act!r} has no skiplab equivalent (accepted: relu, gelu)")


@torch.no_grad()
def _copy_attention(ours: MultiHeadAttention, theirs: nn.MultiheadAttention) -> None:
    if not theirs._qkv_same_embed_dim or theirs.bias_k is not None or theirs.add_zero_attn:
        raise ValueError("only torch MultiheadAttention with one in_proj_weight, no bias_k/bias_v "
                         "and add_zero_attn=False can be converted")
    for proj, w in zip((ours.q_proj, ours.k_proj, ours.v_proj), theirs.in_proj_weight.chunk(3)):
        proj.weight.copy_(w)
    if theirs.in_proj_bias is not None:
        for proj, b in zip((ours.q_proj, ours.k_proj, ours.v_proj), theirs.in_proj_bias.chunk(3)):
            proj.bias.copy_(b)
    ours.out_proj.load_state_dict(theirs.out_proj.state_dict())


def _block_options(layer: nn.Module) -> dict:
    return dict(
        d_ff=layer.linear1.out_features,
        norm="pre" if layer.norm_first else "post",
        dropout=layer.dropout.p,
        act_layer=TRANSFORMER_ACTIVATIONS[_activation_name(layer)],
        layer_norm_eps=layer.norm1.eps,
        bias=layer.linear1.bias is not None,
    )


@torch.no_grad()
def encoder_block_from_torch(layer: nn.TransformerEncoderLayer, *,
                             fast: bool = True) -> EncoderBlock:
    """An :class:`EncoderBlock` computing what ``layer`` computes, with a copy of its weights.

    Reads the sizes, ``norm_first``, dropout, activation (relu or gelu) and LayerNorm eps from
    the layer. skiplab's blocks are batch-first: if ``layer.self_attn.batch_first`` is False,
    feed the block (B, T, D) where the layer takes (T, B, D).
    """
    if not isinstance(layer, nn.TransformerEncoderLayer):
        raise TypeError(f"expected a torch.nn.TransformerEncoderLayer, got {type(layer).__name__}")
    attn = layer.self_attn
    block = EncoderBlock(attn.embed_dim, attn.num_heads, fast=fast, **_block_options(layer))
    _copy_attention(block.self_attn, attn)
    for name in ("linear1", "linear2"):
        getattr(block.ff, name).load_state_dict(getattr(layer, name).state_dict())
    for name in ("norm1", "norm2"):
        getattr(block, name).load_state_dict(getattr(layer, name).state_dict())
    return block.train(layer.training)


@torch.no_grad()
def decoder_block_from_torch(layer: nn.TransformerDecoderLayer, *,
                             fast: bool = True) -> DecoderBlock:
    """A :class:`DecoderBlock` with the weights of ``layer`` (see :func:`encoder_block_from_torch`)."""
    if not isinstance(layer, nn.TransformerDecoderLayer):
        raise TypeError(f"expected a torch.nn.TransformerDecoderLayer, got {type(layer).__name__}")
    attn = layer.self_attn
    block = DecoderBlock(attn.embed_dim, attn.num_heads, fast=fast, **_block_options(layer))
    _copy_attention(block.self_attn, attn)
    _copy_attention(block.cross_attn, layer.multihead_attn)
    for name in ("linear1", "linear2"):
        getattr(block.ff, name).load_state_dict(getattr(layer, name).state_dict())
    for name in ("norm1", "norm2", "norm3"):
        getattr(block, name).load_state_dict(getattr(layer, name).state_dict())
    return block.train(layer.training)

