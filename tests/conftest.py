import os

import pytest
import torch

# Unit tests run on the CPU with one thread and no progress bars, whatever the machine has.
os.environ.setdefault("SKIPLAB_PROGRESS", "0")


@pytest.fixture(autouse=True)
def _clean_knobs(monkeypatch):
    for name in ("SKIPLAB_SCALE", "SKIPLAB_SEED", "SKIPLAB_DEVICE"):
        monkeypatch.delenv(name, raising=False)
    torch.set_num_threads(1)
    yield
