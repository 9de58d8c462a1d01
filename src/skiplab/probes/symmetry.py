"""Permutation symmetry of hidden units: permute, clone, compare and count.

A hidden layer h = act(W_in x + b_in) feeding z = W_out h + b_out computes the same function
after any permutation P of its units applied to the rows of (W_in, b_in) and the columns of
W_out: z = W_out P^T act(P W_in x + P b_in) + b_out. These helpers act on such a pair of
linear layers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = [
    "clone_unit_",
    "log10_factorial",
    "log10_symmetry_order",
    "node_overlap",
    "permute_units_",
    "unit_distance",
]


def _check_pair(incoming: nn.Linear, outgoing: nn.Linear, offset: int) -> None:
    if outgoing.in_features < offset + incoming.out_features:
        raise ValueError(f"outgoing layer reads {outgoing.in_features} features, fewer than "
                         f"offset {offset} + {incoming.out_features} units")


@torch.no_grad()
def permute_units_(incoming: nn.Linear, outgoing: nn.Linear, perm: torch.Tensor, *,
                   offset: int = 0) -> None:
    """Reorder the units of a hidden layer in place: unit k takes the place of unit perm[k].

    Args:
        incoming: the layer that computes the units, (n, d_in) weight.
        outgoing: the layer that reads them, (d_out, offset + n + ...) weight; ``offset`` is
            where the units start among its inputs (non-zero after a concatenation).
        perm: (n,) permutation of range(n).
    """
    _check_pair(incoming, outgoing, offset)
    n = incoming.out_features
    if sorted(perm.tolist()) != list(range(n)):
        raise ValueError(f"perm must be a permutation of range({n})")
    incoming.weight.copy_(incoming.weight[perm])
    if incoming.bias is not None:
        incoming.bias.copy_(incoming.bias[perm])
    columns = outgoing.weight[:, offset:offset + n]
    outgoing.weight[:, offset:offset + n] = columns[:, perm]


@torch.no_grad()
def clone_unit_(incoming: nn.Linear, outgoing: nn.Linear, source: int, target: int, *,
                offset: int = 0) -> None:
    """Make unit ``target`` an exact copy of unit ``source``: incoming row, bias and outgoing
    column. The network now sits on a symmetry hyperplane of the pair (source, target)."""
    _check_pair(incoming, outgoing, offset)
    incoming.weight[target] = incoming.weight[source]
    if incoming.bias is not None:
        incoming.bias[target] = incoming.bias[source]
    outgoing.weight[:, offset + target] = outgoing.weight[:, offset + source]


@torch.no_grad()
def unit_distance(incoming: nn.Linear, outgoing: nn.Linear, a: int, b: int, *,
                  offset: int = 0) -> float:
    """Euclidean distance between units a and b: incoming rows, biases and outgoing columns."""
    _check_pair(incoming, outgoing, offset)
    parts = [incoming.weight[a] - incoming.weight[b],
             outgoing.weight[:, offset + a] - outgoing.weight[:, offset + b]]
    if incoming.bias is not None:
        parts.append((incoming.bias[a] - incoming.bias[b]).reshape(1))
    return torch.cat(parts).norm().item()


@torch.no_grad()
def node_overlap(weight: torch.Tensor) -> float:
    """Largest cosine similarity between two different rows (units' incoming weights).

    Orhan & Pitkow (2018) call units with overlap near 1 "overlap singularities": the pair
    is close to a symmetry hyperplane. Shapes: weight (n, d) with n >= 2.
    """
    if weight.dim() != 2 or weight.shape[0] < 2:
        raise ValueError(f"weight must be (n, d) with n >= 2, got {tuple(weight.shape)}")
    w = nn.functional.normalize(weight.double(), dim=1)
    cos = w @ w.T
    cos.fill_diagonal_(-math.inf)
    return cos.max().item()


def log10_factorial(n: int) -> float:
    """log10(n!), exactly via lgamma; n! overflows floats beyond n = 170."""
    if n < 0:
        raise ValueError(f"n={n} must be non-negative")
    return math.lgamma(n + 1) / math.log(10)


def log10_symmetry_order(widths: Sequence[int], skip: Sequence[bool] | None = None) -> float:
    """log10 of the number of unit permutations that leave a fully connected net unchanged.

    Each hidden layer of width n contributes n! (its units can be reordered), unless its
    units are tied to fixed coordinates by an additive skip (``skip[i]`` True), which leaves
    only the identity permutation. The group is a product, so the orders multiply.

    Args:
        widths: hidden layer widths, input to output.
        skip: per hidden layer, whether an additive skip adds a fixed input to its units.
    """
    skip = list(skip) if skip is not None else [False] * len(widths)
    if len(skip) != len(widths):
        raise ValueError("skip needs one entry per hidden layer")
    return sum(0.0 if s else log10_factorial(n) for n, s in zip(widths, skip))
