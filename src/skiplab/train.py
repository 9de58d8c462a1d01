"""One small, readable training loop for classification, with history and checkpoint/resume.

>>> history = train(model, data, steps=300, lr=0.1)            # doctest: +SKIP
>>> history.train_loss[-1], history.test_acc[-1]                # doctest: +SKIP

With ``checkpoint="run.pt"`` the loop saves model, optimiser, schedule, history and random
state every ``checkpoint_every`` steps (atomically) and, when that file already exists,
continues from it: an interrupted run picks up where it stopped and ends with the same
weights an uninterrupted run would have.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from .data import DataSplit, batch_indices
from .runtime import get_seed, progress

__all__ = ["History", "evaluate", "train"]


@dataclass
class History:
    """What a run measured. Index i of every list belongs to ``step[i]``.

    ``train_loss``/``train_acc`` average the minibatches since the previous record;
    ``test_loss``/``test_acc`` are measured on the whole test split in eval mode.
    """

    step: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, list]:
        return asdict(self)

    def final(self, metric: str = "train_loss", records: int = 2) -> float:
        """Mean of ``metric`` over the last ``records`` entries: where the run ended.

        Averaging a few records smooths the minibatch noise of a single entry.
        """
        values = getattr(self, metric, None)
        if not isinstance(values, list) or metric == "step":
            raise ValueError(f"metric={metric!r} is not known; accepted: train_loss, "
                             "train_acc, test_loss, test_acc")
        if not values:
            raise ValueError("the history has no records yet")
        tail = values[-records:]
        return float(sum(tail) / len(tail))


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             batch_size: int = 1024) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on (x, y), in eval mode.

    Shapes: x (N, *F), y (N,) with logits (N, C); or, for sequence models, y (N, T) with
    logits (N, T, C), and then loss and accuracy are per token. The model's train/eval
    mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    total_loss, correct = 0.0, 0
    for start in range(0, len(y), batch_size):
        logits = model(x[start:start + batch_size])
        target = y[start:start + batch_size]
        loss, hits = _loss_and_hits(logits, target, reduction="sum")
        total_loss += loss.item()
        correct += hits
    model.train(was_training)
    return total_loss / y.numel(), correct / y.numel()


def _loss_and_hits(logits: torch.Tensor, y: torch.Tensor,
                   reduction: str = "mean") -> tuple[torch.Tensor, int]:
    """Cross-entropy and the number of correct predictions; (N, C) or per token (N, T, C)."""
    if logits.dim() != y.dim() + 1 or logits.shape[:-1] != y.shape:
        raise ValueError(f"logits of shape {tuple(logits.shape)} do not fit targets of shape "
                         f"{tuple(y.shape)}: expected logits (*target shape, classes)")
    flat = logits.reshape(-1, logits.shape[-1])
    loss = F.cross_entropy(flat, y.reshape(-1), reduction=reduction)
    hits = int((flat.argmax(dim=1) == y.reshape(-1)).sum().item())
    return loss, hits


def _make_optimizer(name: str, params, lr: float, momentum: float,
                    weight_decay: float, betas: tuple[float, float]) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=weight_decay)
    raise ValueError(f"optimizer={name!r} is not known; accepted: 'sgd', 'adam'")


def _save_atomically(state: dict, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a crash mid-save never leaves a half-written checkpoint


def train(
    model: nn.Module,
    data: DataSplit,
    *,
    steps: int,
    batch_size: int = 128,
    optimizer: Literal["sgd", "adam"] = "sgd",
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    lr_milestones: Sequence[int] = (),
    warmup: tuple[int, float | Literal["linear"]] | None = None,
    betas: tuple[float, float] = (0.9, 0.999),
    record_every: int = 25,
    seed: int | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 100,
    on_step: Callable[[int, float], None] | None = None,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    extra_state: Mapping[str, Any] | None = None,
    desc: str = "training",
    show_progress: bool = True,
) -> History:
    """Train ``model`` on ``data`` with cross-entropy for ``steps`` optimiser steps.

    Args:
        model: maps (B, *F) inputs to (B, n_classes) logits, or to (B, T, n_classes) for
            per-token targets (B, T) (sequence models); must live on data's device.
        data: the train/test tensors.
        steps: optimiser steps in all (a resumed run counts the steps already done).
        batch_size: examples per step; each epoch is a fresh permutation (see
            :func:`skiplab.data.batch_indices`).
        optimizer: ``"sgd"`` (with ``momentum``) or ``"adam"``.
        lr: learning rate; divided by 10 at each step in ``lr_milestones``.
        warmup: ``(steps, factor)``: use ``factor * lr`` for the first ``steps`` steps, e.g.
            ``(400, 0.1)``, He et al.'s warm-up for their 110-layer CIFAR nets; or
            ``(steps, "linear")``: raise the rate linearly from lr/steps to lr over the first
            ``steps`` steps, the transformer's warm-up.
        betas: Adam's moment coefficients (transformers commonly use (0.9, 0.98)).
        weight_decay: L2 penalty passed to the optimiser.
        record_every: steps between entries of the returned :class:`History`.
        seed: seed of the batch order (default: :func:`skiplab.runtime.get_seed`).
        checkpoint: file to save to every ``checkpoint_every`` steps and at the end, and to
            resume from when it exists.
        on_step: called as ``on_step(step, loss)`` after each step (step counts from 1);
            the step's gradients are still in each parameter's ``.grad`` then.
        augment: called as ``augment(x, generator)`` on each training batch, e.g.
            :func:`skiplab.data.random_crop_flip`; the generator is seeded from (seed, step),
            so a resumed run augments exactly as the interrupted one would have.
        extra_state: ``{name: object}`` with ``state_dict()`` and ``load_state_dict()``,
            saved in the checkpoint and restored on resume, e.g. a
            :class:`skiplab.probes.GradientRecorder` passed as ``on_step``, so what it
            recorded before an interruption is not lost.
        desc: label of the progress bar.
        show_progress: show a tqdm progress bar.

    Returns:
        The :class:`History` of the whole run, including steps done before a resume.
    """
    if steps < 1:
        raise ValueError(f"steps={steps} must be at least 1")
    if record_every < 1 or checkpoint_every < 1:
        raise ValueError("record_every and checkpoint_every must be at least 1")
    seed = get_seed(seed)
    device = data.x_train.device
    params = [p for p in model.parameters() if p.requires_grad]
    opt = _make_optimizer(optimizer, params, lr, momentum, weight_decay, betas)
    milestones = sorted(lr_milestones)
    warm_steps, warm_factor = warmup if warmup is not None else (0, 1.0)
    if warm_steps < 0 or not (warm_factor == "linear" or isinstance(warm_factor, (int, float))):
        raise ValueError(f"warmup={warmup!r}: expected (steps >= 0, factor) or (steps, 'linear')")

    def lr_factor(step: int) -> float:
        factor = 0.1 ** sum(step >= m for m in milestones)
        if step >= warm_steps:
            return factor
        if warm_factor == "linear":
            return factor * (step + 1) / warm_steps
        return factor * warm_factor

    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    history = History()
    start = 0
    running = (0.0, 0, 0)  # loss sum, correct count, examples since the last record
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and path.exists():
        state = torch.load(path, map_location=device, weights_only=False)
        if state["steps"] != steps or state["batch_size"] != batch_size or state["seed"] != seed:
            raise ValueError(
                f"checkpoint {path} belongs to another run (steps={state['steps']}, "
                f"batch_size={state['batch_size']}, seed={state['seed']}); delete it or pass "
                "another path"
            )
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        history = History(**state["history"])
        torch.set_rng_state(state["torch_rng"])
        start = state["step"]
        running = state["running"]
        for name, obj in (extra_state or {}).items():
            if name not in state.get("extra", {}):
                raise ValueError(f"checkpoint {path} has no saved state for {name!r}")
            obj.load_state_dict(state["extra"][name])

    def save(step: int) -> None:
        if path is None:
            return
        _save_atomically({
            "step": step, "steps": steps, "batch_size": batch_size, "seed": seed,
            "model": model.state_dict(), "optimizer": opt.state_dict(),
            "schedule": schedule.state_dict(), "history": history.as_dict(),
            "torch_rng": torch.get_rng_state(), "running": (sum_loss, sum_correct, count),
            "extra": {name: obj.state_dict() for name, obj in (extra_state or {}).items()},
        }, path)

    model.train()
    n = len(data.y_train)
    sum_loss, sum_correct, count = running
    for step in progress(range(start, steps), total=steps, initial=start, desc=desc,
                         enabled=show_progress):
        idx = batch_indices(step, n, batch_size, seed).to(device)
        x, y = data.x_train[idx], data.y_train[idx]
        if augment is not None:
            generator = torch.Generator(device=device).manual_seed(seed * 1_000_003 + step)
            x = augment(x, generator)
        logits = model(x)
        loss, hits = _loss_and_hits(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
        loss_value = loss.item()
        sum_loss += loss_value * y.numel()
        sum_correct += hits
        count += y.numel()
        done = step + 1
        if done % record_every == 0 or done == steps:
            test_loss, test_acc = evaluate(model, data.x_test, data.y_test)
            history.step.append(done)
            history.train_loss.append(sum_loss / count)
            history.train_acc.append(sum_correct / count)
            history.test_loss.append(test_loss)
            history.test_acc.append(test_acc)
            sum_loss, sum_correct, count = 0.0, 0, 0
        if done % checkpoint_every == 0 or done == steps:
            save(done)
        if on_step is not None:
            on_step(done, loss_value)
    return history
