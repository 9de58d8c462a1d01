"""Synthetic sequence tasks: no download, deterministic per seed, one target per position.

Every task maps a sequence of ``length`` tokens from ``0 .. vocab - 1`` to a target
sequence of the same length, so a :class:`skiplab.models.SequenceModel` predicts one token
per position and :func:`skiplab.train.train` measures token accuracy.

- ``reverse``: y = x read backwards (every output needs a token far away);
- ``sort``: y = x sorted ascending (needs all tokens: a comparison of each with all others);
- ``shift``: y_t = x_{t-k} cyclically, k = ``offset`` (copying from a fixed distance);
- ``prefix_sum``: y_t = (x_0 + ... + x_t) mod vocab (modular arithmetic; a causal model can
  do it, since y_t depends on tokens 0..t only).

>>> data = make_sequence_task("sort", length=8, vocab=10, n_train=4, n_test=2, seed=0)
>>> data.x_train.shape, data.y_train.shape
(torch.Size([4, 8]), torch.Size([4, 8]))
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .data import DataSplit
from .runtime import get_device
from .validation import check_choice

__all__ = ["SEQUENCE_TASKS", "make_sequence_task", "sequence_target"]


def _reverse(x: torch.Tensor, vocab: int, offset: int) -> torch.Tensor:
    return x.flip(-1)


def _sort(x: torch.Tensor, vocab: int, offset: int) -> torch.Tensor:
    return x.sort(dim=-1).values


def _shift(x: torch.Tensor, vocab: int, offset: int) -> torch.Tensor:
    return x.roll(offset, dims=-1)


def _prefix_sum(x: torch.Tensor, vocab: int, offset: int) -> torch.Tensor:
    return x.cumsum(dim=-1) % vocab


SEQUENCE_TASKS: dict[str, Callable[[torch.Tensor, int, int], torch.Tensor]] = {
    "reverse": _reverse,
    "sort": _sort,
    "shift": _shift,
    "prefix_sum": _prefix_sum,
}


def sequence_target(task: str, x: torch.Tensor, vocab: int, offset: int = 1) -> torch.Tensor:
    """The target of ``task`` for tokens x (..., T): the same shape, int64."""
    check_choice("task", task, SEQUENCE_TASKS)
    return SEQUENCE_TASKS[task](x, vocab, offset)


def make_sequence_task(task: str, *, length: int = 12, vocab: int = 10, n_train: int = 4096,
                       n_test: int = 512, offset: int = 1, seed: int = 0,
                       device: str | torch.device | None = None) -> DataSplit:
    """Random token sequences and their targets under ``task``, as a :class:`DataSplit`.

    Shapes: x and y (N, length) int64; ``n_classes`` is ``vocab``. Tokens are uniform and
    independent, drawn from a generator seeded with ``seed`` (same seed, same data). The
    test sequences are drawn after the training ones; with vocab**length possible
    sequences (10**12 by default) an overlap is possible but negligible.
    """
    check_choice("task", task, SEQUENCE_TASKS)
    if length < 2 or vocab < 2 or n_train < 1 or n_test < 1:
        raise ValueError("length >= 2, vocab >= 2, n_train >= 1 and n_test >= 1 are required")
    if task == "shift" and not 0 < offset < length:
        raise ValueError(f"offset={offset} must lie in 1..{length - 1}")
    generator = torch.Generator().manual_seed(seed)
    x = torch.randint(0, vocab, (n_train + n_test, length), generator=generator)
    y = sequence_target(task, x, vocab, offset)
    dev = get_device(device)
    return DataSplit(x[:n_train].to(dev), y[:n_train].to(dev), x[n_train:].to(dev),
                     y[n_train:].to(dev), vocab, f"{task} ({length} tokens over {vocab})")
