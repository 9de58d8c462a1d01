"""Checkpoints of the training loop: atomic saves, safe loads, random states, and the
configuration a file belongs to.

A checkpoint holds only tensors, numbers, strings and plain containers and is read with
``torch.load(weights_only=True)``, so a file from elsewhere cannot run code when loaded.
It also holds the run's configuration; a file written by a run with another one is
refused, never silently reused (:func:`check_config`).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["check_config", "load_checkpoint", "model_spec", "qualified_name", "rng_state",
           "save_atomically", "set_rng_state", "tensor_spec"]


def save_atomically(state: dict, path: Path) -> None:
    """Write ``state`` to a fresh temporary file beside ``path``, then rename it over
    ``path``: a crash mid-save never leaves a half-written checkpoint, and two runs saving
    to the same path at once never share a temporary file (the last rename wins)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            torch.save(state, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint at ``path``, on the CPU (``load_state_dict`` copies to each
    parameter's device), read with ``weights_only=True``: plain data only, no code."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"checkpoint {path} holds objects other than tensors, numbers, strings and "
            "plain containers, so it is not loaded (torch.load(weights_only=True) refused "
            "it); delete it or pass another path"
        ) from err


def rng_state() -> dict[str, Any]:
    """The global random states: the CPU's and, when CUDA is initialised, every GPU's."""
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` returned. GPU states are restored on the GPUs this
    machine has (a run saved on a GPU can resume on the CPU, then without them)."""
    torch.set_rng_state(state["cpu"])
    cuda = state.get("cuda", [])
    if cuda and torch.cuda.is_available():
        for index, gpu_state in enumerate(cuda[:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(gpu_state, index)


def qualified_name(obj: Any) -> str | None:
    """``module.QualifiedName`` of a function or class (of an instance's class), or None."""
    if obj is None:
        return None
    name = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    module = getattr(obj, "__module__", None) or type(obj).__module__
    return f"{module}.{name}"


def tensor_spec(t: torch.Tensor) -> str:
    """``float32(64, 10)``: a tensor's dtype and shape, not its values."""
    return f"{str(t.dtype).removeprefix('torch.')}{tuple(t.shape)}"


def model_spec(model: nn.Module) -> dict[str, str]:
    """Every parameter's and buffer's dtype and shape, with " frozen" on frozen parameters."""
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    return {name: tensor_spec(t) + (" frozen" if name in frozen else "")
            for name, t in model.state_dict().items()}


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_config(path: Path, saved: Mapping[str, Any] | None, wanted: Mapping[str, Any]
                 ) -> None:
    """Raise ValueError naming every entry where the checkpoint's configuration differs."""
    if saved is None:
        raise ValueError(f"checkpoint {path} belongs to another run: it has no saved "
                         "configuration (an older skiplab wrote it); delete it or pass "
                         "another path")
    old, new = _flatten(saved), _flatten(wanted)
    missing = "<absent>"
    keys = sorted(k for k in old.keys() | new.keys()
                  if old.get(k, missing) != new.get(k, missing))
    if keys:
        shown = [f"{k}: checkpoint {old.get(k, missing)!r}, this call {new.get(k, missing)!r}"
                 for k in keys[:8]]
        more = f"; and {len(keys) - 8} more" if len(keys) > 8 else ""
        raise ValueError(f"checkpoint {path} belongs to another run "
                         f"({'; '.join(shown)}{more}); delete the file or pass another path")
