import numpy as np
import pytest
import torch

from skiplab import KnobError, by_scale, get_device, get_scale, get_seed, seed_everything


def test_scale_default_follows_cuda():
    assert get_scale() == ("full" if torch.cuda.is_available() else "quick")


@pytest.mark.parametrize("value", ["quick", "full", " Quick "])
def test_scale_accepts_known_values(monkeypatch, value):
    monkeypatch.setenv("SKIPLAB_SCALE", value)
    assert get_scale() == value.strip().lower()


def test_unknown_scale_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("SKIPLAB_SCALE", "huge")
    with pytest.raises(KnobError, match=r"SKIPLAB_SCALE='huge'.*accepted: 'quick', 'full'"):
        get_scale()
    with pytest.raises(KnobError, match="accepted"):
        by_scale(quick=1, full=2, scale="medium")


def test_by_scale_picks_the_scale(monkeypatch):
    monkeypatch.setenv("SKIPLAB_SCALE", "full")
    assert by_scale(quick=1, full=2) == 2
    assert by_scale(quick=1, full=2, scale="quick") == 1


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
