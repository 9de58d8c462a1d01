"""Break the symmetry without the identity path, or keep the path without the symmetry.

The symmetry chapter's deciding experiment. Its plain and residual nets differ in two things
at once: the residual net has an identity path *and* (almost) no unit-permutation symmetry.
These two conversions of a :class:`~skiplab.models.DeepMLP` separate them.

``break_unit_symmetry(plain)``: a plain net whose hidden units are no longer
interchangeable, with no skip. In the stem and in every hidden block, the bias of each unit
is frozen at its own value (evenly spaced in [-bias_spread, bias_spread], in random order)
and ``n_frozen`` weight columns, the same columns in every row, are frozen at their
initial values (after Lim et al. 2024's "W-asymmetric" networks). Only the other entries
are trained. Two units of such a layer differ in their frozen bias forever, so they can
never coincide (no tie subspace exists), and permuting units would move frozen values: no
permutation of the trainable parameters leaves the function unchanged.

    masked layer: y = W x + b,  W = frozen columns | trainable columns,  b frozen and distinct

``orthogonal_shortcuts(residual)``: a residual net whose shortcut is a fixed random
orthogonal matrix Q_l (one per block, Haar-distributed) instead of I:

    h' = Q_l h + tanh(W_l h + b_l)

Q_l preserves norms as I does (the path carries the signal and the gradient undamped), but
a stream permutation P would have to satisfy P Q_l = Q_l P for consecutive blocks, which
for a random Q_l only P = I does: the stream permutation that an identity skip keeps is gone
(for an odd activation such as tanh only the global sign flip of the whole stream is left).

Both return deep copies: the source model is not changed. At step 0 the converted net is the
source net except for the frozen biases (``break_unit_symmetry``) or the shortcut
(``orthogonal_shortcuts``).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .mlp import DeepMLP

__all__ = ["FrozenEntryLinear", "OrthogonalShortcut", "break_unit_symmetry",
           "orthogonal_shortcuts", "random_orthogonal"]


class FrozenEntryLinear(nn.Module):
    """A linear layer with frozen bias and frozen weight columns; the rest is trained.

    Shapes: (B, in_features) -> (B, out_features). The trainable entries are one flat
    parameter ``free_weight`` of shape (out_features * (in_features - n_frozen),); frozen
    entries are buffers, so they get no gradient and add no rows to a Hessian.

    Args:
        weight: (out_features, in_features) initial weight; columns ``frozen_columns`` keep
            these values forever, the others start from them.
        bias: (out_features,) frozen bias.
        frozen_columns: (n_frozen,) long tensor of column indices, shared by all rows.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, frozen_columns: torch.Tensor):
        super().__init__()
        out_features, in_features = weight.shape
        if bias.shape != (out_features,):
            raise ValueError(f"bias must have shape ({out_features},), got {tuple(bias.shape)}")
        mask = torch.zeros(out_features, in_features, dtype=torch.bool, device=weight.device)
        mask[:, frozen_columns] = True
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("frozen_mask", mask)
        self.register_buffer("frozen_weight", weight.detach().clone() * mask)
        self.register_buffer("free_index", (~mask).flatten().nonzero().flatten())
        self.register_buffer("bias", bias.detach().clone())
        self.free_weight = nn.Parameter(weight.detach().flatten()[self.free_index].clone())

    @property
    def weight(self) -> torch.Tensor:
        """(out_features, in_features): the frozen entries with the trained ones in place."""
        flat = self.frozen_weight.flatten().index_copy(0, self.free_index, self.free_weight)
        return flat.view(self.out_features, self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        n_frozen = int(self.frozen_mask[0].sum()) if self.out_features else 0
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"frozen_columns={n_frozen}, frozen_bias=True")


def _mask_layer(layer: nn.Linear, n_frozen: int, bias_spread: float,
                generator: torch.Generator) -> FrozenEntryLinear:
    n, d = layer.out_features, layer.in_features
    if not 0 <= n_frozen < d:
        raise ValueError(f"n_frozen={n_frozen} must be in [0, {d}) for a layer reading {d}")
    columns = torch.randperm(d, generator=generator)[:n_frozen]
    levels = torch.linspace(-bias_spread, bias_spread, n, dtype=torch.float64)
    bias = levels[torch.randperm(n, generator=generator)].to(layer.weight)
    return FrozenEntryLinear(layer.weight, bias, columns.to(layer.weight.device))


def break_unit_symmetry(model: DeepMLP, *, n_frozen: int = 3, bias_spread: float = 0.5,
                        seed: int = 0) -> DeepMLP:
    """A copy of a plain ``DeepMLP`` whose stem and blocks are :class:`FrozenEntryLinear`.

    Each layer freezes its bias at distinct values (evenly spaced in [-bias_spread,
    bias_spread], shuffled) and ``n_frozen`` random weight columns at their current values.
    ``seed`` draws the columns and the order of the biases. The readout stays trainable.
    """
    if model.config.skip != "none":
        raise ValueError(f"break_unit_symmetry expects a plain net, got architecture="
                         f"{model.config.architecture!r}")
    if bias_spread <= 0:
        raise ValueError(f"bias_spread={bias_spread} must be positive (distinct biases)")
    generator = torch.Generator().manual_seed(seed)
    net = copy.deepcopy(model)
    for block in net.hidden_modules():
        block.linear = _mask_layer(block.linear, n_frozen, bias_spread, generator)
    return net


def random_orthogonal(n: int, generator: torch.Generator, *,
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(n, n) Haar-random orthogonal matrix: QR of a Gaussian matrix, signs fixed by R's
    diagonal (Mezzadri 2007)."""
    q, r = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
    return q.to(dtype)


class OrthogonalShortcut(nn.Module):
    """x -> x Q^T for a fixed orthogonal (n, n) matrix Q (a buffer, not trained).

    Shapes: (B, n) -> (B, n).
    """

    def __init__(self, q: torch.Tensor):
        super().__init__()
        if q.dim() != 2 or q.shape[0] != q.shape[1]:
            raise ValueError(f"q must be square, got {tuple(q.shape)}")
        self.register_buffer("q", q.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.q.T


def orthogonal_shortcuts(model: DeepMLP, *, seed: int = 0) -> DeepMLP:
    """A copy of a residual ``DeepMLP`` (``architecture="residual"``) whose every block's
    shortcut is its own fixed random orthogonal matrix (drawn with ``seed``) instead of I."""
    if model.config.architecture != "residual":
        raise ValueError(f"orthogonal_shortcuts expects architecture='residual', got "
                         f"{model.config.architecture!r}")
    generator = torch.Generator().manual_seed(seed)
    net = copy.deepcopy(model)
    for block in net.blocks:
        weight = block.linear.weight
        q = random_orthogonal(weight.shape[0], generator, dtype=weight.dtype)
        block.shortcut = OrthogonalShortcut(q.to(weight.device))
    return net
