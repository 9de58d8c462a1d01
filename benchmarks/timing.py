"""Wall-clock timing shared by the benchmarks (run them as scripts: this folder is on the path)."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def timed(fn: Callable[[], None], device: torch.device) -> float:
    """Seconds one call of ``fn`` takes, waiting for queued CUDA work before and after."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start
