"""Curvature probes: Hessian-vector products, the exact Hessian, and Lanczos spectra.

The loss is a function of all the trainable parameters, flattened into one vector of
length P. For small models (P up to a few thousand) the exact P x P Hessian is affordable;
beyond that, Lanczos iteration needs only Hessian-vector products (two backward passes
each) and returns the extreme eigenvalues.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

__all__ = [
    "hessian_matrix",
    "hvp",
    "lanczos_eigenvalues",
    "model_loss_fn",
    "near_zero_fraction",
]


def model_loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                  loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
                  ) -> Callable[[], torch.Tensor]:
    """A closure computing the mean cross-entropy (or ``loss``) of ``model`` on (x, y)."""
    criterion = loss or nn.functional.cross_entropy
    return lambda: criterion(model(x), y)


def _params(model_or_params: nn.Module | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    if isinstance(model_or_params, nn.Module):
        return [p for p in model_or_params.parameters() if p.requires_grad]
    return list(model_or_params)


def hvp(loss_fn: Callable[[], torch.Tensor], params: nn.Module | Sequence[torch.Tensor],
        vector: torch.Tensor) -> torch.Tensor:
    """H v for the Hessian H of ``loss_fn()`` in the flattened ``params``.

    Args:
        loss_fn: computes a scalar loss from the current parameters.
        params: a model (its trainable parameters) or a list of tensors.
        vector: (P,) with P the total number of parameter entries.

    Returns:
        (P,) tensor, same dtype as the parameters.
    """
    ps = _params(params)
    grads = torch.autograd.grad(loss_fn(), ps, create_graph=True)
    flat = torch.cat([g.reshape(-1) for g in grads])
    if vector.shape != flat.shape:
        raise ValueError(f"vector must be ({flat.numel()},), got {tuple(vector.shape)}")
    product = torch.autograd.grad(flat, ps, grad_outputs=vector.to(flat), retain_graph=False)
    return torch.cat([p.reshape(-1) for p in product]).detach()


def hessian_matrix(loss_fn: Callable[[], torch.Tensor],
                   params: nn.Module | Sequence[torch.Tensor]) -> torch.Tensor:
    """The exact (P, P) Hessian, one row per Hessian-vector product with a unit vector.

    Cost: P double-backward passes; meant for P up to a few thousand.
    """
    ps = _params(params)
    grads = torch.autograd.grad(loss_fn(), ps, create_graph=True)
    flat = torch.cat([g.reshape(-1) for g in grads])
    rows = []
    for i in range(flat.numel()):
        row = torch.autograd.grad(flat[i], ps, retain_graph=True, allow_unused=True)
        rows.append(torch.cat([(r if r is not None else torch.zeros_like(p)).reshape(-1)
                               for r, p in zip(row, ps)]))
    return torch.stack(rows).detach()


def lanczos_eigenvalues(matvec: Callable[[torch.Tensor], torch.Tensor], dim: int,
                        steps: int = 50, *, seed: int = 0,
                        dtype: torch.dtype = torch.float64,
                        device: str | torch.device = "cpu") -> torch.Tensor:
    """Ritz values of a symmetric operator after ``steps`` Lanczos iterations.

    Full re-orthogonalisation keeps the basis orthogonal, so the values are reliable
    approximations of the operator's extreme eigenvalues (the largest and smallest are found
    first). When the Krylov space is exhausted early (an operator with repeated eigenvalues,
    e.g. many zeros) the iteration stops, and the values are then exactly the operator's
    distinct eigenvalues (up to rounding).

    Args:
        matvec: v -> A v for (dim,) vectors.
        dim: size of the operator.
        steps: iterations (at most ``dim``).
        seed: seed of the random start vector.

    Returns:
        (k,) eigenvalues of the tridiagonal matrix, ascending, k <= steps.
    """
    steps = min(steps, dim)
    generator = torch.Generator().manual_seed(seed)
    v = torch.randn(dim, generator=generator, dtype=dtype).to(device)
    v /= v.norm()
    basis = [v]
    alphas, betas = [], []
    w = matvec(v).to(dtype)
    for k in range(steps):
        alpha = torch.dot(w, basis[k])
        alphas.append(alpha)
        w = w - alpha * basis[k] - (betas[-1] * basis[k - 1] if k > 0 else 0.0)
        stacked = torch.stack(basis)
        w = w - stacked.T @ (stacked @ w)  # full re-orthogonalisation
        if k == steps - 1:
            break
        beta = w.norm()
        if beta < 1e-10:
            break
        betas.append(beta)
        basis.append(w / beta)
        w = matvec(basis[-1]).to(dtype)
    t = torch.diag(torch.stack(alphas))
    if betas:
        off = torch.stack(betas[: len(alphas) - 1])
        t = t + torch.diag(off, 1) + torch.diag(off, -1)
    return torch.linalg.eigvalsh(t)


def near_zero_fraction(eigenvalues: torch.Tensor, rel_tol: float = 1e-3) -> float:
    """Share of eigenvalues with |λ| below ``rel_tol`` times the largest |λ| (degeneracy)."""
    ev = eigenvalues.abs()
    if ev.numel() == 0:
        raise ValueError("no eigenvalues")
    return (ev < rel_tol * ev.max()).double().mean().item()
