"""Transformer blocks (Vaswani et al. 2017) with the LayerNorm after or before each sub-layer.

Each sub-layer F (self-attention, cross-attention, feed-forward) reads the *residual
stream* x and adds to it. Where the LayerNorm sits is the ``norm`` switch:

- ``"post"`` (the original): ``x = LN(x + F(x))``, a LayerNorm on the stream after every
  addition;
- ``"pre"`` (Xiong et al. 2020): ``x = x + F(LN(x))``, the stream itself is never
  normalised inside the stack (a pre-norm model puts one LayerNorm after its last block).

``residual=False`` removes the additions (``x = LN(F(x))`` and ``x = F(LN(x))``): the
same block without its skip connections.

The parameter names match :class:`torch.nn.TransformerEncoderLayer` /
``TransformerDecoderLayer`` where they can (``norm1``, ``linear1``...), and
:mod:`skiplab.models.transformer` converts those layers' weights into these blocks.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from .attention import MultiHeadAttention

__all__ = ["DecoderBlock", "EncoderBlock", "FeedForward", "NORMS", "PositionalEncoding"]

Norm = Literal["post", "pre"]
NORMS: tuple[str, ...] = ("post", "pre")
_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}


def _check_norm(norm: str) -> None:
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r} is not known; accepted: 'post' (x = LN(x + F(x))), "
                         "'pre' (x = x + F(LN(x)))")


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
    """Position-wise feed-forward network: linear2(dropout(act(linear1(x)))), (..., D) -> (..., D)."""

    def __init__(self, d_model: int, d_ff: int, *, activation: str = "relu",
                 dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation={activation!r} is not known; accepted: "
                             f"{', '.join(_ACTIVATIONS)}")
        self.linear1 = nn.Linear(d_model, d_ff, bias=bias)
        self.activation = _ACTIVATIONS[activation]()
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ff, d_model, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.dropout(self.activation(self.linear1(x))))


class _Block(nn.Module):
    """What encoder and decoder blocks share: the norm switch and the residual addition."""

    norm: str
    residual: bool

    def add(self, stream: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        """The skip connection: the branch's output is added to the stream (or replaces it)."""
        return stream + branch if self.residual else branch

    def _check_input(self, x: torch.Tensor, name: str = "input") -> None:
        d_model = self.norm1.normalized_shape[0]
        if x.dim() != 3 or x.shape[-1] != d_model:
            raise ValueError(f"{name} has shape {tuple(x.shape)}; expected (batch, length, "
                             f"{d_model}) (batch first)")


class EncoderBlock(_Block):
    """Self-attention then feed-forward, each with a skip and a LayerNorm: (B, T, D) -> (B, T, D).

    Args:
        d_model: width D of the residual stream.
        n_heads: attention heads (D must be divisible by it).
        d_ff: hidden width of the feed-forward network (default 4·D).
        norm: ``"post"`` or ``"pre"`` (see the module docstring).
        residual: ``False`` removes both skip connections.
        dropout: on the attention weights and on each branch's output before the addition.
        activation: ``"relu"`` or ``"gelu"`` in the feed-forward network.
        fast: attention through PyTorch's fused kernel (see :class:`MultiHeadAttention`).
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int | None = None, *,
                 norm: Norm = "pre", residual: bool = True, dropout: float = 0.0,
                 activation: str = "relu", layer_norm_eps: float = 1e-5, bias: bool = True,
                 fast: bool = True):
        super().__init__()
        _check_norm(norm)
        self.norm, self.residual = norm, residual
        self.self_attn = MultiHeadAttention(d_model, n_heads, bias=bias, dropout=dropout,
                                            fast=fast)
        self.ff = FeedForward(d_model, d_ff or 4 * d_model, activation=activation,
                              dropout=dropout, bias=bias)
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, *, attn_mask: torch.Tensor | None = None,
                key_padding_mask: torch.Tensor | None = None,
                is_causal: bool = False) -> torch.Tensor:
        self._check_input(x)
        masks = dict(attn_mask=attn_mask, key_padding_mask=key_padding_mask, is_causal=is_causal)
        if self.norm == "post":
            return self.forward_post(x, **masks)
        return self.forward_pre(x, **masks)

    def forward_post(self, x: torch.Tensor, **masks) -> torch.Tensor:
        """Post-norm: x = LN(x + F(x)) for each sub-layer."""
        x = self.norm1(self.add(x, self.dropout1(self.self_attn(x, **masks))))
        x = self.norm2(self.add(x, self.dropout2(self.ff(x))))
        return x

    def forward_pre(self, x: torch.Tensor, **masks) -> torch.Tensor:
        """Pre-norm: x = x + F(LN(x)) for each sub-layer."""
        x = self.add(x, self.dropout1(self.self_attn(self.norm1(x), **masks)))
        x = self.add(x, self.dropout2(self.ff(self.norm2(x))))
        return x


class DecoderBlock(_Block):
    """Masked self-attention, attention over the encoder's output, feed-forward.

    Shapes: x (B, T, D) the target stream, memory (B, S, D) the encoder's output;
    output (B, T, D). Arguments as :class:`EncoderBlock`. For the original decoder pass
    ``tgt_is_causal=True`` (or a causal ``tgt_mask``): position t may then attend to
    target positions 0..t only.
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int | None = None, *,
                 norm: Norm = "pre", residual: bool = True, dropout: float = 0.0,
                 activation: str = "relu", layer_norm_eps: float = 1e-5, bias: bool = True,
                 fast: bool = True):
        super().__init__()
        _check_norm(norm)
        self.norm, self.residual = norm, residual
        self.self_attn = MultiHeadAttention(d_model, n_heads, bias=bias, dropout=dropout,
                                            fast=fast)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, bias=bias, dropout=dropout,
                                             fast=fast)
        self.ff = FeedForward(d_model, d_ff or 4 * d_model, activation=activation,
                              dropout=dropout, bias=bias)
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm3 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

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
            x = self.norm1(self.add(x, self.dropout1(self.self_attn(x, **own))))
            x = self.norm2(self.add(x, self.dropout2(self.cross_attn(x, memory, **cross))))
            x = self.norm3(self.add(x, self.dropout3(self.ff(x))))
        else:
            x = self.add(x, self.dropout1(self.self_attn(self.norm1(x), **own)))
            x = self.add(x, self.dropout2(self.cross_attn(self.norm2(x), memory, **cross)))
            x = self.add(x, self.dropout3(self.ff(self.norm3(x))))
        return x
