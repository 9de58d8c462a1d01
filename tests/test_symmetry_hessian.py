"""Hessian probes against torch.autograd.functional.hessian; permutation symmetry helpers."""

import math

import pytest
import torch
from torch import nn

from skiplab.probes import (chunked_loss_fns, clone_unit_, permute_stream_, hessian_matrix, hvp,
                            lanczos_eigenvalues,
                            log10_factorial, log10_symmetry_order, model_loss_fn,
                            near_zero_fraction, node_overlap, permute_units_, unit_distance)


def tiny():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    x = torch.randn(10, 3, dtype=torch.float64)
    y = torch.randint(0, 2, (10,))
    return model, x, y


def reference_hessian(model, x, y):
    params = list(model.parameters())
    shapes = [p.shape for p in params]
    flat = torch.cat([p.detach().reshape(-1) for p in params])

    def loss(vector):
        tensors, i = [], 0
        for shape in shapes:
            n = math.prod(shape)
            tensors.append(vector[i:i + n].reshape(shape))
            i += n
        h = torch.tanh(x @ tensors[0].T + tensors[1])
        return nn.functional.cross_entropy(h @ tensors[2].T + tensors[3], y)

    return torch.autograd.functional.hessian(loss, flat)


def test_exact_hessian_and_hvp_match_autograd():
    model, x, y = tiny()
    expected = reference_hessian(model, x, y)
    loss_fn = model_loss_fn(model, x, y)
    assert torch.allclose(hessian_matrix(loss_fn, model), expected, atol=1e-12)
    v = torch.randn(expected.shape[0], dtype=torch.float64)
    assert torch.allclose(hvp(loss_fn, model, v), expected @ v, atol=1e-12)
    with pytest.raises(ValueError, match="vector must be"):
        hvp(loss_fn, model, torch.ones(3, dtype=torch.float64))


def test_chunked_hvp_equals_the_full_batch_hvp():
    """Chunks of 4 out of 10 examples (4 + 4 + 2), BatchNorm in eval mode as the
    curvature probes use it: the summed chunk products are the full batch's."""
    model, x, y = tiny()
    bn_model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Tanh(),
                             nn.Linear(4, 2)).double()
    with torch.no_grad():
        bn_model[1].running_mean.normal_()
        bn_model[1].running_var.uniform_(0.5, 2)
    for net in (model, bn_model.eval()):
        v = torch.randn(sum(p.numel() for p in net.parameters()), dtype=torch.float64)
        whole = hvp(model_loss_fn(net, x, y), net, v)
        chunks = chunked_loss_fns(net, x, y, chunk_size=4)
        assert len(chunks) == 3
        assert sum(f() for f in chunks).item() == pytest.approx(model_loss_fn(net, x, y)().item(),
                                                                abs=1e-14)
        assert torch.allclose(hvp(chunks, net, v), whole, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="chunk_size=0"):
        chunked_loss_fns(model, x, y, chunk_size=0)


def test_lanczos_finds_the_spectrum():
    model, x, y = tiny()
    exact = torch.linalg.eigvalsh(reference_hessian(model, x, y))
    loss_fn = model_loss_fn(model, x, y)
    full = lanczos_eigenvalues(lambda v: hvp(loss_fn, model, v), exact.numel(),
                               steps=exact.numel())
    # every Ritz value is an eigenvalue, and every eigenvalue is found (repeated ones once)
    assert all((exact - r).abs().min() < 1e-8 for r in full)
    assert all((full - e).abs().min() < 1e-8 for e in exact)
    few = lanczos_eigenvalues(lambda v: hvp(loss_fn, model, v), exact.numel(), steps=12)
    assert abs(few[-1] - exact[-1]) < 1e-6 and abs(few[0] - exact[0]) < 1e-6


def test_near_zero_fraction():
    assert near_zero_fraction(torch.tensor([1e-6, -1e-5, 0.5, -1.0]), rel_tol=1e-3) == 0.5
    with pytest.raises(ValueError):
        near_zero_fraction(torch.tensor([]))


def two_layer(skip: bool):
    torch.manual_seed(1)
    first, second, readout = nn.Linear(5, 6), nn.Linear(6, 6), nn.Linear(6, 3)

    def forward(x):
        h = torch.tanh(first(x))
        g = torch.tanh(second(h))
        return readout(h + g if skip else g)

    return first, second, readout, forward


def test_permuting_units_leaves_a_plain_net_unchanged_but_not_a_skip_net():
    x = torch.randn(8, 5)
    perm = torch.tensor([2, 0, 1, 5, 3, 4])
    for skip in (False, True):
        _, second, readout, forward = two_layer(skip)
        before = forward(x).detach()
        permute_units_(second, readout, perm)
        after = forward(x).detach()
        if skip:
            assert not torch.allclose(before, after, atol=1e-3)
        else:
            assert torch.allclose(before, after, atol=1e-6)
    with pytest.raises(ValueError, match="permutation"):
        permute_units_(second, readout, torch.tensor([0, 0, 1, 2, 3, 4]))


def test_cloned_units_are_at_distance_zero_and_overlap_one():
    _, second, readout, _ = two_layer(False)
    assert unit_distance(second, readout, 0, 4) > 0
    assert node_overlap(second.weight) < 1 - 1e-6
    clone_unit_(second, readout, 0, 4)
    assert unit_distance(second, readout, 0, 4) == 0.0
    assert node_overlap(second.weight) == pytest.approx(1.0)
    flipped = torch.nn.Linear(3, 2)
    with torch.no_grad():
        flipped.weight[1] = -flipped.weight[0]
    assert node_overlap(flipped.weight) == pytest.approx(1.0)
    assert node_overlap(flipped.weight, signed=True) == pytest.approx(-1.0)
    concat_readout = nn.Linear(11, 3)  # reads [x (5), units (6)]
    clone_unit_(second, concat_readout, 1, 2, offset=5)
    assert unit_distance(second, concat_readout, 1, 2, offset=5) == 0.0
    with pytest.raises(ValueError, match="offset"):
        unit_distance(second, readout, 0, 1, offset=3)


def test_symmetry_order_counts():
    assert log10_factorial(5) == pytest.approx(math.log10(120))
    assert log10_factorial(1000) == pytest.approx(2567.6046, abs=1e-3)
    assert log10_symmetry_order([4, 5]) == pytest.approx(math.log10(24 * 120))
    assert log10_symmetry_order([4, 5], tied=[True, False]) == pytest.approx(math.log10(120))
    # a residual stream of three layers is permuted as a whole: one 4!
    assert log10_symmetry_order([4, 4, 4], tied=[False, True, True]) == pytest.approx(
        math.log10(24))
    with pytest.raises(ValueError):
        log10_symmetry_order([4], tied=[True, False])
    with pytest.raises(ValueError, match="widths differ"):
        log10_symmetry_order([4, 5], tied=[False, True])


def test_permuting_the_whole_stream_leaves_an_additive_net_unchanged():
    from skiplab.models import SkipVariantMLP

    torch.manual_seed(0)
    model = SkipVariantMLP(5, 3, 6, variant="additive").double().eval()
    x = torch.randn(7, 5, dtype=torch.float64)
    before = model(x).detach()
    permute_stream_(model.inp, [model.mid], model.out, torch.tensor([3, 1, 0, 5, 2, 4]))
    assert torch.allclose(model(x), before, atol=1e-12)
    with pytest.raises(ValueError, match="map the stream"):
        permute_stream_(model.inp, [torch.nn.Linear(6, 4)], model.out, torch.arange(6))
