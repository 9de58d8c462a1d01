"""Runtime knobs shared by every chapter: device, seed, scale, progress bars.

These environment variables steer a run, each read when asked for, never at import:

- ``SKIPLAB_DEVICE``: ``cpu``, ``cuda``, ``cuda:1``, ... (default: CUDA when available);
- ``SKIPLAB_SEED``: an integer (default 0);
- ``SKIPLAB_SCALE``: ``quick``, ``gpu`` or ``paper`` (default ``gpu`` with CUDA, else ``quick``);
- ``SKIPLAB_CHECKPOINTS``: the folder long runs save their checkpoints in (default
  ``./checkpoints``), e.g. a mounted Google Drive so a recycled Colab runtime can resume;
- ``SKIPLAB_PROGRESS``: ``0`` switches progress bars off (default on).

``SKIPLAB_DATA`` (where downloads go) is read by :mod:`skiplab.downloads`.

An unknown value raises :class:`KnobError` naming the accepted ones.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from tqdm.auto import tqdm

__all__ = [
    "SCALES",
    "KnobError",
    "get_device",
    "get_scale",
    "get_seed",
    "by_scale",
    "checkpoint_dir",
    "seed_everything",
    "progress",
]

SCALES: tuple[str, ...] = ("quick", "gpu", "paper")
"""``quick``: about a minute a chapter on 2 CPU cores. ``gpu``: at most about 10 minutes a
chapter on a Colab T4-class GPU. ``paper``: the papers' sizes, hours, never a default."""

T = TypeVar("T")


class KnobError(ValueError):
    """A knob (environment variable or argument) has a value skiplab does not accept."""


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def get_device(device: str | torch.device | None = None) -> torch.device:
    """The device to compute on.

    Args:
        device: an explicit choice; when None, ``SKIPLAB_DEVICE``, else CUDA when available,
            else CPU.

    Raises:
        KnobError: the value is not a device name, or names CUDA on a machine without it.
    """
    choice = device if device is not None else _env("SKIPLAB_DEVICE")
    source = "device argument" if device is not None else "SKIPLAB_DEVICE"
    if choice is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(choice)
    except (RuntimeError, TypeError) as err:
        raise KnobError(
            f"{source}={choice!r} is not a device; accepted: 'cpu', 'cuda', 'cuda:<index>', 'mps'"
        ) from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise KnobError(f"{source}={choice!r} asks for CUDA, but torch sees no CUDA device here")
    return resolved


def get_seed(seed: int | None = None) -> int:
    """The run's seed: ``seed`` if given, else ``SKIPLAB_SEED``, else 0.

    Raises:
        KnobError: ``SKIPLAB_SEED`` is not a non-negative integer.
    """
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise KnobError(f"seed={seed!r} is not a non-negative integer")
        return seed
    raw = _env("SKIPLAB_SEED")
    if raw is None:
        return 0
    try:
        value = int(raw)
    except ValueError as err:
        raise KnobError(f"SKIPLAB_SEED={raw!r} is not an integer; accepted: 0, 1, 2, ...") from err
    if value < 0:
        raise KnobError(f"SKIPLAB_SEED={raw!r} is negative; accepted: 0, 1, 2, ...")
    return value


def get_scale(scale: str | None = None) -> str:
    """The experiment scale: one of :data:`SCALES`.

    Args:
        scale: an explicit choice; when None, ``SKIPLAB_SCALE``, else ``gpu`` when CUDA is
            available and ``quick`` otherwise. ``paper`` is never chosen for you.

    Raises:
        KnobError: the value is not one of :data:`SCALES` (``full``, this knob's old name for
            the paper-sized runs, says so).
    """
    choice = scale if scale is not None else _env("SKIPLAB_SCALE")
    if choice is None:
        return "gpu" if torch.cuda.is_available() else "quick"
    normalised = str(choice).strip().lower()
    if normalised not in SCALES:
        source = "scale argument" if scale is not None else "SKIPLAB_SCALE"
        accepted = ", ".join(repr(s) for s in SCALES)
        hint = (" ('full' was renamed 'paper': the papers' sizes, hours on a GPU; 'gpu' fits "
                "a Colab session)") if normalised == "full" else ""
        raise KnobError(f"{source}={choice!r} is not a scale; accepted: {accepted}{hint}")
    return normalised


def by_scale(*, quick: T, gpu: T, paper: T, scale: str | None = None) -> T:
    """Pick a chapter's setting for the current scale.

    >>> by_scale(quick=200, gpu=8_000, paper=64_000, scale="quick")
    200
    """
    return {"quick": quick, "gpu": gpu, "paper": paper}[get_scale(scale)]


def checkpoint_dir(name: str, root: str | os.PathLike | None = None) -> Path:
    """The folder for a chapter's checkpoints, created if missing: ``root/name``.

    Args:
        name: a sub-folder, usually the chapter's name.
        root: the parent folder; when None, ``SKIPLAB_CHECKPOINTS``, else ``./checkpoints``.
            In Colab, point ``SKIPLAB_CHECKPOINTS`` at a mounted Google Drive folder so that a
            run survives a recycled runtime.
    """
    parent = Path(root if root is not None else _env("SKIPLAB_CHECKPOINTS") or "checkpoints")
    folder = parent.expanduser().resolve() / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def seed_everything(seed: int | None = None) -> int:
    """Seed Python's, NumPy's and torch's (CPU and CUDA) generators; return the seed used.

    On CPU this makes a run repeat bit for bit at a fixed thread count. On CUDA some kernels
    stay non-deterministic unless ``torch.use_deterministic_algorithms(True)`` is also set,
    which this function leaves to the caller because it slows some layers down.
    """
    value = get_seed(seed)
    random.seed(value)
    np.random.seed(value % 2**32)
    torch.manual_seed(value)  # also seeds every CUDA device
    return value


def progress(iterable: Iterable[T], *, total: int | None = None, desc: str = "",
             enabled: bool = True, **kwargs: Any) -> Iterable[T]:
    """A tqdm progress bar (a widget in Jupyter, text in a terminal) around ``iterable``.

    ``SKIPLAB_PROGRESS=0`` switches every bar off, e.g. in tests.
    """
    off = not enabled or _env("SKIPLAB_PROGRESS") in {"0", "false", "no", "off"}
    return tqdm(iterable, total=total, desc=desc, disable=off, **kwargs)
