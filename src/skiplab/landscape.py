"""Loss landscapes (Li, Xu, Taylor, Studer & Goldstein 2018): slices of the loss surface.

A network's loss is a function of all its P parameters θ. To look at it, pick one or two
directions δ, η shaped like the parameters and evaluate

    f(α) = L(θ + α δ)            (1-D)       f(α, β) = L(θ + α δ + β η)      (2-D)

on a grid. A random direction is meaningless without a scale: ReLU networks with
normalisation compute the same function when a layer's weights are multiplied by any c > 0,
yet a step of fixed size is huge for small weights and tiny for large ones. **Filter
normalisation** rescales each filter (each output unit: a row of a Linear weight, an output
channel of a convolution) of the direction to the norm of the same filter of θ, so a step
of α = 1 changes every filter by as much as it is long. Biases and normalisation parameters
(every 1-D parameter) get a zero direction, as in the reference code
(tomgoldstein/loss-landscape, ``ignore='biasbn'``).

Normalisation layers are evaluated in **eval mode** by default, with the running statistics
of training, as the reference code does (its ``eval_loss`` calls ``net.eval()``): the
surface is then a function of the weights alone. ``bn_mode="train"`` uses each grid
point's batch statistics instead (and restores the running statistics afterwards).

Every surface function restores the model's state exactly (parameters and buffers, bit for
bit) when it returns or raises.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .probes.batchnorm import reestimate_bn_
from .probes.hessian import chunked_loss_fns, hvp, lanczos_eigenvalues
from .runtime import progress
from .validation import check_choice

__all__ = [
    "Direction",
    "Surface",
    "curvature_ratio",
    "difference_direction",
    "grid_minima",
    "interpolate",
    "nonconvex_fraction",
    "perturbed",
    "random_direction",
    "reestimate_bn_",
    "rescale_conv_bn_",
    "restored",
    "surface_1d",
    "surface_2d",
    "trajectory_directions",
]

Direction = list[torch.Tensor]
Normalisation = Literal["filter", "layer", "none"]
BNMode = Literal["eval", "train"]


def _params(model: nn.Module) -> list[torch.Tensor]:
    return [p for p in model.parameters()]


def random_direction(model: nn.Module, *, normalisation: Normalisation = "filter",
                     generator: torch.Generator | None = None,
                     zero_1d: bool = True) -> Direction:
    """A Gaussian direction shaped like ``model.parameters()``, normalised.

    Args:
        normalisation: ``"filter"`` (each filter rescaled to the norm of the weights' filter,
            Li et al.'s method), ``"layer"`` (each parameter tensor rescaled to the weights'
            tensor norm) or ``"none"`` (the raw Gaussian, entries N(0, 1)).
        generator: source of randomness (default: torch's global generator).
        zero_1d: give 1-D parameters (biases, normalisation weights and biases) a zero
            direction, as the reference code's ``ignore='biasbn'``; with False they keep the
            raw Gaussian under ``"none"`` and are rescaled to the parameter's norm otherwise.
    """
    check_choice("normalisation", normalisation, ("filter", "layer", "none"))
    direction = []
    for p in _params(model):
        d = torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device)
        if p.dim() <= 1 and zero_1d:
            d.zero_()
        elif normalisation != "none":
            if normalisation == "layer" or p.dim() <= 1:
                d.mul_(p.detach().norm() / (d.norm() + 1e-10))
            else:
                w = p.detach().reshape(p.shape[0], -1).norm(dim=1)
                n = d.reshape(d.shape[0], -1).norm(dim=1)
                d.mul_((w / (n + 1e-10)).reshape(-1, *([1] * (d.dim() - 1))))
        direction.append(d)
    return direction


@torch.no_grad()
def rescale_conv_bn_(model: nn.Module, factor: float) -> nn.Module:
    """Multiply every convolution's weight by ``factor`` and fix BatchNorm to match (running
    mean times factor, running variance and eps times factor²), in place.

    In a net where each bias-free convolution feeds a BatchNorm (the CIFAR ResNets and
    their plain twins), the result computes the same function, in eval mode and with batch
    statistics alike (exactly, up to float rounding: eps is scaled with the variance it is
    added to), with weights of a different scale: the scale invariance that makes
    unnormalised directions misleading.
    """
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d))]
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if len(convs) != len(norms) or any(c.bias is not None for c in convs):
        raise ValueError("needs every convolution bias-free and followed by its own BatchNorm")
    for conv in convs:
        conv.weight.mul_(factor)
    for bn in norms:
        bn.running_mean.mul_(factor)
        bn.running_var.mul_(factor ** 2)
        bn.eps = bn.eps * factor ** 2
    return model


def difference_direction(model_a: nn.Module, model_b: nn.Module) -> Direction:
    """θ_b - θ_a, parameter by parameter: α = 1 walks from model_a to model_b."""
    pa, pb = _params(model_a), _params(model_b)
    if [p.shape for p in pa] != [p.shape for p in pb]:
        raise ValueError("the two models' parameters differ in number or shape")
    return [(b.detach() - a.detach()).clone() for a, b in zip(pa, pb)]


def _flat(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.detach().reshape(-1) for t in tensors])


def _unflat(vector: torch.Tensor, like: Sequence[torch.Tensor]) -> Direction:
    out, start = [], 0
    for t in like:
        out.append(vector[start:start + t.numel()].reshape(t.shape).to(t.dtype).clone())
        start += t.numel()
    return out


def trajectory_directions(snapshots: Sequence[Sequence[torch.Tensor]],
                          final: Sequence[torch.Tensor]) -> tuple[Direction, Direction, np.ndarray]:
    """The two principal directions of an optimisation path (Li et al., section 7).

    Args:
        snapshots: parameter lists θ_0, ..., θ_{n-1} saved during training.
        final: the final parameters θ_n, the centre of the plot.

    Returns:
        d1, d2 (unit-norm directions shaped like the parameters) and the share of the path's
        variance each explains, (2,). The path's points project onto them as
        (θ_i - θ_n)·d1, (θ_i - θ_n)·d2.
    """
    if len(snapshots) < 2:
        raise ValueError("need at least two snapshots")
    centre = _flat(final).double()
    m = torch.stack([_flat(s).double() - centre for s in snapshots])        # (n, P)
    _, s, vh = torch.linalg.svd(m - m.mean(dim=0), full_matrices=False)
    share = (s ** 2 / (s ** 2).sum()).cpu().numpy()
    return _unflat(vh[0], final), _unflat(vh[1], final), share[:2]


@contextlib.contextmanager
def restored(model: nn.Module) -> Iterator[nn.Module]:
    """Restore ``model``'s parameters, buffers and train/eval mode on exit, bit for bit."""
    state = copy.deepcopy(model.state_dict())
    was_training = model.training
    try:
        yield model
    finally:
        with torch.no_grad():
            model.load_state_dict(state)
        model.train(was_training)


@contextlib.contextmanager
def perturbed(model: nn.Module, directions: Sequence[Direction],
              coefficients: Sequence[float]) -> Iterator[nn.Module]:
    """Set θ + Σ c_i d_i inside the block; the original state is restored on exit."""
    if len(directions) != len(coefficients):
        raise ValueError("one coefficient per direction")
    with restored(model):
        origin = [p.detach().clone() for p in _params(model)]
        _set(model, origin, directions, coefficients)
        yield model


@torch.no_grad()
def _set(model: nn.Module, origin: Sequence[torch.Tensor], directions: Sequence[Direction],
         coefficients: Sequence[float]) -> None:
    for i, p in enumerate(_params(model)):
        value = origin[i].clone()
        for d, c in zip(directions, coefficients):
            value.add_(d[i], alpha=float(c))
        p.copy_(value)


@torch.no_grad()
def _loss_acc(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    logits = model(x)
    return F.cross_entropy(logits, y).item(), (logits.argmax(1) == y).float().mean().item()


def _check_directions(model: nn.Module, directions: Sequence[Direction]) -> None:
    shapes = [p.shape for p in _params(model)]
    for k, d in enumerate(directions):
        if [t.shape for t in d] != shapes:
            raise ValueError(f"direction {k} is not shaped like the model's parameters")


@dataclass(frozen=True)
class Surface:
    """Loss and accuracy on a grid. 1-D: ``loss`` (len(alphas),); 2-D: (len(betas),
    len(alphas)), row j belongs to betas[j] (the layout plotly's contour expects)."""

    alphas: np.ndarray
    betas: np.ndarray | None
    loss: np.ndarray
    accuracy: np.ndarray

    @property
    def centre_loss(self) -> float:
        """The loss at the grid point nearest to the unperturbed weights."""
        i = int(np.abs(self.alphas).argmin())
        if self.betas is None:
            return float(self.loss[i])
        return float(self.loss[int(np.abs(self.betas).argmin()), i])


def _evaluate_grid(model, directions, points, x, y, bn_mode, show_progress, desc):
    check_choice("bn_mode", bn_mode, ("eval", "train"))
    _check_directions(model, directions)
    results = []
    with restored(model):
        model.train(bn_mode == "train")
        origin = [p.detach().clone() for p in _params(model)]
        for coefficients in progress(points, total=len(points), desc=desc,
                                     enabled=show_progress):
            _set(model, origin, directions, coefficients)
            results.append(_loss_acc(model, x, y))
    return np.array(results, dtype=float)


def surface_1d(model: nn.Module, direction: Direction, x: torch.Tensor, y: torch.Tensor,
               alphas: Sequence[float], *, bn_mode: BNMode = "eval",
               show_progress: bool = False) -> Surface:
    """Loss and accuracy of θ + α δ for each α, on the batch (x, y)."""
    alphas = np.asarray(alphas, dtype=float)
    r = _evaluate_grid(model, [direction], [(a,) for a in alphas], x, y, bn_mode,
                       show_progress, "1-D surface")
    return Surface(alphas, None, r[:, 0], r[:, 1])


def surface_2d(model: nn.Module, d1: Direction, d2: Direction, x: torch.Tensor,
               y: torch.Tensor, alphas: Sequence[float], betas: Sequence[float] | None = None,
               *, bn_mode: BNMode = "eval", show_progress: bool = True,
               desc: str = "2-D surface") -> Surface:
    """Loss and accuracy of θ + α d1 + β d2 on the grid alphas x betas (default betas =
    alphas), on the batch (x, y). Shapes of the result: (len(betas), len(alphas))."""
    alphas = np.asarray(alphas, dtype=float)
    betas = alphas if betas is None else np.asarray(betas, dtype=float)
    points = [(a, b) for b in betas for a in alphas]
    r = _evaluate_grid(model, [d1, d2], points, x, y, bn_mode, show_progress, desc)
    shape = (len(betas), len(alphas))
    return Surface(alphas, betas, r[:, 0].reshape(shape), r[:, 1].reshape(shape))


def interpolate(model_a: nn.Module, model_b: nn.Module, x: torch.Tensor, y: torch.Tensor,
                alphas: Sequence[float], *, bn_mode: BNMode = "eval",
                bn_data: torch.Tensor | None = None) -> Surface:
    """Loss along the straight line (1 - α) θ_a + α θ_b (α = 0: model_a, 1: model_b).

    Parameters are interpolated. BatchNorm's running statistics are, by default,
    interpolated with the same α (at α = 1 the network is exactly model_b); but the
    statistics of a mixed network are not the mix of the statistics, which inflates the
    loss in between. With ``bn_data`` (a batch of training inputs) they are instead
    re-estimated on that batch at every α (:func:`reestimate_bn_`), also at the ends.
    ``model_a`` is restored.
    """
    alphas = np.asarray(alphas, dtype=float)
    names_a = [(n, b.shape) for n, b in model_a.named_buffers()]
    names_b = [(n, b.shape) for n, b in model_b.named_buffers()]
    if names_a != names_b:
        raise ValueError("the two models' buffers differ in names or shapes")
    buffers_a = [b.detach().clone() for b in model_a.buffers()]
    buffers_b = [b.detach() for b in model_b.buffers()]
    direction = difference_direction(model_a, model_b)
    results = []
    with restored(model_a):
        model_a.train(bn_mode == "train")
        origin = [p.detach().clone() for p in _params(model_a)]
        for a in alphas:
            _set(model_a, origin, [direction], [a])
            if bn_data is not None:
                reestimate_bn_(model_a, bn_data)
                model_a.train(bn_mode == "train")
            else:
                with torch.no_grad():
                    for buf, ba, bb in zip(model_a.buffers(), buffers_a, buffers_b):
                        if buf.is_floating_point():
                            buf.copy_(torch.lerp(ba, bb, float(a)))
            results.append(_loss_acc(model_a, x, y))
    r = np.array(results, dtype=float)
    return Surface(alphas, None, r[:, 0], r[:, 1])


def nonconvex_fraction(z: np.ndarray, *, step: int = 1) -> float:
    """Share of interior grid points where the surface's finite-difference Hessian has a
    negative eigenvalue (the surface curves down in some direction there).

    Interior means at least ``step`` cells from the edge: 17 x 17 of a 21 x 21 grid with
    ``step=2``. Any negative eigenvalue counts, however small; compute it on the loss
    itself, not on log(loss) (the log of a convex bowl curves downwards away from its
    centre).

    Args:
        z: (n_b, n_a) values on an evenly spaced grid (spacing cancels out of the sign).
        step: distance in grid cells of the central differences; ``step=2`` on a 21x21
            grid over [-1, 1] differences over 0.2 and smooths noise finer than that.
    """
    z = np.asarray(z, dtype=float)
    if z.ndim != 2 or min(z.shape) < 2 * step + 1:
        raise ValueError(f"need a 2-D grid with at least {2 * step + 1} points a side")
    h = step
    c = z[h:-h, h:-h]
    zaa = z[h:-h, 2 * h:] - 2 * c + z[h:-h, :-2 * h]
    zbb = z[2 * h:, h:-h] - 2 * c + z[:-2 * h, h:-h]
    zab = (z[2 * h:, 2 * h:] - z[2 * h:, :-2 * h] - z[:-2 * h, 2 * h:] + z[:-2 * h, :-2 * h]) / 4
    # smallest eigenvalue of [[zaa, zab], [zab, zbb]]
    lam_min = (zaa + zbb) / 2 - np.sqrt(((zaa - zbb) / 2) ** 2 + zab ** 2)
    return float((lam_min < 0).mean())


def grid_minima(z: np.ndarray) -> int:
    """Interior grid points strictly lower than all 8 neighbours (edge points not counted:
    a surface still falling past the edge would count there)."""
    z = np.asarray(z, dtype=float)
    c = z[1:-1, 1:-1]
    lower = np.ones_like(c, dtype=bool)
    for db in (-1, 0, 1):
        for da in (-1, 0, 1):
            if da or db:
                lower &= c < z[1 + db:z.shape[0] - 1 + db, 1 + da:z.shape[1] - 1 + da]
    return int(lower.sum())


def curvature_ratio(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, steps: int = 20,
                    seed: int = 0, chunk_size: int = 256) -> tuple[float, float, float]:
    """Extreme Hessian eigenvalues of the mean cross-entropy on (x, y) at the current
    weights, by Lanczos.

    Uses the model in eval mode (running statistics) and all trainable parameters. Each
    Hessian-vector product runs ``chunk_size`` examples at a time and sums the chunks'
    products (:func:`skiplab.probes.chunked_loss_fns`), so memory is bounded by the chunk,
    not by len(x); in eval mode every example is computed on its own, so the result is
    the full batch's (up to rounding) whatever the chunk size.
    Returns (λ_min, λ_max, |λ_min / λ_max|). The model is left as it was.
    """
    with restored(model):
        model.eval()
        params = [p for p in model.parameters() if p.requires_grad]
        dim = sum(p.numel() for p in params)
        loss_fns = chunked_loss_fns(model, x, y, chunk_size)
        values = lanczos_eigenvalues(lambda v: hvp(loss_fns, params, v.to(params[0].dtype)),
                                     dim, steps, seed=seed, device=params[0].device)
    lam_min, lam_max = values.min().item(), values.max().item()
    return lam_min, lam_max, abs(lam_min / lam_max)
