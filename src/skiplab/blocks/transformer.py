"""Transformer blocks (Vaswani et al. 2017) with the norm after or before each sub-layer.

Each sub-layer F (self-attention, cross-attention, feed-forward) reads the *residual
stream* x and adds to it through its skip (``skip1``, ``skip2``, ``skip3``, one kind of
:data:`~skiplab.blocks.skips.SKIPS` for the whole block, ``skip="residual"`` by default:
``skip(x, F) = x + F``). Where the LayerNorm sits is the ``norm`` placement:

- ``"post"`` (the original): ``x = LN(skip(x, F(x)))``, a LayerNorm on the stream after
  every addition;
- ``"pre"`` (Xiong et al. 2020): ``x = skip(x, F(LN(x)))``, the stream itself is never
  normalised inside the stack (a pre-norm model puts one LayerNorm after its last block).

``skip="none"`` removes the additions (``x = LN(F(x))`` and ``x = F(LN(x))``): the same
block without its skip connections. The norm itself is injectable (``norm_layer``, default
``nn.LayerNorm`` with the given eps and bias), and so is the feed-forward network's
activation (``act_layer``, default ``nn.ReLU``).

The parameter names match :class:`torch.nn.TransformerEncoderLayer` /
``TransformerDecoderLayer`` where they can (``norm1``, ``linear1``...), and
:mod:`skiplab.models.transformer` converts those layers' weights into these blocks.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Literal

import torch
from torch import nn

from .attention import MultiHeadAttention
from .skips import Skip, check_norm_placement, make_skip

__all__ = ["DecoderBlock", "EncoderBlock", "FeedForward", "PositionalEncoding"]

Norm = Literal["post", "pre"]
NormLayer = Callable[[int], nn.Module]


class PositionalEncoding(nn.Module):
    """Adds the sinusoidal position code of Vaswani et al.: (B, T, D) -> (B, T, D).

    PE[t, 2i] = sin(t / 10000^(2i/D)), PE[t, 2i+1] = cos(t / 10000^(2i/D)); a buffer, not a
    parameter.
    """

    def __init__(self, d_model: int, max_len: int = 512):
        super().__init__()
        if d_model % 2:
            raise ValueError(f"d_model={d_model} must be even for the sin/cos pairs")
        position = torch.arange(max_len, dtype=torch.float64).unsqueeze(1)
        frequency = torch.pow(10000.0, -torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
        table = torch.zeros(max_len, d_model, dtype=torch.float64)
        table[:, 0::2] = torch.sin(position * frequency)
        table[:, 1::2] = torch.cos(position * frequency)
        self.register_buffer("table", table.float(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1] > self.table.shape[0] or x.shape[2] != self.table.shape[1]:
            raise ValueError(f"input has shape {tuple(x.shape)}; expected (batch, length <= "
                             f"{self.table.shape[0]}, {self.table.shape[1]})")
        return x + self.table[: x.shape[1]].to(x.dtype)


class FeedForward(nn.Module):
    """Position-wise feed-forward network: linear2(dropout(act(linear1(x)))).

    ``act_layer`` builds the activation (``nn.ReLU``, ``nn.GELU``...). Shapes: (..., D) ->
    (..., D).
    """

    def __init__(self, d_model: int, d_ff: int, *, act_layer: Callable[[], nn.Module] = nn.ReLU,
                 dropout: float = 0.0, bias: bool = True):
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff, bias=bias)
        self.activation = act_layer()
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ff, d_model, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.dropout(self.activation(self.linear1(x))))


class _Block(nn.Module):
    """What encoder and decoder blocks share: the norm placement, the skips, the input check."""

    norm: str
    d_model: int
    skip1: Skip

    @property
    def residual(self) -> bool:
        """Whether the sub-layers keep the stream (False for ``skip="none"``)."""
        return self.skip1.residual

    def _check_input(self, x: torch.Tensor, name: str = "input") -> None:
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"{name} has shape {tuple(x.shape)}; expected (batch, length, "
                             f"{self.d_model}) (batch first)")


def _layer_norm(norm_layer: NormLayer | None, eps: float, bias: bool) -> NormLayer:
    return norm_layer if norm_layer is not None else partial(nn.LayerNorm, eps=eps, bias=bias)


class EncoderBlock(_Block):
    """Self-attention then feed-forward, each with a skip and a norm: (B, T, D) -> (B, T, D).

    Args:
        d_model: width D of the residual stream.
        n_heads: attention heads (D must be divisible by it).
        d_ff: hidden width of the feed-forward network (default 4·D).
        norm: ``"post"`` or ``"pre"`` (see the module docstring).
        skip: a key of :data:`~skiplab.blocks.skips.SKIPS`; ``"none"`` removes both skips.
        dropout: on the attention weights and on each branch's output before the skip.
        act_layer: builds the feed-forward network's activation (``nn.ReLU``, ``nn.GELU``).
        norm_layer: builds a norm from D (default ``nn.LayerNorm`` with ``layer_norm_eps``
            and ``bias``).
        fast: attention through PyTorch's fused kernel (see :class:`MultiHeadAttention`).
        depth: the number of blocks in the stack, for skip kinds that need it
            (``"deepnorm"``).
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int | None = None, *,
                 norm: Norm = "pre", skip: str = "residual", dropout: float = 0.0,
                 act_layer: Callable[[], nn.Module] = nn.ReLU,
                 norm_layer: NormLayer | None = None, layer_norm_eps: float = 1e-5,
                 bias: bool = True, fast: bool = True, depth: int | None = None):
        super().__init__()
        self.norm, self.d_model = check_norm_placement(norm), d_model
        self.self_attn = MultiHeadAttention(d_model, n_heads, bias=bias, dropout=dropout,
                                            fast=fast)
        self.ff = FeedForward(d_model, d_ff or 4 * d_model, act_layer=act_layer,
                              dropout=dropout, bias=bias)
        norm_layer = _layer_norm(norm_layer, layer_norm_eps, bias)
        self.norm1 = norm_layer(d_model)
        self.norm2 = norm_layer(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.skip1 = make_skip(skip, d_model, channel_dim=-1, depth=depth)
        self.skip2 = make_skip(skip, d_model, channel_dim=-1, depth=depth)

    def forward(self, x: torch.Tensor, *, attn_mask: torch.Tensor | None = None,
                key_padding_mask: torch.Tensor | None = None,
                is_causal: bool = False) -> torch.Tensor:
        self._check_input(x)
        masks = dict(attn_mask=attn_mask, key_padding_mask=key_padding_mask, is_causal=is_causal)
        if self.norm == "post":
            return self.forward_post(x, **masks)
        return self.forward_pre(x, **masks)

    def forward_post(self, x: torch.Tensor, **masks) -> torch.Tensor:
        """Post-norm: x = LN(skip(x, F(x))) for each sub-layer, LN(x + F(x)) by default."""
        x = self.norm1(self.skip1(x, self.dropout1(self.self_attn(x, **masks))))
        x = self.norm2(self.skip2(x, self.dropout2(self.ff(x))))
        return x

    def forward_pre(self, x: torch.Tensor, **masks) -> torch.Tensor:
        """Pre-norm: x = skip(x, F(LN(x))) for each sub-layer, x + F(LN(x)) by default."""
        x = self.skip1(x, self.dropout1(self.self_attn(self.norm1(x), **masks)))
        x = self.skip2(x, self.dropout2(self.ff(self.norm2(x))))
        return x


class DecoderBlock(_Block):
    """Masked self-attention, attention over the encoder's output, feed-forward.

    Shapes: x (B, T, D) the target stream, memory (B, S, D) the encoder's output;
    output (B, T, D). Arguments as :class:`EncoderBlock`. For the original decoder pass
    ``tgt_is_causal=True`` (or a causal ``tgt_mask``): position t may then attend to
    target positions 0..t only.
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int | None = None, *,
                 norm: Norm = "pre", skip: str = "residual", dropout: float = 0.0,
                 act_layer: Callable[[], nn.Module] = nn.ReLU,
                 norm_layer: NormLayer | None = None, layer_norm_eps: float = 1e-5,
                 bias: bool = True, fast: bool = True, depth: int | None = None):
        super().__init__()
        self.norm, self.d_model = check_norm_placement(norm), d_model
        self.self_attn = MultiHeadAttention(d_model, n_heads, bias=bias, dropout=dropout,
                                            fast=fast)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, bias=bias, dropout=dropout,
                                             fast=fast)
        self.ff = FeedForward(d_model, d_ff or 4 * d_model, act_layer=act_layer,
                              dropout=dropout, bias=bias)
        norm_layer = _layer_norm(norm_layer, layer_norm_eps, bias)
        self.norm1 = norm_layer(d_model)
        self.norm2 = norm_layer(d_model)
        self.norm3 = norm_layer(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.skip1 = make_skip(skip, d_model, channel_dim=-1, depth=depth)
        self.skip2 = make_skip(skip, d_model, channel_dim=-1, depth=depth)
        self.skip3 = make_skip(skip, d_model, channel_dim=-1, depth=depth)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, *,
                tgt_mask: torch.Tensor | None = None, memory_mask: torch.Tensor | None = None,
                tgt_key_padding_mask: torch.Tensor | None = None,
                memory_key_padding_mask: torch.Tensor | None = None,
                tgt_is_causal: bool = False) -> torch.Tensor:
        self._check_input(x)
        self._check_input(memory, "memory")
        if memory.shape[0] != x.shape[0]:
            raise ValueError(f"memory has batch {memory.shape[0]}, the target {x.shape[0]}")
        own = dict(attn_mask=tgt_mask, key_padding_mask=tgt_key_padding_mask,
                   is_causal=tgt_is_causal)
        cross = dict(attn_mask=memory_mask, key_padding_mask=memory_key_padding_mask)
        if self.norm == "post":
            x = self.norm1(self.skip1(x, self.dropout1(self.self_attn(x, **own))))
            x = self.norm2(self.skip2(x, self.dropout2(self.cross_attn(x, memory, **cross))))
            x = self.norm3(self.skip3(x, self.dropout3(self.ff(x))))
        else:
            x = self.skip1(x, self.dropout1(self.self_attn(self.norm1(x), **own)))
            x = self.skip2(x, self.dropout2(self.cross_attn(self.norm2(x), memory, **cross)))
            x = self.skip3(x, self.dropout3(self.ff(self.norm3(x))))
        return x
