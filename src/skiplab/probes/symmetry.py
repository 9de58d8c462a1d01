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
    "permute_depthwise_channels_",
    "permute_stream_",
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
    """Reorder the units of a hidden layer in place: afterwards unit k is the old unit perm[k].

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
    column. The network now sits on the tie subspace of the pair (source, target)."""
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
def node_overlap(weight: torch.Tensor, *, signed: bool = False) -> float:
    """Largest |cosine similarity| between two different rows (units' incoming weights).

    Orhan & Pitkow (2018) call units with overlap near 1 "overlap singularities": the pair
    is close to a tie. For odd activations such as tanh, w_i = -w_j is a tie too (flip one
    unit's signs), hence the absolute value; ``signed=True`` takes the signed cosine.
    Shapes: weight (n, d) with n >= 2.
    """
    if weight.dim() != 2 or weight.shape[0] < 2:
        raise ValueError(f"weight must be (n, d) with n >= 2, got {tuple(weight.shape)}")
    w = nn.functional.normalize(weight.double(), dim=1)
    cos = w @ w.T
    if not signed:
        cos = cos.abs()
    cos.fill_diagonal_(-math.inf)
    return cos.max().item()


@torch.no_grad()
def permute_stream_(producer: nn.Linear, branches: Sequence[nn.Linear], reader: nn.Linear,
                    perm: torch.Tensor) -> None:
    """Permute the coordinates of a residual stream in place, consistently everywhere.

    The stream s = act(producer(x)) is updated by one-layer branches, s <- s + act(W s + b),
    and read by ``reader``. Reordering the stream's coordinates by ``perm`` (producer rows,
    each branch's rows *and* columns, reader columns) leaves the function unchanged: the
    skip does not remove this permutation, it ties every branch's units to the stream's.
    """
    n = producer.out_features
    for branch in branches:
        if branch.weight.shape != (n, n):
            raise ValueError(f"a one-layer branch must map the stream to itself, ({n}, {n}); "
                             f"got {tuple(branch.weight.shape)}")
    # the stream's own units: producer rows and reader columns, as for any hidden layer
    permute_units_(producer, reader, perm)
    for branch in branches:
        branch.weight.copy_(branch.weight[perm][:, perm])
        if branch.bias is not None:
            branch.bias.copy_(branch.bias[perm])


@torch.no_grad()
def permute_depthwise_channels_(producer: nn.Conv2d, depthwise: nn.Conv2d, pointwise: nn.Conv2d,
                                perm: torch.Tensor) -> None:
    """Permute the channels of a depthwise-separable convolution in place.

    The block computes y = pointwise(act(depthwise(act(producer(x))))) with a depthwise
    convolution (``groups`` = channels: filter c sees only channel c). Reordering the C
    channels by ``perm`` (afterwards channel k is the old channel perm[k]) in the
    producer's output filters and biases, the depthwise filters and biases, and the
    pointwise convolution's input columns leaves the function unchanged: a depthwise
    convolution does not remove the channels' permutation symmetry, its filters move with
    their channels.

    Args:
        producer: (C, C_in, k, k) weight: makes the C channels.
        depthwise: (C, 1, k, k) weight, ``groups == C``.
        pointwise: (C_out, C, 1, 1) weight: reads the C channels.
        perm: (C,) permutation of range(C).
    """
    c = producer.out_channels
    if depthwise.groups != c or depthwise.in_channels != c or depthwise.out_channels != c:
        raise ValueError(f"depthwise must be a ({c} -> {c}) convolution with groups={c}, got "
                         f"{depthwise.in_channels} -> {depthwise.out_channels}, "
                         f"groups={depthwise.groups}")
    if pointwise.in_channels != c or pointwise.groups != 1:
        raise ValueError(f"pointwise must read {c} channels with groups=1, got "
                         f"{pointwise.in_channels}, groups={pointwise.groups}")
    if sorted(perm.tolist()) != list(range(c)):
        raise ValueError(f"perm must be a permutation of range({c})")
    for conv in (producer, depthwise):
        conv.weight.copy_(conv.weight[perm])
        if conv.bias is not None:
            conv.bias.copy_(conv.bias[perm])
    pointwise.weight.copy_(pointwise.weight[:, perm])


def log10_factorial(n: int) -> float:
    """log10(n!), exactly via lgamma; n! overflows floats beyond n = 170."""
    if n < 0:
        raise ValueError(f"n={n} must be non-negative")
    return math.lgamma(n + 1) / math.log(10)


def log10_symmetry_order(widths: Sequence[int], tied: Sequence[bool] | None = None) -> float:
    """log10 of the number of unit permutations that leave a fully connected net unchanged.

    Each hidden layer of width n contributes n! (its units can be reordered), unless its
    units are *tied* to the previous layer's: an additive skip adds unit i of layer l-1 to
    unit i of layer l, so the two layers can only be permuted together and share one n!
    (``tied[l]`` True). A layer tied to the network's input (``tied[0]``) contributes 1:
    input coordinates are fixed. This counts permutations only; odd activations such as
    tanh add a factor 2^n per untied layer (sign flips), so the true order is at least this.

    Args:
        widths: hidden layer widths, input to output.
        tied: per hidden layer, whether an additive skip ties its units to the layer below.
    """
    tied = list(tied) if tied is not None else [False] * len(widths)
    if len(tied) != len(widths):
        raise ValueError("tied needs one entry per hidden layer")
    for i, t in enumerate(tied):
        if t and i > 0 and widths[i] != widths[i - 1]:
            raise ValueError(f"layer {i} is tied to layer {i - 1} but their widths differ")
    return sum(0.0 if t else log10_factorial(n) for n, t in zip(widths, tied))
