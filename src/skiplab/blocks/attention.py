"""Attention written out, with a fast path through PyTorch's fused kernel.

Mask conventions follow :class:`torch.nn.MultiheadAttention`:

- ``attn_mask``: (T, S) or (B·H, T, S) or (B, H, T, S); a **bool** mask marks with ``True``
  the positions a query may **not** attend to; a float mask is added to the scores.
- ``key_padding_mask``: (B, S) bool, ``True`` at padded keys.
- ``is_causal=True``: query t may attend to keys 0..t only.

(:func:`torch.nn.functional.scaled_dot_product_attention` uses the opposite bool
convention, ``True`` = may attend; :func:`merge_masks` turns everything into one additive
float mask so the two paths see the same thing.)

A query whose every key is masked has no defined softmax: both paths return NaN there,
as :class:`torch.nn.MultiheadAttention` does.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MultiHeadAttention", "attention", "causal_mask", "merge_masks"]


def causal_mask(length: int, keys: int | None = None,
                device: torch.device | str | None = None) -> torch.Tensor:
    """(length, keys) bool mask, ``True`` above the diagonal: query t sees keys 0..t only.

    ``keys`` defaults to ``length``; with more keys than queries the mask is aligned at the
    top left, as :func:`torch.nn.functional.scaled_dot_product_attention`'s ``is_causal``.
    """
    keys = length if keys is None else keys
    return torch.ones(length, keys, dtype=torch.bool, device=device).triu(1)


def merge_masks(attn_mask: torch.Tensor | None, key_padding_mask: torch.Tensor | None,
                is_causal: bool, *, batch: int, heads: int, queries: int, keys: int,
                dtype: torch.dtype, device: torch.device) -> torch.Tensor | None:
    """All masks as one additive float mask broadcastable to (B, H, T, S), or None.

    Masked positions get ``-inf``, allowed ones 0 (float masks are added as given).
    """
    mask = None

    def add(extra: torch.Tensor) -> None:
        nonlocal mask
        mask = extra if mask is None else mask + extra

    def as_float(m: torch.Tensor) -> torch.Tensor:
        if m.dtype == torch.bool:
            return torch.zeros(m.shape, dtype=dtype, device=device).masked_fill(m, float("-inf"))
        return m.to(dtype)

    if is_causal:
        add(as_float(causal_mask(queries, keys, device)).view(1, 1, queries, keys))
    if attn_mask is not None:
        m = attn_mask
        if m.dim() == 2:
            expected = (queries, keys)
            m = m.view(1, 1, queries, keys) if tuple(m.shape) == expected else m
        elif m.dim() == 3:
            expected = (batch * heads, queries, keys)
            m = m.view(batch, heads, queries, keys) if tuple(m.shape) == expected else m
        else:
            expected = (batch, heads, queries, keys)
        if tuple(m.shape[-2:]) != (queries, keys) or m.dim() != 4:
            raise ValueError(f"attn_mask has shape {tuple(attn_mask.shape)}; expected "
                             f"{expected} (queries x keys)")
        add(as_float(m))
    if key_padding_mask is not None:
        if tuple(key_padding_mask.shape) != (batch, keys):
            raise ValueError(f"key_padding_mask has shape {tuple(key_padding_mask.shape)}; "
                             f"expected (batch, keys) = {(batch, keys)}")
        add(as_float(key_padding_mask).view(batch, 1, 1, keys))
    return mask


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
              mask: torch.Tensor | None = None, *, dropout_p: float = 0.0,
              training: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q kᵀ / √d + mask) v, written out.

    Shapes: q (..., T, d), k (..., S, d), v (..., S, d_v), mask broadcastable to
    (..., T, S) and additive. Returns the output (..., T, d_v) and the attention weights
    (..., T, S), each row summing to 1.
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores + mask
    weights = scores.softmax(dim=-1)
    if dropout_p > 0.0 and training:
        weights = F.dropout(weights, dropout_p)
    return weights @ v, weights


class MultiHeadAttention(nn.Module):
    """Multi-head attention: project to H heads of size D/H, attend in each, concatenate, project.

    Shapes: query (B, T, D), key and value (B, S, D) (default: the query, i.e.
    self-attention); output (B, T, D). With ``need_weights=True`` it also returns the
    weights (B, H, T, S) and always takes the written-out path.

    ``fast=True`` computes the attention with
    :func:`torch.nn.functional.scaled_dot_product_attention` (a fused kernel); ``False``
    with :func:`attention`. The two are equal to float tolerance (tested).

    The initialisation copies :class:`torch.nn.MultiheadAttention`'s: the stacked (3D, D)
    query/key/value matrix Xavier-uniform, the output projection PyTorch's Linear default,
    all biases zero.
    """

    def __init__(self, d_model: int, n_heads: int, *, bias: bool = True, dropout: float = 0.0,
                 fast: bool = True):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.d_model, self.n_heads, self.head_dim = d_model, n_heads, d_model // n_heads
        self.dropout = dropout
        self.fast = fast
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        stacked = torch.empty(3 * self.d_model, self.d_model)
        nn.init.xavier_uniform_(stacked)
        for proj, part in zip((self.q_proj, self.k_proj, self.v_proj), stacked.chunk(3)):
            proj.weight.copy_(part)
        self.out_proj.reset_parameters()
        for proj in (self.q_proj, self.k_proj, self.v_proj, self.out_proj):
            if proj.bias is not None:
                proj.bias.zero_()

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, d)

    def forward(self, query: torch.Tensor, key: torch.Tensor | None = None,
                value: torch.Tensor | None = None, *, attn_mask: torch.Tensor | None = None,
                key_padding_mask: torch.Tensor | None = None, is_causal: bool = False,
                need_weights: bool = False):
        key = query if key is None else key
        value = key if value is None else value
        for name, x in (("query", query), ("key", key), ("value", value)):
            if x.dim() != 3 or x.shape[-1] != self.d_model:
                raise ValueError(f"{name} has shape {tuple(x.shape)}; expected (batch, length, "
                                 f"{self.d_model}) (batch first)")
        if key.shape[:2] != value.shape[:2] or key.shape[0] != query.shape[0]:
            raise ValueError(f"query {tuple(query.shape)}, key {tuple(key.shape)} and value "
                             f"{tuple(value.shape)} disagree in batch or key length")
        b, t, _ = query.shape
        s = key.shape[1]
        q, k, v = self._heads(self.q_proj(query)), self._heads(self.k_proj(key)), \
            self._heads(self.v_proj(value))
        p = self.dropout if self.training else 0.0
        if self.fast and not need_weights and attn_mask is None and key_padding_mask is None:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=is_causal)
            weights = None
        else:
            mask = merge_masks(attn_mask, key_padding_mask, is_causal, batch=b,
                               heads=self.n_heads, queries=t, keys=s, dtype=q.dtype,
                               device=q.device)
            if self.fast and not need_weights:
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
                weights = None
            else:
                out, weights = attention(q, k, v, mask, dropout_p=p, training=self.training)
        out = self.out_proj(out.transpose(1, 2).reshape(b, t, self.d_model))
        return (out, weights) if need_weights else out
