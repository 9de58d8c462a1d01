"""The shattered-gradients probe: lines of inputs, input gradients, their autocorrelation."""

import math

import pytest
import torch
from torch import nn

from skiplab import seed_everything
from skiplab.models import CifarNet, CifarNetConfig
from skiplab.probes.shattered import (gradient_autocorrelation, input_gradients, line_inputs,
                                      shattering_profile, with_batch_statistics)


def test_line_inputs_run_evenly_from_start_to_end():
    start, end = torch.randn(3, 2, 4), torch.randn(3, 2, 4)
    x = line_inputs(start, end, 5)
    assert x.shape == (3, 5, 2, 4)
    assert torch.allclose(x[:, 0], start) and torch.allclose(x[:, -1], end)
    steps = x[:, 1:] - x[:, :-1]
    assert torch.allclose(steps, ((end - start) / 4).unsqueeze(1).expand_as(steps), atol=1e-6)
    with pytest.raises(ValueError, match="differ"):
        line_inputs(start, end[:2], 5)
    with pytest.raises(ValueError, match="at least 2"):
        line_inputs(start, end, 1)


def test_a_linear_net_has_perfectly_correlated_gradients():
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 36, 3))
    start, end = torch.randn(4, 1, 6, 6), torch.randn(4, 1, 6, 6)
    profile = shattering_profile(linear, start, end, points=9)
    assert profile.shape == (9,) and profile.dtype == torch.float64
    assert torch.allclose(profile, torch.ones(9, dtype=torch.float64), atol=1e-6)


def test_input_gradients_are_per_example_and_leave_the_model_as_it_was():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(5, 7), nn.BatchNorm1d(7), nn.Tanh(), nn.Linear(7, 2))
    model.train()
    for p in model.parameters():
        p.grad = torch.full_like(p, 3.0)
    x = torch.randn(6, 5)
    grads = input_gradients(model, x)
    assert grads.shape == x.shape
    assert model.training                                   # mode restored
    assert all(torch.equal(p.grad, torch.full_like(p, 3.0)) for p in model.parameters())
    model.eval()
    for b in range(6):                                      # one example at a time agrees
        xb = x[b:b + 1].clone().requires_grad_(True)
        (expected,) = torch.autograd.grad(model(xb).sum(), xb)
        assert torch.allclose(grads[b], expected[0], atol=1e-6)
    first = input_gradients(model, x, readout=lambda out: out[:, 0])
    xb = x[:1].clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(model(xb)[0, 0], xb)
    assert torch.allclose(first[0], expected[0], atol=1e-6)
    with pytest.raises(ValueError, match="one scalar per example"):
        input_gradients(model, x, readout=lambda out: out)


def test_autocorrelation_of_noise_smooth_and_constant_gradients():
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(8, 50, 400, generator=g)
    profile = gradient_autocorrelation(noise)
    assert profile.shape == (50,) and profile[0] == 1
    assert profile[1:].abs().max() < 0.05                 # white noise: uncorrelated
    # a gradient turning slowly along the line: cos(angle) between points lag apart
    t = torch.linspace(0, 1, 11)
    a, b = torch.randn(2, 300, generator=g)
    a, b = a - a.mean(), b - b.mean()
    b = b - (a @ b) / (a @ a) * a                           # orthogonal, both centred
    a, b = a / a.norm(), b / b.norm()
    turning = torch.cos(t)[:, None] * a + torch.sin(t)[:, None] * b     # (P, D), one line
    smooth = gradient_autocorrelation(turning, max_lag=3)
    assert torch.allclose(smooth, torch.cos(torch.arange(4) * 0.1).double(), atol=1e-5)
    zero = torch.zeros(1, 3, 10)
    assert torch.equal(gradient_autocorrelation(zero), torch.tensor([1.0, 0.0, 0.0],
                                                                    dtype=torch.float64))
    with pytest.raises(ValueError, match="max_lag"):
        gradient_autocorrelation(noise, max_lag=50)
    with pytest.raises(ValueError, match="N, P"):
        gradient_autocorrelation(torch.zeros(4))


def test_with_batch_statistics_holds_the_data_statistics_and_leaves_the_model():
    torch.manual_seed(2)
    model = nn.Sequential(nn.BatchNorm1d(3, momentum=0.3), nn.Linear(3, 1))
    x = torch.randn(100, 3) * 2 + 5
    calibrated = with_batch_statistics(model, x, batch_size=100)
    bn = calibrated[0]
    assert not calibrated.training and bn.momentum == 0.3
    assert torch.allclose(bn.running_mean, x.mean(0), atol=1e-5)
    assert torch.allclose(bn.running_var, x.var(0), atol=1e-4)
    assert torch.equal(model[0].running_mean, torch.zeros(3))       # the original is untouched
    # several batches: the plain average of their statistics
    two = with_batch_statistics(model, x, batch_size=50)[0]
    assert torch.allclose(two.running_mean, x.mean(0), atol=1e-5)


def test_deep_plain_gradients_shatter_and_residual_ones_do_not():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1, 8, 8, generator=g)
    start, end = torch.randn(2, 8, 1, 8, 8, generator=g)
    lag1 = {}
    for skip in ("none", "residual"):
        seed_everything(0)
        net = CifarNet(CifarNetConfig(depth=32, skip=skip, in_channels=1, widths=(4, 8, 8)))
        net = with_batch_statistics(net, x)
        lag1[skip] = shattering_profile(net, start, end, points=16, max_lag=1)[1].item()
    assert lag1["residual"] > lag1["none"] + 0.2, lag1
    assert not math.isnan(lag1["none"])
