import numpy as np
import pytest
import torch

from skiplab import (KnobError, by_scale, checkpoint_dir, get_device, get_scale, get_seed,
                     seed_everything)


def test_scale_default_follows_cuda(monkeypatch):
    monkeypatch.delenv("SKIPLAB_SCALE", raising=False)
    assert get_scale() == ("gpu" if torch.cuda.is_available() else "quick")


def test_scale_default_is_never_paper(monkeypatch):
    monkeypatch.delenv("SKIPLAB_SCALE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert get_scale() == "gpu"


def test_old_full_scale_names_its_new_name(monkeypatch):
    monkeypatch.setenv("SKIPLAB_SCALE", "full")
    with pytest.raises(KnobError, match="'full' was renamed 'paper'"):
        get_scale()


@pytest.mark.parametrize("value", ["quick", "gpu", "paper", " Quick "])
def test_scale_accepts_known_values(monkeypatch, value):
    monkeypatch.setenv("SKIPLAB_SCALE", value)
    assert get_scale() == value.strip().lower()


def test_unknown_scale_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("SKIPLAB_SCALE", "huge")
    with pytest.raises(KnobError, match=r"SKIPLAB_SCALE='huge'.*accepted: 'quick', 'gpu', 'paper'"):
        get_scale()
    with pytest.raises(KnobError, match="accepted"):
        by_scale(quick=1, gpu=2, paper=3, scale="medium")


def test_by_scale_picks_the_scale(monkeypatch):
    monkeypatch.setenv("SKIPLAB_SCALE", "paper")
    assert by_scale(quick=1, gpu=2, paper=3) == 3
    assert by_scale(quick=1, gpu=2, paper=3, scale="gpu") == 2
    assert by_scale(quick=1, gpu=2, paper=3, scale="quick") == 1


def test_checkpoint_dir_follows_the_knob(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SKIPLAB_CHECKPOINTS", raising=False)
    assert checkpoint_dir("resnet") == tmp_path / "checkpoints" / "resnet"
    drive = tmp_path / "drive"
    monkeypatch.setenv("SKIPLAB_CHECKPOINTS", str(drive))
    folder = checkpoint_dir("resnet")
    assert folder == drive / "resnet" and folder.is_dir()


@pytest.mark.parametrize("value", ["abc", "-3", "1.5"])
def test_bad_seed_is_a_clear_error(monkeypatch, value):
    monkeypatch.setenv("SKIPLAB_SEED", value)
    with pytest.raises(KnobError, match="SKIPLAB_SEED"):
        get_seed()


def test_seed_from_environment(monkeypatch):
    assert get_seed() == 0
    monkeypatch.setenv("SKIPLAB_SEED", "7")
    assert get_seed() == 7
    assert get_seed(3) == 3


def test_bad_device_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("SKIPLAB_DEVICE", "gpu-please")
    with pytest.raises(KnobError, match="SKIPLAB_DEVICE='gpu-please' is not a device"):
        get_device()
    assert get_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="machine has CUDA")
def test_cuda_without_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("SKIPLAB_DEVICE", "cuda")
    with pytest.raises(KnobError, match="no CUDA device"):
        get_device()


def test_seed_everything_repeats_every_generator():
    import random

    def draw():
        return random.random(), np.random.rand(), torch.rand(1).item()

    seed_everything(5)
    first = draw()
    seed_everything(5)
    assert draw() == first
    seed_everything(6)
    assert draw() != first


def _make_scale(env_scale):
    import os
    import subprocess
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k != "SKIPLAB_SCALE"}
    if env_scale is not None:
        env["SKIPLAB_SCALE"] = env_scale
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(["make", "-s", "--no-print-directory", "--eval",
                          "_show_scale: ; @echo $$SKIPLAB_SCALE", "_show_scale"],
                         cwd=root, env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_make_targets_run_quick_unless_asked():
    """`make book` / `make test` on a CUDA machine must not pick the gpu scale on their own."""
    assert _make_scale(None) == "quick"
    assert _make_scale("gpu") == "gpu"
