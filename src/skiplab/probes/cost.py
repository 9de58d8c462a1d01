"""What a model costs: multiply-adds of one forward pass, and peak memory of a computation.

- :func:`count_macs` runs the model once on a tensor of the ``meta`` device (shapes only, no
  arithmetic, no memory) under :class:`torch.utils.flop_counter.FlopCounterMode`, which
  counts 2 FLOPs per multiply-add; we report multiply-adds, the unit the papers and
  torchvision's model table call "FLOPs" (ResNet-50: 4.1 G at 224x224).
- :func:`peak_memory` measures the most memory a call held at once above what was held
  before it: on CUDA from the allocator's own peak counter; on a Linux CPU by sampling
  glibc's count of bytes in use (``mallinfo2``) from a background thread every 0.2 ms
  while the call runs (PyTorch's CPU tensors come from glibc's malloc). Each sample
  briefly locks malloc's arenas, which slows an allocation-heavy call: never time a
  computation through :func:`peak_memory`.
"""

from __future__ import annotations

import copy
import ctypes
import gc
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["MemoryPeak", "count_macs", "peak_memory"]


def count_macs(model: nn.Module, example_shape: tuple[int, ...]) -> int:
    """Multiply-adds of one forward pass on one example of ``example_shape`` (no batch).

    The model is copied to the meta device (nothing is computed or allocated); BatchNorm,
    ReLU, pooling and additions are not counted (convolutions, linear layers and matrix
    products are: they are nearly all of the cost).
    """
    meta = copy.deepcopy(model).to("meta").eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        meta(torch.empty(1, *example_shape, device="meta"))
    return counter.get_total_flops() // 2


@dataclass(frozen=True)
class MemoryPeak:
    """Peak memory held by a call above the level before it, and how it was measured."""

    megabytes: float
    method: str


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _glibc_in_use() -> Callable[[], int]:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
    except (OSError, AttributeError) as error:
        raise NotImplementedError(
            "peak CPU memory is measured through glibc's mallinfo2 (Linux, glibc >= 2.33, "
            "as on Colab); this system does not have it. Run on CUDA or on Linux.") from error

    def in_use() -> int:
        info = libc.mallinfo2()
        return info.uordblks + info.hblkhd

    return in_use


def peak_memory(fn: Callable[[], object], device: str | torch.device = "cpu",
                interval: float = 2e-4) -> MemoryPeak:
    """Run ``fn()`` once and return the peak memory it held above the starting level.

    Args:
        fn: the computation, e.g. ``lambda: model(x).sum().backward()``.
        device: where ``fn`` computes; ``"cuda"`` reads the allocator's peak counter.
        interval: seconds between samples on the CPU.
    """
    device = torch.device(device)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - start
        return MemoryPeak(peak / 2**20, "torch.cuda.max_memory_allocated")
    if device.type != "cpu":
        raise NotImplementedError(f"peak memory on {device.type!r} is not measured; "
                                  "use 'cpu' or 'cuda'")
    in_use = _glibc_in_use()
    start = in_use()
    highest = [start]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            highest[0] = max(highest[0], in_use())
            time.sleep(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        fn()
    finally:
        done.set()
        sampler.join()
    highest[0] = max(highest[0], in_use())
    return MemoryPeak((highest[0] - start) / 2**20, "glibc mallinfo2, sampled every "
                      f"{interval * 1e3:g} ms")
