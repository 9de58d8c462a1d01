"""The one training loop: a hand-written reference, any task, resume for both batchings,
and one History whose methods mean one thing."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from skiplab.train import BatchLoss, History, Optimization, Task, fit


def _regression(n: int = 96, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    return x, x @ torch.randn(5, 1, generator=g) + 0.1 * torch.randn(n, 1, generator=g)


def _mse(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> BatchLoss:
    return BatchLoss(F.mse_loss(model(x), y))


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 1))


def test_subsets_match_a_hand_written_adam_loop():
    x, y = _regression()
    model, reference = _net(), _net()
    fit(model, x, y, Task(_mse), steps=17, batch_size=20, batches="subsets", seed=5,
        optimization=Optimization("adam", lr=1e-2), show_progress=False)
    opt = torch.optim.Adam(reference.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(5)
    for _ in range(17):
        idx = torch.randperm(len(y), generator=generator)[:20]
        loss = F.mse_loss(reference(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    for a, b in zip(model.parameters(), reference.parameters()):
        assert torch.equal(a, b)


def test_a_task_brings_its_own_loss_metrics_and_counts():
    x, y = _regression()
    seen = []

    def held_out(model):
        seen.append((model.training, torch.is_grad_enabled()))
        return {"mse": F.mse_loss(model(x), y).item()}

    def loss_with_sign(model, xb, yb):
        out = model(xb)
        return BatchLoss(F.mse_loss(out, yb), len(yb), {"positive": float((out > 0).sum())})

    history = fit(_net(), x, y, Task(loss_with_sign, held_out), steps=30, batch_size=32,
                  record_every=10, record_start=True, seed=0, show_progress=False,
                  optimization=Optimization("sgd", lr=0.05))
    assert history.step == [0, 10, 20, 30]
    positive = history.train_metrics["positive"]       # aligned with step: NaN at step 0
    assert math.isnan(history.train_loss[0]) and math.isnan(positive[0]) and len(positive) == 4
    assert all(0.0 <= v <= 1.0 for v in positive[1:])    # sums / count: a share per example
    assert seen == [(False, False)] * 4                                   # eval mode, no grad
    assert history.last("mse") < history.metrics["mse"][0]


@pytest.mark.parametrize("batches", ["epochs", "subsets"])
def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path, batches):
    x, y = _regression()
    kwargs = dict(steps=24, batch_size=20, batches=batches, seed=1, record_every=5,
                  record_start=True, optimization=Optimization("adam", lr=1e-2),
                  show_progress=False)
    reference = _net()
    expected = fit(reference, x, y, Task(_mse), **kwargs)

    class Stop(Exception):
        pass

    def stop_at_13(step, loss):
        if step == 13:
            raise Stop

    path = tmp_path / "run.pt"
    with pytest.raises(Stop):
        fit(_net(), x, y, Task(_mse), checkpoint=path, checkpoint_every=4, on_step=stop_at_13,
            **kwargs)
    resumed = _net(seed=99)                       # other weights: the checkpoint must win
    history = fit(resumed, x, y, Task(_mse), checkpoint=path, checkpoint_every=4, **kwargs)
    for a, b in zip(resumed.parameters(), reference.parameters()):
        assert torch.equal(a, b)
    assert history.step == expected.step
    assert history.train_loss[1:] == expected.train_loss[1:]


def test_a_checkpoint_of_another_task_or_batching_is_refused(tmp_path):
    x, y = _regression()
    path = tmp_path / "run.pt"
    fit(_net(), x, y, Task(_mse, name="mse"), steps=3, batch_size=16, checkpoint=path,
        show_progress=False)
    with pytest.raises(ValueError, match="task: checkpoint 'mse', this call 'other'"):
        fit(_net(), x, y, Task(_mse, name="other"), steps=3, batch_size=16, checkpoint=path,
            show_progress=False)
    with pytest.raises(ValueError, match="batches: checkpoint 'epochs', this call 'subsets'"):
        fit(_net(), x, y, Task(_mse, name="mse"), steps=3, batch_size=16, checkpoint=path,
            batches="subsets", show_progress=False)


def test_bad_arguments_are_named():
    x, y = _regression()
    with pytest.raises(ValueError, match="batches='shuffle' is not known"):
        fit(_net(), x, y, Task(_mse), steps=1, batches="shuffle", show_progress=False)
    with pytest.raises(ValueError, match="batch_size=500 must lie in 1..96"):
        fit(_net(), x, y, Task(_mse), steps=1, batch_size=500, show_progress=False)
    with pytest.raises(ValueError, match="optimizer='lbfgs' is not known; accepted: 'sgd', 'adam'"):
        Optimization("lbfgs")
    frozen = _net().requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameter"):
        fit(frozen, x, y, Task(_mse), steps=1, batch_size=8, show_progress=False)


def test_history_final_last_and_series_each_mean_one_thing():
    h = History()
    h.record(0, float("nan"), {"loss": 2.0, "acc": 0.1})      # no training averages yet
    h.record(10, 1.0, {"loss": 1.5, "acc": 0.5}, {"acc": 0.4})
    h.record(20, 0.5, {"loss": 1.0, "acc": 0.7}, {"acc": 0.6})
    h.record(30, 0.25, {"loss": 0.9, "acc": 0.9}, {"acc": 0.8})
    assert h.final("train_loss") == pytest.approx((0.5 + 0.25) / 2)      # mean of the last two
    assert h.final("test_acc", records=3) == pytest.approx((0.5 + 0.7 + 0.9) / 3)
    assert h.final("loss", records=10) == pytest.approx((1.5 + 1.0 + 0.9) / 3)   # step 0 never
    assert h.last("acc") == 0.9 and h.last("test_acc") == 0.9
    assert h.test_acc == h.metrics["acc"] and h.test_loss == h.series("loss")
    assert math.isnan(h.train_acc[0]) and h.train_acc[1:] == [0.4, 0.6, 0.8]
    with pytest.raises(ValueError, match="metric='iou' is not known; accepted: 'train_loss'"):
        h.final("iou")
    assert History.from_dict(h.as_dict()) == h
