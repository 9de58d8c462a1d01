"""Gradient recorder, augmentation, CIFAR-10 loading, History.final and the chapter's figures."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from skiplab import History, load_digits, seed_everything, train
from skiplab.data import load_cifar10, random_crop_flip
from skiplab.figures import (depth_curves_figure, final_loss_figure, gradient_heatmap_figure,
                             lesion_figure, path_length_figure)
from skiplab.figures.degradation import shattering_figure
from skiplab.models import CifarNet, CifarNetConfig
from skiplab.probes import GradientRecorder, hidden_grad_norms


@pytest.fixture(scope="module")
def digit_images():
    return load_digits(images=True, device="cpu")


def small_net(seed=0, residual=False):
    seed_everything(seed)
    return CifarNet(CifarNetConfig(depth=8, skip="residual" if residual else "none",
                                   in_channels=1, widths=(4, 8, 8)))


def test_recorder_equals_the_plain_probe_on_the_same_batch(digit_images):
    model = small_net()
    x, y = digit_images.x_train[:32], digit_images.y_train[:32]
    modules = [model.stem, *model.blocks()]
    expected = hidden_grad_norms(model, x, y, modules=modules)
    with GradientRecorder(modules, every=5) as recorder:
        F.cross_entropy(model(x), y).backward()
        recorder.on_step(1)
        F.cross_entropy(model(x), y).backward()
        recorder.on_step(2)  # not a multiple of 5: not kept
    assert recorder.steps == [1]
    assert np.allclose(recorder.norms()[0], expected.numpy(), rtol=1e-5)
    assert not model.stem._forward_hooks  # removed on exit


def test_recorder_survives_an_interrupted_run(digit_images, tmp_path):
    kwargs = dict(steps=30, batch_size=32, lr=0.05, record_every=10, seed=2,
                  augment=None, show_progress=False)

    def run(stop_at=None, checkpoint=None):
        model = small_net()
        recorder = GradientRecorder([model.stem, *model.blocks()], every=4)

        def on_step(step, loss):
            recorder.on_step(step, loss)
            if step == stop_at:
                raise KeyboardInterrupt

        train(model, digit_images, on_step=on_step, checkpoint=checkpoint,
              checkpoint_every=5, extra_state={"gradients": recorder} if checkpoint else None,
              **kwargs)
        return model, recorder

    reference_model, reference = run()
    path = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt):
        run(stop_at=17, checkpoint=path)
    model, resumed = run(checkpoint=path)
    assert resumed.steps == reference.steps == [1, 4, 8, 12, 16, 20, 24, 28]
    assert np.allclose(resumed.norms(), reference.norms())
    assert torch.equal(model.fc.weight, reference_model.fc.weight)


def test_recorder_refuses_modules_without_gradient():
    model = small_net()
    recorder = GradientRecorder([model.stem], every=1)
    with pytest.raises(RuntimeError, match="no gradient"):
        recorder.on_step(1)
    with pytest.raises(ValueError):
        GradientRecorder([], every=1)


def test_random_crop_flip_returns_shifted_or_mirrored_crops():
    x = torch.randn(16, 3, 8, 8)
    out = random_crop_flip(x, torch.Generator().manual_seed(0), padding=2)
    assert out.shape == x.shape
    padded = F.pad(x, (2, 2, 2, 2))
    for b in range(16):
        crops = [padded[b, :, t:t + 8, s:s + 8] for t in range(5) for s in range(5)]
        assert any(torch.equal(out[b], c) or torch.equal(out[b], c.flip(-1)) for c in crops)
    again = random_crop_flip(x, torch.Generator().manual_seed(0), padding=2)
    assert torch.equal(out, again)
    other = random_crop_flip(x, torch.Generator().manual_seed(1), padding=2)
    assert not torch.equal(out, other)
    with pytest.raises(ValueError, match="B, C, H, W"):
        random_crop_flip(torch.randn(3, 8, 8), torch.Generator())


def test_augmented_training_resumes_exactly(digit_images, tmp_path):
    kwargs = dict(steps=12, batch_size=32, lr=0.05, seed=1, augment=random_crop_flip,
                  show_progress=False)
    reference = small_net(residual=True)
    train(reference, digit_images, **kwargs)

    def stop(step, loss):
        if step == 7:
            raise KeyboardInterrupt

    path = tmp_path / "aug.pt"
    with pytest.raises(KeyboardInterrupt):
        train(small_net(residual=True), digit_images, checkpoint=path, checkpoint_every=3,
              on_step=stop, **kwargs)
    resumed = small_net(seed=5, residual=True)
    train(resumed, digit_images, checkpoint=path, checkpoint_every=3, **kwargs)
    for key, value in reference.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    plain = small_net(residual=True)
    train(plain, digit_images, **{**kwargs, "augment": None})
    assert not torch.equal(plain.fc.weight, reference.fc.weight)


def test_load_cifar10_standardises_per_channel(monkeypatch, tmp_path):
    calls = []

    class FakeCIFAR10:
        def __init__(self, root, train, download):
            calls.append((root, train, download))
            n = 20 if train else 10
            rng = np.random.default_rng(0 if train else 1)
            self.data = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
            self.targets = list(rng.integers(0, 10, n))

    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    data = load_cifar10(root=tmp_path, download=False, device="cpu")
    assert calls == [(str(tmp_path), True, False), (str(tmp_path), False, False)]
    assert data.x_train.shape == (20, 3, 32, 32) and data.x_test.shape == (10, 3, 32, 32)
    assert data.y_train.dtype == torch.int64 and data.n_classes == 10
    means = data.x_train.mean(dim=(0, 2, 3))
    stds = data.x_train.std(dim=(0, 2, 3))
    assert torch.allclose(means, torch.zeros(3), atol=1e-5)
    assert torch.allclose(stds, torch.ones(3), atol=1e-5)


def test_history_final_averages_the_last_records():
    h = History(step=[1, 2, 3], train_loss=[3.0, 2.0, 1.0], train_metrics={"acc": [0.1, 0.2, 0.4]})
    assert h.final() == 1.5
    assert h.final("train_acc", records=1) == 0.4
    with pytest.raises(ValueError, match="accepted"):
        h.final("loss")
    with pytest.raises(ValueError, match="no records"):
        History().final()


def runs(depths=(8, 20)):
    out = {}
    for arch in ("plain", "residual"):
        for d in depths:
            loss = [2.0, 1.0 + d / 100 if arch == "plain" else 1.0 - d / 100]
            out[(arch, d)] = History(step=[10, 20], train_loss=loss,
                                     train_metrics={"acc": [0.2, 0.6]},
                                     metrics={"loss": loss, "acc": [0.2, 0.5]})
    return out


def test_depth_curves_figure_controls():
    fig = depth_curves_figure(runs())
    assert len(fig.data) == 4
    metric_menu, depth_menu = fig.layout.updatemenus
    assert [b.label for b in metric_menu.buttons] == [
        "training loss", "training error", "test error"]
    error = metric_menu.buttons[1].args[0]["y"]
    assert np.allclose(error[0], [0.8, 0.4])
    assert [b.label for b in depth_menu.buttons] == ["all depths", "depth 8", "depth 20"]
    assert depth_menu.buttons[1].args[0]["visible"] == [True, False, True, False]
    # the two menus change different attributes, so they never undo each other
    assert "visible" not in metric_menu.buttons[0].args[0]
    assert "y" not in depth_menu.buttons[0].args[0]
    with pytest.raises(ValueError, match="every architecture needs every depth"):
        depth_curves_figure({k: v for k, v in runs().items() if k != ("plain", 20)})


def test_final_loss_and_heatmap_and_lesion_and_paths():
    fig = final_loss_figure(runs())
    assert list(fig.data[0].y) == [pytest.approx(1.54), pytest.approx(1.6)]
    heat = gradient_heatmap_figure([1, 10], np.array([[1.0, 10.0, 100.0], [1e-3, 1e-2, 1.0]]))
    assert np.allclose(heat.data[0].z, [[0, -3], [1, -2], [2, 0]])
    with pytest.raises(ValueError, match="T, L"):
        gradient_heatmap_figure([1], np.ones((2, 3)))
    lesion = lesion_figure({"resnet-8": {0: 0.9, 1: 0.8}, "plain-8": {1: 0.1}},
                           {"resnet-8": 0.95, "plain-8": 0.9}, chance=0.1)
    assert [len(t.x) for t in lesion.data] == [2, 1]
    paths = path_length_figure([3, 10])
    assert [sum(t.y) for t in paths.data] == [pytest.approx(1.0), pytest.approx(1.0)]
    assert list(paths.data[0].customdata) == ["1", "3", "3", "1"]
    assert [s.label for s in paths.layout.sliders[0].steps] == ["3", "10"]


def test_shattering_figure_draws_one_line_per_depth_against_the_distance():
    profiles = {(a, d): [1.0, 0.5 if a == "plain" else 0.9, 0.1]
                for a in ("plain", "residual") for d in (8, 20)}
    fig = shattering_figure(profiles, points=5)
    assert len(fig.data) == 4
    assert [t.name for t in fig.data] == ["depth 8", "depth 20"] * 2
    assert [t.showlegend for t in fig.data] == [True, True, False, False]
    assert np.allclose(fig.data[0].x, [0, 0.25, 0.5])
    assert list(fig.data[2].y) == [1.0, 0.9, 0.1]
    with pytest.raises(ValueError, match="every depth"):
        shattering_figure({k: v for k, v in profiles.items() if k != ("plain", 20)}, points=5)
    with pytest.raises(ValueError, match="at least 2"):
        shattering_figure(profiles, points=1)


def test_train_passes_a_generator_per_step(digit_images):
    seen = []

    def augment(x, generator):
        seen.append(torch.randint(0, 1000, (1,), generator=generator).item())
        return x

    train(small_net(), digit_images, steps=3, batch_size=16, seed=0, augment=augment,
          show_progress=False)
    again = list(seen)
    seen.clear()
    train(small_net(), digit_images, steps=3, batch_size=16, seed=0, augment=augment,
          show_progress=False)
    assert seen == again and len(set(seen)) == 3
