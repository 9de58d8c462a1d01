"""Loss-landscape tools: filter normalisation, exact restoration, convexity scalars."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from skiplab.landscape import (curvature_ratio, difference_direction, grid_minima, interpolate,
                               nonconvex_fraction, perturbed, random_direction, reestimate_bn_,
                               rescale_conv_bn_,
                               surface_1d,
                               surface_2d, trajectory_directions)
from skiplab.models import CifarNet, CifarNetConfig


def small_net(seed=0, residual=True):
    torch.manual_seed(seed)
    net = CifarNet(CifarNetConfig(depth=8, skip="residual" if residual else "none",
                                  in_channels=1, widths=(4, 8, 8)))
    # non-trivial BatchNorm state, as after training
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
    return net


def batch(n=16):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)


def state(net):
    return {k: v.clone() for k, v in net.state_dict().items()}


def test_filter_normalised_direction_has_the_weights_filter_norms_and_zeros_elsewhere():
    net = small_net()
    d = random_direction(net, generator=torch.Generator().manual_seed(0))
    checked = 0
    for p, t in zip(net.parameters(), d):
        assert t.shape == p.shape
        if p.dim() <= 1:                              # biases, BatchNorm weight and bias
            assert (t == 0).all()
        else:
            for w_filter, d_filter in zip(p.detach(), t):
                torch.testing.assert_close(d_filter.norm(), w_filter.norm(), rtol=1e-5, atol=1e-7)
                checked += 1
    assert checked > 20
    layer = random_direction(net, normalisation="layer")
    for p, t in zip(net.parameters(), layer):
        if p.dim() > 1:
            torch.testing.assert_close(t.norm(), p.detach().norm(), rtol=1e-5, atol=1e-7)
    raw = random_direction(net, normalisation="none", zero_1d=False)
    assert all(t.abs().sum() > 0 for t in raw)
    raw = random_direction(net, normalisation="none")
    assert all((t.abs().sum() > 0) == (p.dim() > 1) for p, t in zip(net.parameters(), raw))
    with pytest.raises(ValueError, match="normalisation='unit' is not known"):
        random_direction(net, normalisation="unit")


def test_a_rescaled_bn_net_gets_the_same_filter_normalised_surface():
    """Scale invariance: conv weights before BatchNorm times 10 give the same function, and
    filter normalisation makes the two surfaces equal; raw directions do not."""
    net = small_net()
    big = rescale_conv_bn_(small_net(), 10.0)
    x, y = batch()
    net.eval()
    big.eval()
    torch.testing.assert_close(net(x), big(x), rtol=1e-5, atol=1e-5)
    net.train(), big.train()                   # with batch statistics too: eps is scaled
    torch.testing.assert_close(net(x), big(x), rtol=1e-5, atol=1e-5)
    net.eval(), big.eval()
    alphas = np.linspace(-1, 1, 5)
    f = random_direction(net, generator=torch.Generator().manual_seed(3))
    g = random_direction(big, generator=torch.Generator().manual_seed(3))
    a, b = surface_1d(net, f, x, y, alphas), surface_1d(big, g, x, y, alphas)
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-3)
    raw = random_direction(net, normalisation="none", generator=torch.Generator().manual_seed(3))
    ra, rb = surface_1d(net, raw, x, y, alphas), surface_1d(big, raw, x, y, alphas)
    assert np.abs(ra.loss - rb.loss).max() > 0.1


@pytest.mark.parametrize("bn_mode", ["eval", "train"])
def test_weights_and_buffers_are_identical_after_a_surface(bn_mode):
    net = small_net()
    net.train()
    before = state(net)
    x, y = batch()
    d1, d2 = random_direction(net), random_direction(net)
    surface_2d(net, d1, d2, x, y, np.linspace(-1, 1, 3), bn_mode=bn_mode, show_progress=False)
    after = state(net)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert net.training                                  # the mode is restored too
    with perturbed(net, [d1], [0.5]):
        assert not torch.equal(next(net.parameters()), before[next(iter(before))])
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_weights_are_restored_when_the_evaluation_fails():
    net = small_net()
    before = state(net)
    d = random_direction(net)
    with pytest.raises(ValueError, match="expects"):
        surface_1d(net, d, torch.randn(4, 3, 8, 8), torch.zeros(4, dtype=torch.long), [0.5])
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_surface_centre_is_the_models_own_loss_and_the_grid_layout_is_rows_beta():
    net = small_net().eval()
    x, y = batch()
    with torch.no_grad():
        own = nn.functional.cross_entropy(net(x), y).item()
    d1, d2 = random_direction(net), random_direction(net)
    s = surface_2d(net, d1, d2, x, y, np.linspace(-1, 1, 5), np.linspace(-0.5, 0.5, 3),
                   show_progress=False)
    assert s.loss.shape == (3, 5) and s.accuracy.shape == (3, 5)
    assert s.centre_loss == pytest.approx(own, rel=1e-6)
    one = surface_1d(net, d1, x, y, [0.5])
    assert s.loss[1, 3] == pytest.approx(one.loss[0], rel=1e-6)   # beta 0, alpha 0.5


def test_wrongly_shaped_direction_is_refused():
    net = small_net()
    other = CifarNet(CifarNetConfig(depth=8, in_channels=1))
    with pytest.raises(ValueError, match="not shaped like"):
        surface_1d(net, random_direction(other), *batch(), [0.0])


def test_convexity_metric_on_known_surfaces():
    a = np.linspace(-1, 1, 21)
    A, B = np.meshgrid(a, a)
    bowl = A ** 2 + 3 * B ** 2 + A * B
    saddle = A ** 2 - B ** 2
    assert nonconvex_fraction(bowl) == 0.0 and nonconvex_fraction(bowl, step=2) == 0.0
    assert nonconvex_fraction(saddle) == 1.0
    assert grid_minima(bowl) == 1 and grid_minima(saddle) == 0
    bumpy = bowl + 0.3 * np.cos(12 * A) * np.cos(12 * B)
    assert 0 < nonconvex_fraction(bumpy) < 1 and grid_minima(bumpy) > 1
    with pytest.raises(ValueError):
        nonconvex_fraction(np.zeros((3, 3)), step=2)


def test_interpolation_ends_at_both_models():
    net_a, net_b = small_net(0).eval(), small_net(1).eval()
    x, y = batch()
    before = state(net_a)
    line = interpolate(net_a, net_b, x, y, [0.0, 0.5, 1.0])
    with torch.no_grad():
        la = nn.functional.cross_entropy(net_a(x), y).item()
        lb = nn.functional.cross_entropy(net_b(x), y).item()
    assert line.loss[0] == pytest.approx(la, rel=1e-5)
    assert line.loss[-1] == pytest.approx(lb, rel=1e-4)
    assert all(torch.equal(before[k], v) for k, v in net_a.state_dict().items())
    d = difference_direction(net_a, net_b)
    assert len(d) == len(list(net_a.parameters()))
    # re-estimated BatchNorm statistics: at the ends, the batch's own statistics
    fresh = interpolate(net_a, net_b, x, y, [0.0], bn_data=x)
    reference = reestimate_bn_(copy.deepcopy(net_a), x)
    with torch.no_grad():
        expected = nn.functional.cross_entropy(reference(x), y).item()
    assert fresh.loss[0] == pytest.approx(expected, rel=1e-5)
    assert all(torch.equal(before[k], v) for k, v in net_a.state_dict().items())
    with pytest.raises(ValueError, match="buffers differ"):
        interpolate(net_a, CifarNet(CifarNetConfig(depth=14, in_channels=1, widths=(4, 8, 8))),
                    x, y, [0.5])


def test_trajectory_directions_find_the_plane_of_a_planar_path():
    torch.manual_seed(0)
    u, v = torch.randn(50), torch.randn(50)
    final = [torch.zeros(5, 10)]
    snaps = [[(t * u + (t ** 2) * v).reshape(5, 10)] for t in torch.linspace(1, 0.1, 8)]
    d1, d2, share = trajectory_directions(snaps, final)
    basis = torch.stack([d1[0].reshape(-1), d2[0].reshape(-1)]).double()
    assert share.sum() == pytest.approx(1.0, abs=1e-9)          # the path lies in a plane
    for w in (u, v):
        w = w.double()
        residual = w - basis.T @ (basis @ w)
        assert residual.norm() < 1e-6 * w.norm()


def test_curvature_ratio_of_a_linear_model_is_nonnegative_hessian():
    torch.manual_seed(0)
    model = nn.Linear(6, 3)
    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    lam_min, lam_max, ratio = curvature_ratio(model, x, y, steps=21)
    assert lam_max > 0 and lam_min > -1e-5 and ratio < 1e-3   # softmax CE of a linear model is convex


def test_curvature_ratio_runs_in_chunks_and_chunking_does_not_change_it():
    """The Hessian-vector products see at most chunk_size examples per forward (memory
    bounded by the chunk), and the eigenvalues are the full batch's (eval-mode BatchNorm)."""
    net = small_net().double()
    x, y = batch(24)
    x = x.double()
    sizes = []
    handle = net.register_forward_pre_hook(lambda _m, inputs: sizes.append(len(inputs[0])))
    chunked = curvature_ratio(net, x, y, steps=8, chunk_size=10)      # 10 + 10 + 4
    assert set(sizes) == {10, 4}
    handle.remove()
    whole = curvature_ratio(net, x, y, steps=8, chunk_size=len(x))
    assert chunked == pytest.approx(whole, rel=1e-9, abs=1e-12)
