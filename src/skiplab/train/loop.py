"""The book's one training loop: any model, any task, with checkpoints and resume.

A *task* says what to minimise on a batch and what to measure on held-out data
(:class:`Task`); :class:`Optimization` says how to step; :func:`fit` does the rest for every
chapter: batching, the schedule, records, progress bar, checkpoints.

>>> history = fit(model, x, y, task, steps=300, optimization=Optimization("adam", lr=1e-3))
...                                                             # doctest: +SKIP

With ``checkpoint="run.pt"`` the loop saves model, optimiser, schedule, history, sampler
and random state every ``checkpoint_every`` steps (atomically) and, when that file already
exists, continues from it: an interrupted run picks up where it stopped and ends with the
same weights an uninterrupted run would have. The file also holds the run's configuration
(:func:`loop_config` plus what the caller adds); a file written by a run with another
configuration is refused, never silently reused.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch
import torch.distributed as dist
from torch import nn

from ..data import batch_indices
from ..runtime import get_seed, progress
from ..validation import check_choice
from .checkpoint import (
    check_config,
    load_checkpoint,
    model_spec,
    qualified_name,
    rng_state,
    save_atomically,
    set_rng_state,
    tensor_spec,
)
from .history import History

__all__ = ["BATCHINGS", "BatchLoss", "Optimization", "Task", "fit", "loop_config"]

OPTIMIZERS: tuple[str, ...] = ("sgd", "adam")
BATCHINGS: dict[str, str] = {
    "epochs": "each epoch a fresh permutation; a batch depends only on (seed, step)",
    "subsets": "each step a fresh random subset without repeats, from one seeded generator",
}


@dataclass(frozen=True)
class Optimization:
    """The optimiser and its learning-rate schedule.

    Args:
        optimizer: ``"sgd"`` (with ``momentum``) or ``"adam"`` (with ``betas``).
        lr: learning rate; divided by 10 at each step in ``lr_milestones``.
        weight_decay: L2 penalty passed to the optimiser.
        warmup: ``(steps, factor)``: ``factor * lr`` for the first ``steps`` steps, e.g.
            ``(400, 0.1)``, He et al.'s warm-up for their 110-layer CIFAR nets; or
            ``(steps, "linear")``: the rate rises linearly from lr/steps to lr over the first
            ``steps`` steps, the transformer's warm-up.
    """

    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_milestones: Sequence[int] = ()
    warmup: tuple[int, float | Literal["linear"]] | None = None
    betas: tuple[float, float] = (0.9, 0.999)

    def __post_init__(self) -> None:
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        if self.warmup is not None:
            steps, factor = self.warmup
            if steps < 0 or not (factor == "linear" or isinstance(factor, (int, float))):
                raise ValueError(f"warmup={self.warmup!r}: expected (steps >= 0, factor) or "
                                 "(steps, 'linear')")

    def lr_factor(self, step: int) -> float:
        """The multiplier of ``lr`` at ``step`` (counted from 0)."""
        factor = 0.1 ** sum(step >= m for m in self.lr_milestones)
        warm_steps, warm_factor = self.warmup if self.warmup is not None else (0, 1.0)
        if step >= warm_steps:
            return factor
        if warm_factor == "linear":
            return factor * (step + 1) / warm_steps
        return factor * warm_factor

    def build(self, params: list[nn.Parameter]
              ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
        """A fresh optimiser over ``params`` and its schedule."""
        if self.optimizer == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(
                params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
        else:
            opt = torch.optim.Adam(params, lr=self.lr, betas=self.betas,
                                   weight_decay=self.weight_decay)
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, self.lr_factor)

    def as_config(self) -> dict[str, Any]:
        """Plain data for a checkpoint's configuration (``momentum`` only for SGD,
        ``betas`` only for Adam)."""
        warm = None
        if self.warmup is not None:
            warm = [int(self.warmup[0]),
                    self.warmup[1] if self.warmup[1] == "linear" else float(self.warmup[1])]
        return {
            "optimizer": self.optimizer,
            "lr": float(self.lr),
            "momentum": float(self.momentum) if self.optimizer == "sgd" else None,
            "betas": [float(b) for b in self.betas] if self.optimizer == "adam" else None,
            "weight_decay": float(self.weight_decay),
            "lr_milestones": sorted(int(m) for m in self.lr_milestones),
            "warmup": warm,
        }


class BatchLoss(NamedTuple):
    """What a task returns for one training batch.

    ``loss``: the scalar to minimise. ``count``: its weight in the running mean between
    records (the number of targets for a per-target mean such as accuracy, or 1 to average
    per batch). ``sums``: other training averages as sums over the batch, e.g.
    ``{"acc": correct predictions}``; a record shows ``sum / count`` since the last one.
    """

    loss: torch.Tensor
    count: int = 1
    sums: Mapping[str, float] = {}


@dataclass(frozen=True)
class Task:
    """What the loop minimises and what it measures.

    Args:
        loss: ``loss(model, x, y) -> BatchLoss`` on one training batch (model in train mode).
        evaluate: ``evaluate(model) -> {name: value}`` on held-out data; the loop calls it
            in eval mode under ``torch.no_grad()`` at every record; None records no metrics.
        name: a label for the task, part of a checkpoint's configuration.
        config: anything else that changes the result (a temperature...), as plain data.
    """

    loss: Callable[[nn.Module, torch.Tensor, torch.Tensor], BatchLoss]
    evaluate: Callable[[nn.Module], Mapping[str, float]] | None = None
    name: str = "task"
    config: Mapping[str, Any] = field(default_factory=dict)


def loop_config(model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: Task, *,
                steps: int, batch_size: int, optimization: Optimization, seed: int,
                record_every: int, record_start: bool, batches: str,
                augment: Callable | None) -> dict[str, Any]:
    """Everything about a :func:`fit` call that changes its result, as plain data: the
    loop's settings, the model's class and the dtype and shape of every parameter and
    buffer (and which are frozen), the training tensors' dtypes and shapes, the task's
    name and config, and the augmentation's qualified name. Not in it: the device (a run
    may resume on another one), the contents of tensors or functions."""
    return {
        "steps": steps, "batch_size": batch_size, "seed": seed, **optimization.as_config(),
        "record_every": record_every, "record_start": record_start, "batches": batches,
        "augment": qualified_name(augment), "task": task.name, "task_config": dict(task.config),
        "model": qualified_name(type(model)), "model_state": model_spec(model),
        "data": {"x_train": tensor_spec(x), "y_train": tensor_spec(y)},
    }


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: Task, *, steps: int,
        optimization: Optimization = Optimization(), batch_size: int = 128,
        batches: str = "epochs", record_every: int = 25, record_start: bool = False,
        seed: int | None = None, augment: Callable[[torch.Tensor, torch.Generator],
                                                   torch.Tensor] | None = None,
        on_step: Callable[[int, float], None] | None = None,
        checkpoint: str | os.PathLike | None = None, checkpoint_every: int = 100,
        config: Mapping[str, Any] | None = None, extra_state: Mapping[str, Any] | None = None,
        shard: tuple[int, int] | None = None,
        desc: str = "training", show_progress: bool = True) -> History:
    """Train ``model`` on (x, y) for ``steps`` optimiser steps of ``task``'s loss.

    Args:
        model: takes batches of ``x`` (N, *F); lives on x's device. Only parameters with
            ``requires_grad`` are updated.
        x, y: the training inputs (N, *F) and targets (N, ...).
        task: the batch loss and the evaluation (see :class:`Task`).
        steps: optimiser steps in all (a resumed run counts the steps already done).
        optimization: optimiser and schedule (see :class:`Optimization`).
        batch_size: examples per step.
        batches: ``"epochs"`` (see :func:`skiplab.data.batch_indices`) or ``"subsets"``.
        record_every: steps between records of the returned :class:`History`; the last step
            is always recorded.
        record_start: also record at step 0, before any update (training loss NaN).
        seed: seed of the batch order (default: :func:`skiplab.runtime.get_seed`).
        augment: ``augment(x, generator)`` on each training batch; the generator is seeded
            from (seed, step), so a resumed run augments as the interrupted one would have.
        on_step: ``on_step(step, loss)`` after each update (step counts from 1); the step's
            gradients are still in each parameter's ``.grad`` then.
        checkpoint: file to save to every ``checkpoint_every`` steps and at the end, and to
            resume from when it exists. It belongs to one configuration (:func:`loop_config`
            and ``config``); a call with another raises ValueError naming what differs.
            That includes ``steps``: a finished run is not extended by a longer call.
        config: more plain data that changes the result (held-out data shapes...).
        extra_state: ``{name: object}`` with ``state_dict()``/``load_state_dict()``, saved
            and restored with the checkpoint (e.g. a recorder passed as ``on_step``).
        shard: ``(rank, world_size)`` for data-parallel training (``torch.distributed``
            initialised, ``model`` wrapped in ``DistributedDataParallel``): ``batch_size`` is
            the *global* batch, each process trains on its every ``world_size``-th example
            (the same global batches as one process would draw), the recorded training
            losses are averaged over the processes, and only rank 0 writes the checkpoint and
            shows progress. Every process evaluates the unwrapped model.
        desc, show_progress: the tqdm progress bar.

    Returns:
        The :class:`History` of the whole run, including steps done before a resume.
    """
    if steps < 1:
        raise ValueError(f"steps={steps} must be at least 1")
    if record_every < 1 or checkpoint_every < 1:
        raise ValueError("record_every and checkpoint_every must be at least 1")
    check_choice("batches", batches, BATCHINGS, hint=BATCHINGS)
    seed = get_seed(seed)
    n = len(y)
    if not 0 < batch_size <= n:
        raise ValueError(f"batch_size={batch_size} must lie in 1..{n} (the training examples)")
    rank, world = shard if shard is not None else (0, 1)
    if not 0 <= rank < world or batch_size % world:
        raise ValueError(f"shard={shard}: need 0 <= rank < world_size and batch_size="
                         f"{batch_size} divisible by world_size")
    inner = getattr(model, "module", model) if shard is not None else model
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameter")
    opt, schedule = optimization.build(params)
    device = y.device
    subsets = torch.Generator(device="cpu").manual_seed(seed)
    history = History()
    start, running = 0, (0.0, {}, 0)       # loss sum, other sums, count since the last record
    path = Path(checkpoint) if checkpoint is not None else None
    wanted = None
    if path is not None:
        wanted = {**loop_config(inner, x, y, task, steps=steps, batch_size=batch_size,
                                optimization=optimization, seed=seed,
                                record_every=record_every, record_start=record_start,
                                batches=batches, augment=augment), **(config or {})}
    if path is not None and path.exists():
        state = load_checkpoint(path)
        check_config(path, state.get("config"), wanted)
        inner.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        history = History.from_dict(state["history"])
        set_rng_state(state["rng"])
        subsets.set_state(state["subsets"])
        start = state["step"]
        running = (state["running"][0], dict(state["running"][1]), state["running"][2])
        for name, obj in (extra_state or {}).items():
            if name not in state.get("extra", {}):
                raise ValueError(f"checkpoint {path} has no saved state for {name!r}")
            obj.load_state_dict(state["extra"][name])

    def measure() -> dict[str, float]:
        if task.evaluate is None:
            return {}
        was_training = inner.training
        inner.eval()
        with torch.no_grad():
            values = dict(task.evaluate(inner))
        inner.train(was_training)
        return values

    if start == 0 and record_start:
        history.record(0, float("nan"), measure())
    sum_loss, sums, count = running
    model.train()
    for step in progress(range(start, steps), total=steps, initial=start, desc=desc,
                         enabled=show_progress and rank == 0):
        if batches == "epochs":
            idx = batch_indices(step, n, batch_size, seed)
        else:
            idx = torch.randperm(n, generator=subsets, device="cpu")[:batch_size]
        idx = idx[rank::world].to(device)
        xb, yb = x[idx], y[idx]
        if augment is not None:
            generator = torch.Generator(device=xb.device).manual_seed(seed * 1_000_003 + step)
            xb = augment(xb, generator)
        result = task.loss(model, xb, yb)
        opt.zero_grad(set_to_none=True)
        result.loss.backward()
        opt.step()
        schedule.step()
        loss_value, batch_count, batch_sums = result.loss.item(), result.count, result.sums
        if shard is not None:
            loss_value, batch_count, batch_sums = _gather_batch(loss_value, batch_count,
                                                                batch_sums, world, device)
        sum_loss += loss_value * batch_count
        for name, value in batch_sums.items():
            sums[name] = sums.get(name, 0.0) + value
        count += batch_count
        done = step + 1
        if done % record_every == 0 or done == steps:
            history.record(done, sum_loss / count, measure(),
                           {name: value / count for name, value in sums.items()})
            sum_loss, sums, count = 0.0, {}, 0
        if path is not None and rank == 0 and (done % checkpoint_every == 0 or done == steps):
            save_atomically({
                "config": wanted, "step": done,
                "model": inner.state_dict(), "optimizer": opt.state_dict(),
                "schedule": schedule.state_dict(), "history": history.as_dict(),
                "rng": rng_state(), "subsets": subsets.get_state(),
                "running": (sum_loss, sums, count),
                "extra": {name: obj.state_dict() for name, obj in (extra_state or {}).items()},
            }, path)
        if on_step is not None:
            on_step(done, loss_value)
    return history


def _gather_batch(loss: float, count: int, sums: Mapping[str, float], world: int,
                  device: torch.device) -> tuple[float, int, dict[str, float]]:
    """The global batch's loss (the mean of the processes' shard means: equal shards),
    count and sums, from every process (one all-reduce)."""
    names = sorted(sums)
    values = torch.tensor([loss / world, float(count), *(float(sums[k]) for k in names)],
                          dtype=torch.float64, device=device)
    dist.all_reduce(values)
    total = values.tolist()
    return total[0], int(round(total[1])), dict(zip(names, total[2:]))
