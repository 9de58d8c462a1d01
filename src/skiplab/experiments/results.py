"""Results files of the paper-scale experiments: metrics with their provenance.

One JSON file per (experiment, scale, seed), written by rank 0 at the end of a run::

    {"schema": 1, "experiment": ..., "scale": ..., "seed": ..., "config": {...},
     "metrics": {run: {...}}, "provenance": {versions, device, world size, git commit,
     wall time, command line, start and end times}}

A chapter shows a file only through :func:`read_results`, which refuses a file whose
configuration differs from what the experiment now specifies for that scale (naming the
differences), so a page never shows a number without knowing what produced it.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .. import __version__

__all__ = ["RESULTS_SCHEMA", "ResultsMismatch", "provenance", "read_results", "results_dir",
           "results_path", "write_results"]

RESULTS_SCHEMA = 1


class ResultsMismatch(ValueError):
    """A results file that does not belong to the configuration it was asked for."""


def results_dir(root: str | os.PathLike | None = None) -> Path:
    """Where results files live: ``root``, else ``SKIPLAB_RESULTS``, else the ``results``
    folder of the repository around the working directory (the folder holding
    ``pyproject.toml``, searched upwards), else ``./results``."""
    if root is not None:
        return Path(root)
    if os.environ.get("SKIPLAB_RESULTS"):
        return Path(os.environ["SKIPLAB_RESULTS"])
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").exists() and (folder / "src" / "skiplab").exists():
            return folder / "results"
    return here / "results"


def results_path(experiment: str, scale: str, seed: int,
                 root: str | os.PathLike | None = None) -> Path:
    """``results_dir(root) / f"{experiment}-{scale}-seed{seed}.json"``."""
    return results_dir(root) / f"{experiment}-{scale}-seed{seed}.json"


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10,
                              cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def provenance(*, device: torch.device, world_size: int, backend: str | None,
               started: float, command: list[str] | None = None) -> dict[str, Any]:
    """Where, when and how a run happened: versions of python, torch, torchvision and skiplab,
    the device (and its name on CUDA), the world size and backend, the git commit (and
    whether the tree had uncommitted changes), the wall time and the command line."""
    try:
        import torchvision
        vision = torchvision.__version__
    except ImportError:
        vision = None
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    status = _git("status", "--porcelain")
    return {
        "python": platform.python_version(), "torch": torch.__version__,
        "torchvision": vision, "skiplab": __version__,
        "device": str(device), "device_name": name or platform.machine(),
        "world_size": world_size, "backend": backend,
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
        "wall_seconds": round(time.time() - started, 1),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(command if command is not None else sys.argv),
    }


def write_results(path: str | os.PathLike, *, experiment: str, scale: str, seed: int,
                  config: Mapping[str, Any], metrics: Mapping[str, Any],
                  provenance: Mapping[str, Any]) -> Path:
    """Write a results file atomically (a temporary file, then a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"schema": RESULTS_SCHEMA, "experiment": experiment, "scale": scale, "seed": seed,
              "config": dict(config), "metrics": dict(metrics), "provenance": dict(provenance)}
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def _differences(found: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    keys = sorted(set(found) | set(wanted))
    return [f"{k}: file has {found.get(k, '(missing)')!r}, expected {wanted.get(k, '(missing)')!r}"
            for k in keys if found.get(k) != wanted.get(k)]


def read_results(path: str | os.PathLike, *, experiment: str, scale: str,
                 config: Mapping[str, Any]) -> dict[str, Any]:
    """The results file at ``path``, checked against what it should hold.

    Raises:
        FileNotFoundError: no file there.
        ResultsMismatch: another schema, experiment or scale, or a configuration that
            differs from ``config`` (the experiment's configuration for that scale, as JSON
            would hold it); the message names every difference.
    """
    path = Path(path)
    record = json.loads(path.read_text())
    if record.get("schema") != RESULTS_SCHEMA:
        raise ResultsMismatch(f"{path}: results schema {record.get('schema')!r}, this skiplab "
                              f"reads schema {RESULTS_SCHEMA}")
    if record.get("experiment") != experiment or record.get("scale") != scale:
        raise ResultsMismatch(f"{path} holds {record.get('experiment')!r} at scale "
                              f"{record.get('scale')!r}, not {experiment!r} at {scale!r}")
    wanted = json.loads(json.dumps(dict(config)))
    differences = _differences(record.get("config", {}), wanted)
    if differences:
        raise ResultsMismatch(
            f"{path} was produced with another configuration than {experiment!r} at scale "
            f"{scale!r} specifies now:\n  " + "\n  ".join(differences)
            + "\nRerun the experiment (python -m skiplab.experiments "
            f"{experiment} --scale {scale}) or remove the file.")
    for key in ("metrics", "provenance"):
        if not isinstance(record.get(key), dict):
            raise ResultsMismatch(f"{path} has no {key!r} section")
    return record
