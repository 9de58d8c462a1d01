"""One small, readable training loop for classification, with history and checkpoint/resume.

>>> history = train(model, data, steps=300, lr=0.1)            # doctest: +SKIP
>>> history.train_loss[-1], history.test_acc[-1]                # doctest: +SKIP

With ``checkpoint="run.pt"`` the loop saves model, optimiser, schedule, history and random
state (CPU and, when CUDA is in use, every GPU's) every ``checkpoint_every`` steps
(atomically) and, when that file already exists, continues from it: an interrupted run picks
up where it stopped and ends with the same weights an uninterrupted run would have. The
file holds only tensors, numbers, strings and plain containers, and is read with
``torch.load(weights_only=True)``, so a file from elsewhere cannot run code when loaded. It
also holds the run's configuration (:func:`run_config`); a file written by a run with
another configuration is refused, never silently reused.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from .data import DataSplit, batch_indices
from .runtime import get_seed, progress

__all__ = ["History", "evaluate", "run_config", "train"]


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


def _load_checkpoint(path: Path) -> dict[str, Any]:
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


def _rng_state() -> dict[str, Any]:
    """The global random states: the CPU's and, when CUDA is initialised, every GPU's."""
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`_rng_state` returned. GPU states are restored on the GPUs this
    machine has (a run saved on a GPU can resume on the CPU, then without them)."""
    torch.set_rng_state(state["cpu"])
    cuda = state.get("cuda", [])
    if cuda and torch.cuda.is_available():
        for index, gpu_state in enumerate(cuda[:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(gpu_state, index)


def _qualified_name(obj: Any) -> str | None:
    if obj is None:
        return None
    name = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    module = getattr(obj, "__module__", None) or type(obj).__module__
    return f"{module}.{name}"


def _tensor_spec(t: torch.Tensor) -> str:
    return f"{str(t.dtype).removeprefix('torch.')}{tuple(t.shape)}"


def run_config(model: nn.Module, data: DataSplit, *, steps: int, batch_size: int = 128,
               optimizer: Literal["sgd", "adam"] = "sgd", lr: float = 0.1,
               momentum: float = 0.9, weight_decay: float = 0.0,
               lr_milestones: Sequence[int] = (),
               warmup: tuple[int, float | Literal["linear"]] | None = None,
               betas: tuple[float, float] = (0.9, 0.999), record_every: int = 25,
               seed: int | None = None,
               augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None
               ) -> dict[str, Any]:
    """Everything about a :func:`train` call that changes its result, as plain data.

    The checkpoint stores it and a resumed call must match it entry for entry: the
    schedule and optimiser settings (``momentum`` only for SGD, ``betas`` only for Adam),
    ``steps``, ``batch_size``, ``seed``, ``record_every``, the augmentation's qualified
    name (or None), the model's class and the dtype and shape of every parameter and
    buffer (and which parameters are frozen), and the data's dtypes, shapes and class count.
    Not in it: the device (a run may resume on another one), ``checkpoint_every``,
    ``on_step`` and the progress bar; nor the data's or augmentation's contents (the
    same shapes with other values, or another function of the same name, go unnoticed).
    """
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    warm = None
    if warmup is not None:
        warm = [int(warmup[0]), warmup[1] if warmup[1] == "linear" else float(warmup[1])]
    return {
        "steps": steps,
        "batch_size": batch_size,
        "seed": get_seed(seed),
        "optimizer": optimizer,
        "lr": float(lr),
        "momentum": float(momentum) if optimizer == "sgd" else None,
        "betas": [float(b) for b in betas] if optimizer == "adam" else None,
        "weight_decay": float(weight_decay),
        "lr_milestones": sorted(int(m) for m in lr_milestones),
        "warmup": warm,
        "record_every": record_every,
        "augment": _qualified_name(augment),
        "model": _qualified_name(type(model)),
        "model_state": {name: _tensor_spec(t) + (" frozen" if name in frozen else "")
                        for name, t in model.state_dict().items()},
        "data": {name: _tensor_spec(getattr(data, name))
                 for name in ("x_train", "y_train", "x_test", "y_test")},
        "n_classes": data.n_classes,
    }


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _check_config(path: Path, saved: Mapping[str, Any] | None, wanted: Mapping[str, Any]
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
            resume from when it exists. The file belongs to one configuration
            (:func:`run_config`: every argument above that changes the result, the model's
            and data's shapes); a call with another one raises ValueError naming what
            differs. That includes ``steps``: a finished run is not extended by a call with
            more steps, since its history would differ from an uninterrupted longer run's
            (the shorter run's last record is an extra entry); use another path.
        on_step: called as ``on_step(step, loss)`` after each step (step counts from 1);
            the step's gradients are still in each parameter's ``.grad`` then.
        augment: called as ``augment(x, generator)`` on each training batch, e.g.
            :func:`skiplab.data.random_crop_flip`; the generator is seeded from (seed, step),
            so a resumed run augments exactly as the interrupted one would have.
        extra_state: ``{name: object}`` with ``state_dict()`` and ``load_state_dict()``,
            saved in the checkpoint and restored on resume, e.g. a
            :class:`skiplab.probes.GradientRecorder` passed as ``on_step``, so what it
            recorded before an interruption is not lost. Each ``state_dict()`` must hold
            only tensors, numbers, strings and plain containers (dict, list, tuple).
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
    config = None
    if path is not None:
        config = run_config(model, data, steps=steps, batch_size=batch_size,
                            optimizer=optimizer, lr=lr, momentum=momentum,
                            weight_decay=weight_decay, lr_milestones=milestones,
                            warmup=warmup, betas=betas, record_every=record_every, seed=seed,
                            augment=augment)
    if path is not None and path.exists():
        state = _load_checkpoint(path)
        _check_config(path, state.get("config"), config)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        history = History(**state["history"])
        _set_rng_state(state["rng"])
        start = state["step"]
        running = tuple(state["running"])
        for name, obj in (extra_state or {}).items():
            if name not in state.get("extra", {}):
                raise ValueError(f"checkpoint {path} has no saved state for {name!r}")
            obj.load_state_dict(state["extra"][name])

    def save(step: int) -> None:
        if path is None:
            return
        _save_atomically({
            "config": config, "step": step,
            "model": model.state_dict(), "optimizer": opt.state_dict(),
            "schedule": schedule.state_dict(), "history": history.as_dict(),
            "rng": _rng_state(), "running": (sum_loss, sum_correct, count),
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
