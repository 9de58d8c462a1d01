"""Classification on the one loop: cross-entropy, accuracy, and :func:`train`, the call
most chapters make.

>>> history = train(model, data, steps=300, lr=0.1)            # doctest: +SKIP
>>> history.train_loss[-1], history.test_acc[-1]                # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..data import DataSplit
from ..runtime import get_seed
from .checkpoint import tensor_spec
from .history import History
from .loop import BatchLoss, Optimization, Task, fit, loop_config

__all__ = ["classification_task", "evaluate", "run_config", "train"]


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


def _batch_cross_entropy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> BatchLoss:
    loss, hits = _loss_and_hits(model(x), y)
    return BatchLoss(loss, y.numel(), {"acc": hits})


def classification_task(data: DataSplit) -> Task:
    """Cross-entropy on the training batches (their accuracy recorded as ``train_acc``);
    loss and accuracy on the whole test split at every record (``test_loss``,
    ``test_acc``)."""
    def held_out(model: nn.Module) -> dict[str, float]:
        loss, acc = evaluate(model, data.x_test, data.y_test)
        return {"loss": loss, "acc": acc}

    return Task(_batch_cross_entropy, held_out, name="classification")


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
    optimization = Optimization(optimizer, lr, momentum, weight_decay, tuple(lr_milestones),
                                warmup, betas)
    return {**loop_config(model, data.x_train, data.y_train, classification_task(data),
                          steps=steps, batch_size=batch_size, optimization=optimization,
                          seed=get_seed(seed), record_every=record_every,
                          record_start=False, batches="epochs", augment=augment),
            **_held_out_config(data)}


def _held_out_config(data: DataSplit) -> dict[str, Any]:
    return {"held_out": {"x_test": tensor_spec(data.x_test), "y_test": tensor_spec(data.y_test)},
            "n_classes": data.n_classes}


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
    shard: tuple[int, int] | None = None,
    desc: str = "training",
    show_progress: bool = True,
) -> History:
    """Train a classifier on ``data`` with cross-entropy: :func:`~skiplab.train.fit` with
    :func:`classification_task`, epochs of fresh permutations, and the optimiser settings
    as keywords (see :class:`~skiplab.train.Optimization` for ``optimizer``, ``lr``,
    ``momentum``, ``weight_decay``, ``lr_milestones``, ``warmup`` and ``betas``).

    ``model`` maps (B, *F) inputs to (B, n_classes) logits, or to (B, T, n_classes) for
    per-token targets (B, T) (sequence models), and lives on data's device. The other
    arguments are :func:`~skiplab.train.fit`'s; the checkpoint's configuration is
    :func:`run_config`. Returns the :class:`History` (``train_loss``, ``train_acc``,
    ``test_loss``, ``test_acc`` at every record).
    """
    optimization = Optimization(optimizer, lr, momentum, weight_decay, tuple(lr_milestones),
                                warmup, betas)
    return fit(model, data.x_train, data.y_train, classification_task(data), steps=steps,
               optimization=optimization, batch_size=batch_size, batches="epochs",
               record_every=record_every, seed=seed, augment=augment, on_step=on_step,
               checkpoint=checkpoint, checkpoint_every=checkpoint_every,
               config=_held_out_config(data), extra_state=extra_state, shard=shard,
               desc=desc, show_progress=show_progress)
