"""Segmentation metrics and the segmentation task of the one training loop (U-Net chapter).

- :func:`mean_iou`: intersection over union per class, averaged over classes.
- :func:`thin_iou`: the fine-detail metric. Foreground IoU restricted to a band of
  ``radius`` pixels around the thin (one-pixel-wide) structures: a prediction that misses
  the thin lines, or smears them, scores low, whatever it does elsewhere.
- :func:`decoy_rate`: the context metric. The share of decoy pixels (background that
  looks like foreground up close) predicted as foreground: a net that cannot see far
  enough to tell a short dash from a piece of a long curve scores high.
- :func:`boundary_f1`: the boundary F-score with a pixel tolerance: boundary pixels of the
  prediction within ``tolerance`` pixels of a true boundary pixel count as correct
  (precision), and vice versa (recall).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .data import SegmentationSplit
from .models.unet import center_crop
from .train import BatchLoss, History, Optimization, Task, fit
from .train.checkpoint import tensor_spec

__all__ = ["SegmentationHistory", "boundary_f1", "decoy_rate", "evaluate_segmentation",
           "mean_iou", "segmentation_task", "thin_iou", "train_segmentation"]


def _dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    if radius == 0:
        return mask
    m = mask.float()[:, None]
    return F.max_pool2d(m, 2 * radius + 1, stride=1, padding=radius)[:, 0] > 0


def mean_iou(pred: torch.Tensor, target: torch.Tensor, n_classes: int = 2) -> float:
    """Mean over classes of |P ∩ T| / |P ∪ T|, pooled over all images. Shapes (N, H, W)."""
    ious = []
    for c in range(n_classes):
        p, t = pred == c, target == c
        union = (p | t).sum().item()
        if union:
            ious.append((p & t).sum().item() / union)
    return sum(ious) / len(ious)


def thin_iou(pred: torch.Tensor, target: torch.Tensor, thin: torch.Tensor,
             radius: int = 1) -> float:
    """Foreground IoU within ``radius`` pixels of the thin structures. Shapes (N, H, W)."""
    band = _dilate(thin, radius)
    p, t = (pred == 1) & band, (target == 1) & band
    union = (p | t).sum().item()
    return (p & t).sum().item() / union if union else 1.0


def decoy_rate(pred: torch.Tensor, decoys: torch.Tensor) -> float:
    """Share of decoy pixels predicted as foreground (lower is better); NaN when there are
    no decoys. Shapes (N, H, W)."""
    total = decoys.sum().item()
    return ((pred == 1) & decoys).sum().item() / total if total else float("nan")


def _boundary(mask: torch.Tensor) -> torch.Tensor:
    eroded = ~_dilate(~mask, 1)
    return mask & ~eroded


def boundary_f1(pred: torch.Tensor, target: torch.Tensor, tolerance: int = 1) -> float:
    """Boundary F-score of the foreground with a ``tolerance`` in pixels, pooled over all
    images (not averaged per image). A boundary pixel is a foreground pixel with a
    background 8-neighbour (the image border does not count). Shapes (N, H, W)."""
    pb, tb = _boundary(pred == 1), _boundary(target == 1)
    if pb.sum() == 0 and tb.sum() == 0:
        return 1.0
    precision = (pb & _dilate(tb, tolerance)).sum().item() / max(pb.sum().item(), 1)
    recall = (tb & _dilate(pb, tolerance)).sum().item() / max(tb.sum().item(), 1)
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


@torch.no_grad()
def evaluate_segmentation(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                          thin: torch.Tensor, decoys: torch.Tensor | None = None,
                          batch_size: int = 64) -> dict[str, float]:
    """Loss, mean IoU, thin-structure IoU, boundary F1 and (given ``decoys``) the decoy
    rate of ``model`` on (x, y), in eval
    mode (the mode is restored). Predictions are centre-cropped targets' size if the model
    outputs smaller maps (valid padding): the targets are cropped to match."""
    was = model.training
    model.eval()
    logits = torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
    model.train(was)
    size = logits.shape[-2:]
    y, thin = center_crop(y, size), center_crop(thin, size)
    pred = logits.argmax(1)
    values = {"loss": F.cross_entropy(logits, y).item(), "mean IoU": mean_iou(pred, y),
              "thin IoU": thin_iou(pred, y, thin), "boundary F1": boundary_f1(pred, y)}
    if decoys is not None:
        values["decoy rate"] = decoy_rate(pred, center_crop(decoys, size))
    return values


# The one history type; the name is kept for the chapters and figures that used it.
SegmentationHistory = History


def segmentation_task(data: SegmentationSplit) -> Task:
    """Pixel-wise cross-entropy on the training batches (targets centre-cropped to the
    output's size when the model uses valid padding), averaged per batch; the test metrics
    of :func:`evaluate_segmentation` at every record."""
    def pixel_cross_entropy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> BatchLoss:
        logits = model(x)
        return BatchLoss(F.cross_entropy(logits, center_crop(y, logits.shape[-2:])))

    def held_out(model: nn.Module) -> dict[str, float]:
        return evaluate_segmentation(model, data.x_test, data.y_test, data.thin_test,
                                     data.decoy_test)

    return Task(pixel_cross_entropy, held_out, name="segmentation")


def train_segmentation(model: nn.Module, data: SegmentationSplit, *, steps: int,
                       batch_size: int = 16, lr: float = 3e-3, optimizer: str = "adam",
                       record_every: int = 20, seed: int | None = None,
                       on_step: Callable[[int, float], None] | None = None,
                       checkpoint: str | os.PathLike | None = None,
                       shard: tuple[int, int] | None = None,
                       desc: str = "training", show_progress: bool = True) -> History:
    """Adam on pixel-wise cross-entropy: :func:`skiplab.train.fit` with
    :func:`segmentation_task`, recording the test metrics at step 0 (before training), every
    ``record_every`` steps and at the end.

    Each batch is a fresh random subset (``batches="subsets"``: no repeats within a batch,
    no epochs) from a generator seeded by ``seed``, so two models trained with the same
    seed see the same batches. ``on_step(step, loss)`` is called after each update (the
    gradients are still in ``.grad``). ``checkpoint`` and ``shard``: as in
    :func:`skiplab.train.fit`.
    """
    return fit(model, data.x_train, data.y_train, segmentation_task(data), steps=steps,
               optimization=Optimization(optimizer, lr), batch_size=batch_size,
               batches="subsets", record_every=record_every, record_start=True, seed=seed,
               on_step=on_step, checkpoint=checkpoint,
               config={"held_out": {"x_test": tensor_spec(data.x_test)}}, shard=shard,
               desc=desc, show_progress=show_progress)
