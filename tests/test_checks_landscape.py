"""The filter-normalisation checker: the reference solution and valid variants pass, plausible
student mistakes are rejected with the message meant for them."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from checkhelp import rejects as _rejects
from torch import nn

from skiplab.checks import CheckFailed
from skiplab.checks.landscape import check_filter_normalise
from skiplab.landscape import random_direction

ZERO = "1-D parameters get a zero direction"
NORMS = "each filter's norm equals the weights' filter norm"
ALIGN = "each filter is a positive multiple of the direction's filter"
PROPERTIES = ["runs without error", "one tensor per parameter", "shapes match the parameters",
              "dtypes match the parameters", "inputs unchanged", ZERO, NORMS, ALIGN]


def _per_filter(t: torch.Tensor) -> torch.Tensor:
    """(n,) filter norms reshaped to broadcast against t."""
    return t.reshape(t.shape[0], -1).norm(dim=1).reshape(-1, *([1] * (t.dim() - 1)))


# --------------------------------------------------------------------------------------------
# the reference solution and valid variants


def normalise_reference(direction, weights):
    out = []
    for d, w in zip(direction, weights):
        if d.dim() <= 1:
            out.append(torch.zeros_like(d))
        else:
            out.append(d * _per_filter(w) / (_per_filter(d) + 1e-10))
    return out


def normalise_loop(direction, weights):
    """Valid: a loop over filters, no epsilon, 1-D as d * 0."""
    out = []
    for d, w in zip(direction, weights):
        new = d.clone()
        if d.dim() == 1:
            new = d * 0
        else:
            for i in range(d.shape[0]):
                new[i] = d[i] * (w[i].norm() / d[i].norm())
        out.append(new)
    return out


def normalise_linalg(direction, weights):
    """Valid: torch.linalg.vector_norm over dims 1.., a tuple returned."""
    def one(d, w):
        if d.dim() < 2:
            return torch.zeros_like(d)
        dims = tuple(range(1, d.dim()))
        scale = (torch.linalg.vector_norm(w, dim=dims, keepdim=True)
                 / torch.linalg.vector_norm(d, dim=dims, keepdim=True))
        return d * scale
    return tuple(one(d, w) for d, w in zip(direction, weights))


def normalise_functional(direction, weights):
    """Valid: F.normalize on the flattened filters, then view_as."""
    out = []
    for d, w in zip(direction, weights):
        if d.dim() == 1:
            out.append(d.new_zeros(d.shape))
            continue
        unit = F.normalize(d.reshape(d.shape[0], -1), dim=1)
        out.append((unit * w.reshape(w.shape[0], -1).norm(dim=1, keepdim=True)).view_as(d))
    return out


def normalise_drawing_noise(direction, weights):
    """Valid, but it draws (and discards) random numbers from the global generator."""
    torch.randn(100)
    return normalise_reference(direction, weights)


@pytest.mark.parametrize("fn", [normalise_reference, normalise_loop, normalise_linalg,
                                normalise_functional])
def test_filter_normalise_accepts(fn):
    report = check_filter_normalise(fn)
    assert f"all {len(PROPERTIES)} checks passed" in report
    for prop in PROPERTIES:
        assert prop in report
    assert f"all {len(PROPERTIES)} checks passed" in check_filter_normalise(fn, hidden=True)


def normalise_in_float64(direction, weights):
    """Valid: computes in float64, returns each tensor in its own dtype."""
    return [o.to(d.dtype) for o, d in zip(
        normalise_reference([d.double() for d in direction], [w.double() for w in weights]),
        direction)]


def normalise_to_float32(direction, weights):
    return [o.float() for o in normalise_reference(direction, weights)]


def test_filter_normalise_dtypes():
    assert "dtypes match the parameters" in check_filter_normalise(normalise_in_float64,
                                                                   hidden=True)
    assert "all" in check_filter_normalise(normalise_to_float32)   # float32 cases only
    _rejects(check_filter_normalise, normalise_to_float32, "dtypes match the parameters",
             "keep the direction's dtype", hidden=True)


def test_reference_matches_random_direction():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(3, 5, 3), nn.BatchNorm2d(5), nn.ReLU(), nn.Flatten(),
                          nn.Linear(20, 4))
    weights = [p.detach() for p in model.parameters()]
    raw = random_direction(model, normalisation="none", zero_1d=False,
                           generator=torch.Generator().manual_seed(7))
    library = random_direction(model, normalisation="filter",
                               generator=torch.Generator().manual_seed(7))
    ours = normalise_reference(raw, weights)
    for a, b, w in zip(ours, library, weights):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7)
        if w.dim() >= 2:
            assert torch.allclose(_per_filter(a), _per_filter(w), rtol=1e-4)


def test_checker_leaves_global_rng_alone():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    check_filter_normalise(normalise_drawing_noise)
    assert torch.equal(torch.get_rng_state(), state)
    with pytest.raises(CheckFailed):
        check_filter_normalise(normalise_unit)
    assert torch.equal(torch.get_rng_state(), state)


# --------------------------------------------------------------------------------------------
# plausible mistakes


def _rescale_by(norm_fn):
    """A solution that rescales every tensor with d.dim() >= 2 by norm_fn(w) / norm_fn(d)."""
    def fn(direction, weights):
        return [torch.zeros_like(d) if d.dim() == 1 else d * norm_fn(w) / norm_fn(d)
                for d, w in zip(direction, weights)]
    return fn


normalise_layer = _rescale_by(lambda t: t.norm())
normalise_columns = _rescale_by(lambda t: t.norm(dim=0, keepdim=True))
normalise_last_dim = _rescale_by(lambda t: t.norm(dim=-1, keepdim=True))
normalise_in_channels = _rescale_by(lambda t: torch.linalg.vector_norm(
    t, dim=[k for k in range(t.dim()) if k != 1], keepdim=True))
normalise_kernels = _rescale_by(lambda t: torch.linalg.vector_norm(
    t, dim=list(range(2, t.dim())) or [1], keepdim=True))


def normalise_unit(direction, weights):
    return [torch.zeros_like(d) if d.dim() == 1 else d / _per_filter(d)
            for d, w in zip(direction, weights)]


def normalise_no_division(direction, weights):
    return [torch.zeros_like(d) if d.dim() == 1 else d * _per_filter(w)
            for d, w in zip(direction, weights)]


def normalise_squared(direction, weights):
    def sq(t):
        return t.pow(2).reshape(t.shape[0], -1).sum(1).reshape(-1, *([1] * (t.dim() - 1)))
    return [torch.zeros_like(d) if d.dim() == 1 else d * sq(w) / sq(d)
            for d, w in zip(direction, weights)]


def normalise_raw_biases(direction, weights):
    return [d.clone() if d.dim() == 1 else d * _per_filter(w) / _per_filter(d)
            for d, w in zip(direction, weights)]


def normalise_biases_too(direction, weights):
    return [d * w.norm() / d.norm() if d.dim() == 1 else d * _per_filter(w) / _per_filter(d)
            for d, w in zip(direction, weights)]


def normalise_in_place(direction, weights):
    for d, w in zip(direction, weights):
        if d.dim() == 1:
            d.zero_()
        else:
            d.mul_(_per_filter(w) / _per_filter(d))
    return direction


def normalise_into_caller_list(direction, weights):
    for k, (d, w) in enumerate(zip(direction, weights)):
        direction[k] = torch.zeros_like(d) if d.dim() == 1 else d * _per_filter(w) / _per_filter(d)
    return direction


def normalise_uses_weights(direction, weights):
    return [torch.zeros_like(d) if d.dim() == 1 else w * _per_filter(w) / _per_filter(w)
            for d, w in zip(direction, weights)]


def normalise_returns_weights(direction, weights):
    return [w.clone() for w in weights]


def normalise_drops_biases(direction, weights):
    return [d * _per_filter(w) / _per_filter(d) for d, w in zip(direction, weights)
            if d.dim() > 1]


def normalise_generator(direction, weights):
    return (torch.zeros_like(d) if d.dim() == 1 else d * _per_filter(w) / _per_filter(d)
            for d, w in zip(direction, weights))


def normalise_conv_only(direction, weights):
    return [d * w.norm(dim=(1, 2, 3), keepdim=True) / d.norm(dim=(1, 2, 3), keepdim=True)
            for d, w in zip(direction, weights)]


@pytest.mark.parametrize("fn, prop, hint", [
    (normalise_layer, NORMS, "layer normalisation"),
    (normalise_unit, NORMS, "unit norm"),
    (normalise_no_division, NORMS, "forgot to divide"),
    (normalise_squared, NORMS, "squared norms"),
    (normalise_columns, NORMS, "across the filters"),
    (normalise_in_channels, NORMS, "each input channel"),
    (normalise_last_dim, ALIGN, "last dim only"),
    (normalise_kernels, ALIGN, "each kernel d[i, j]"),
    (normalise_raw_biases, ZERO, "left raw"),
    (normalise_biases_too, ZERO, "normalised like a weight"),
    (normalise_in_place, "inputs unchanged", "d = d.clone()"),
    (normalise_into_caller_list, "inputs unchanged", "new list"),
    (normalise_uses_weights, ALIGN, "the weights' filters were rescaled"),
    (normalise_returns_weights, ZERO, "the output is the weights"),
    (normalise_drops_biases, "one tensor per parameter", "1-D parameters were dropped"),
    (normalise_generator, "one tensor per parameter", "generator"),
    (normalise_conv_only, "runs without error", "d.reshape(d.shape[0], -1)"),
])
def test_filter_normalise_rejects(fn, prop, hint):
    _rejects(check_filter_normalise, fn, prop, hint)


def test_filter_normalise_crash_is_reported():
    error = _rejects(check_filter_normalise, normalise_conv_only, "runs without error",
                     "zeros_like")
    assert "Error" in error.measured


def test_layer_normalisation_message_shows_the_whole_tensor_norm():
    error = _rejects(check_filter_normalise, normalise_layer, NORMS, "each filter on its own")
    assert "whole tensor's norm" in error.measured
    assert "conv weight (6, 3, 3, 3)" in error.expected
