"""Curvature probes: Hessian-vector products, the exact Hessian, and Lanczos spectra.

The loss is a function of all the trainable parameters, flattened into one vector of
length P. For small models (P up to a few thousand) the exact P x P Hessian is affordable;
beyond that, Lanczos iteration needs only Hessian-vector products (two backward passes
each) and returns the extreme eigenvalues.

A Hessian-vector product keeps the graph of the gradient in memory, for every example of
the batch at once. For a large batch, :func:`chunked_loss_fns` splits the mean loss into
per-chunk terms that sum to it, and :func:`hvp` sums their products one chunk at a time
(the Hessian is linear in the loss), so memory is bounded by the chunk, not the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

__all__ = [
    "chunked_loss_fns",
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


def chunked_loss_fns(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                     chunk_size: int = 256,
                     loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
                     ) -> list[Callable[[], torch.Tensor]]:
    """The mean loss of ``model`` on (x, y) as closures, one per chunk of at most
    ``chunk_size`` examples, whose values sum to the mean over all N examples: chunk i
    returns (n_i / N) * mean loss on its n_i examples.

    Pass the list to :func:`hvp` for the full-batch Hessian-vector product with one
    chunk's graph in memory at a time. ``loss`` (default: cross-entropy) must be a mean
    over examples. The sum equals the full-batch loss only when the model treats examples
    independently: in eval mode for BatchNorm (train mode would normalise each chunk with
    its own statistics, a different function).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size} must be at least 1")
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"x and y need the same, non-zero length; got {len(x)} and {len(y)}")
    criterion = loss or nn.functional.cross_entropy
    n = len(x)

    def chunk(start: int) -> Callable[[], torch.Tensor]:
        xs, ys = x[start:start + chunk_size], y[start:start + chunk_size]
        return lambda: criterion(model(xs), ys) * (len(xs) / n)

    return [chunk(start) for start in range(0, n, chunk_size)]


def _params(model_or_params: nn.Module | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    if isinstance(model_or_params, nn.Module):
        return [p for p in model_or_params.parameters() if p.requires_grad]
    return list(model_or_params)


def hvp(loss_fn: Callable[[], torch.Tensor] | Sequence[Callable[[], torch.Tensor]],
        params: nn.Module | Sequence[torch.Tensor], vector: torch.Tensor) -> torch.Tensor:
    """H v for the Hessian H of ``loss_fn()`` in the flattened ``params``.

    Args:
        loss_fn: computes a scalar loss from the current parameters; or a sequence of such
            closures whose losses sum to the loss (:func:`chunked_loss_fns`): H v is then
            the sum of their products, computed one closure (one graph) at a time.
        params: a model (its trainable parameters) or a list of tensors.
        vector: (P,) with P the total number of parameter entries.

    Returns:
        (P,) tensor, same dtype and device as the parameters.
    """
    ps = _params(params)
    size = sum(p.numel() for p in ps)
    if vector.shape != (size,):
        raise ValueError(f"vector must be ({size},), got {tuple(vector.shape)}")
    total = None
    for term in ([loss_fn] if callable(loss_fn) else loss_fn):
        grads = torch.autograd.grad(term(), ps, create_graph=True)
        flat = torch.cat([g.reshape(-1) for g in grads])
        product = torch.autograd.grad(flat, ps, grad_outputs=vector.to(flat))
        part = torch.cat([p.reshape(-1) for p in product]).detach()
        total = part if total is None else total + part
        del grads, flat, product  # free this term's graph before the next one is built
    if total is None:
        raise ValueError("no loss to differentiate: the sequence of loss closures is empty")
    return total


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
