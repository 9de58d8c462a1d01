"""Run one experiment in one process or, under ``torchrun``, in several (data parallel).

Under ``torchrun --nproc-per-node N`` (``WORLD_SIZE`` > 1 in the environment) every process
joins one group (NCCL on CUDA, gloo on the CPU), wraps each model in
``DistributedDataParallel`` and trains on its share of every global batch
(:func:`skiplab.train.fit`'s ``shard``): the same global batches one process would draw, so
a run with N processes follows one process's loss curve up to the order of floating-point
sums, *for networks without BatchNorm*. BatchNorm normalises each process's share with its
own statistics (as in He et al.'s multi-GPU training), so BatchNorm nets follow their own,
slightly different curve. Rank 0 shows progress and writes checkpoints and the results file.

Checkpoints live in ``CHECKPOINTS/NAME/SCALE-seedS-KEY/`` with KEY a hash of the whole
configuration, one file per run; the same command after an interruption resumes every
unfinished run where its checkpoint left it, and a finished run is not trained again.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from ..data import (DataSplit, SegmentationSplit, load_cifar10, load_digits, load_oxford_pets,
                    load_shapes, random_crop_flip)
from ..runtime import seed_everything
from ..segmentation import train_segmentation
from ..train import History, train
from .registry import DATASETS, EXPERIMENTS, Experiment
from .results import provenance, results_path, write_results

__all__ = ["Process", "config_key", "run_experiment", "summarise"]


@dataclass(frozen=True)
class Process:
    """This process's place in the run: rank, world size, device and backend."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @classmethod
    def from_environment(cls) -> Process:
        """One process, or the group ``torchrun`` describes (``RANK``, ``WORLD_SIZE``,
        ``LOCAL_RANK``), joined here."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls(device=torch.device("cuda" if torch.cuda.is_available() else "cpu"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if torch.cuda.is_available():
            torch.cuda.set_device(local)
            device, backend = torch.device("cuda", local), "nccl"
        else:
            device, backend = torch.device("cpu"), "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend)
        return cls(dist.get_rank(), dist.get_world_size(), device, backend)

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def config_key(experiment: str, scale: str, seed: int, config: Mapping[str, Any]) -> str:
    """12 hex digits of a hash of everything that defines the run."""
    text = json.dumps({"experiment": experiment, "scale": scale, "seed": seed,
                       "config": config}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _load_data(config: Mapping[str, Any], seed: int,
               device: torch.device) -> DataSplit | SegmentationSplit:
    name = config["dataset"]
    shape, _, n_train, n_test = DATASETS[name]
    if name.startswith("shapes"):
        return load_shapes(n_train=n_train, n_test=n_test, size=shape[-1], seed=seed,
                           device=device)
    if name.startswith("pets"):
        return load_oxford_pets(size=shape[-1], device=device)
    if name.startswith("digits"):
        return load_digits(images=name == "digits-images", seed=seed, device=device)
    data = load_cifar10(device=device)
    if name == "cifar10-flat":
        data = DataSplit(data.x_train.flatten(1), data.y_train, data.x_test.flatten(1),
                         data.y_test, data.n_classes)
    return data


def summarise(history: History, n_classes: int) -> dict[str, Any]:
    """What a results file keeps of a run: the final training loss and held-out metrics
    (``final_test_<m>``; for classifiers also ``final_test_error_percent``), whether it
    diverged (not finite, or above the loss of guessing), and every recorded curve."""
    final_loss = history.final("train_loss")
    out: dict[str, Any] = {
        "final_train_loss": final_loss,
        "diverged": not math.isfinite(final_loss) or final_loss > math.log(n_classes),
        "steps": list(history.step),
        "train_loss": [float(v) for v in history.train_loss],
    }
    for name in history.metrics:
        out[f"final_test_{name}"] = history.final(f"test_{name}")
        out[f"test_{name}"] = [float(v) for v in history.metrics[name]]
    if "acc" in history.metrics:
        out["final_test_error_percent"] = 100 * (1 - out["final_test_acc"])
    return out


def run_experiment(name: str, *, scale: str = "quick", seed: int = 0,
                   overrides: Mapping[str, Any] | None = None,
                   results: str | os.PathLike | None = None,
                   checkpoints: str | os.PathLike = "checkpoints", checkpoint_every: int = 500,
                   show_progress: bool = True, command: list[str] | None = None) -> Path | None:
    """Train every run of experiment ``name`` at ``scale`` and write its results file.

    Returns the results file's path on rank 0 (None on the other ranks).
    """
    if name not in EXPERIMENTS:
        raise ValueError(f"experiment {name!r} is not known; accepted: {', '.join(EXPERIMENTS)}")
    experiment: Experiment = EXPERIMENTS[name]
    config = experiment.config(scale, overrides)
    started = time.time()
    process = Process.from_environment()
    # rank 0 fetches a download first; the others then read the files it left
    if process.rank == 0:
        data = _load_data(config, seed, process.device)
    process.barrier()
    if process.rank != 0:
        data = _load_data(config, seed, process.device)
    augment = random_crop_flip if config.get("augment") else None
    folder = Path(checkpoints) / name / f"{scale}-seed{seed}-{config_key(name, scale, seed, config)}"
    if process.rank == 0:
        folder.mkdir(parents=True, exist_ok=True)
    process.barrier()
    metrics = {}
    for spec in experiment.runs(config):
        seed_everything(seed)
        model = spec.build().to(process.device)
        if process.world > 1:
            model = DistributedDataParallel(
                model, device_ids=[process.device.index] if process.device.type == "cuda"
                else None)
        shard = (process.rank, process.world) if process.world > 1 else None
        if spec.task == "segment":
            history = train_segmentation(
                model, data, steps=spec.steps, batch_size=spec.batch, lr=spec.lr,
                optimizer=spec.optimizer, record_every=spec.record_every, seed=seed,
                checkpoint=folder / f"{spec.label}.pt", shard=shard, desc=spec.label,
                show_progress=show_progress)
        else:
            history = train(model, data, steps=spec.steps, batch_size=spec.batch,
                            optimizer=spec.optimizer, lr=spec.lr, momentum=spec.momentum,
                            weight_decay=spec.weight_decay, lr_milestones=spec.milestones,
                            warmup=spec.warmup, record_every=spec.record_every, seed=seed,
                            augment=augment, checkpoint=folder / f"{spec.label}.pt",
                            checkpoint_every=checkpoint_every, shard=shard,
                            desc=spec.label, show_progress=show_progress)
        metrics[spec.label] = summarise(history, data.n_classes)
        if spec.measure is not None and process.rank == 0:
            inner = getattr(model, "module", model)
            metrics[spec.label]["measured"] = spec.measure(inner, data, seed)
        process.barrier()
    path = None
    if process.rank == 0:
        path = write_results(
            results_path(name, scale, seed, results), experiment=name, scale=scale, seed=seed,
            config=config, metrics=metrics,
            provenance=provenance(device=process.device, world_size=process.world,
                                  backend=process.backend, started=started, command=command))
    process.barrier()
    return path
