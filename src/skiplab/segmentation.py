"""Segmentation metrics and a small training loop for the U-Net chapter.

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

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .data import SegmentationSplit
from .runtime import get_seed, progress

__all__ = ["SegmentationHistory", "boundary_f1", "decoy_rate", "evaluate_segmentation",
           "mean_iou",
           "thin_iou", "train_segmentation"]


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
    from .models.unet import center_crop

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


@dataclass
class SegmentationHistory:
    """Test metrics at recorded steps (step 0 = before training) and the training loss."""

    step: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)

    def final(self, metric: str) -> float:
        return self.metrics[metric][-1]


def train_segmentation(model: nn.Module, data: SegmentationSplit, *, steps: int,
                       batch_size: int = 16, lr: float = 3e-3, record_every: int = 20,
                       seed: int | None = None, on_step: Callable[[int], None] | None = None,
                       desc: str = "training", show_progress: bool = True
                       ) -> SegmentationHistory:
    """Adam on pixel-wise cross-entropy; test metrics every ``record_every`` steps.

    Each batch is a fresh random subset (no repeats within a batch; no epochs) from a
    generator seeded by ``seed``, so two models trained with the same seed see the same
    batches. ``on_step(step)`` is called after
    each update (the gradients are still in ``.grad``).
    """
    from .models.unet import center_crop

    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    generator = torch.Generator(device="cpu").manual_seed(get_seed(seed))
    history = SegmentationHistory()

    def record(step: int, loss: float) -> None:
        history.step.append(step)
        history.train_loss.append(loss)
        values = evaluate_segmentation(model, data.x_test, data.y_test, data.thin_test,
                                       data.decoy_test)
        for name, value in values.items():
            history.metrics.setdefault(name, []).append(value)

    record(0, float("nan"))
    model.train()
    running, count = 0.0, 0
    n = len(data.y_train)
    for step in progress(range(1, steps + 1), total=steps, desc=desc, enabled=show_progress):
        idx = torch.randperm(n, generator=generator, device="cpu")[:batch_size]
        idx = idx.to(data.y_train.device)
        logits = model(data.x_train[idx])
        target = center_crop(data.y_train[idx], logits.shape[-2:])
        loss = F.cross_entropy(logits, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if on_step is not None:
            on_step(step)
        opt.step()
        running, count = running + loss.item(), count + 1
        if step % record_every == 0 or step == steps:
            record(step, running / count)
            running, count = 0.0, 0
    return history
