"""Fine-tuning an embedding model for similarity: a metric-learning loss, retrieval
metrics, and a small training loop that can run on cached embeddings.

- :func:`supervised_contrastive_loss` (Khosla et al. 2020): for each anchor, the other
  examples of its class in the batch are positives, everything else negatives; the loss
  is the mean over anchors and positives of -log softmax over the anchor's cosine
  similarities / temperature.
- :func:`retrieval_metrics`: each test embedding queries all the others (leave-one-out)
  by cosine similarity; precision@k is the share of the k nearest with the query's label,
  MRR the mean of 1 / rank of the first such neighbour.
- :func:`train_embedding`: the one training loop (:func:`skiplab.train.fit`) on that loss,
  recording the metrics on an evaluation set every few steps (step 0 included).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .train import BatchLoss, History, Optimization, Task, fit

__all__ = ["EmbeddingHistory", "contrastive_task", "retrieval_metrics",
           "supervised_contrastive_loss", "train_embedding"]


def supervised_contrastive_loss(embeddings: torch.Tensor, labels: torch.Tensor,
                                temperature: float = 0.1) -> torch.Tensor:
    """Supervised contrastive loss of (B, D) ``embeddings`` with (B,) ``labels``.

    Anchors without a positive in the batch are skipped. Scale-free: embeddings are
    L2-normalised first.
    """
    if embeddings.dim() != 2 or labels.shape != embeddings.shape[:1]:
        raise ValueError(f"expected (B, D) embeddings and (B,) labels, got "
                         f"{tuple(embeddings.shape)} and {tuple(labels.shape)}")
    z = F.normalize(embeddings, dim=1)
    logits = z @ z.T / temperature
    n = len(labels)
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = (labels[:, None] == labels[None, :]) & ~self_mask
    counts = positives.sum(1)
    has = counts > 0
    if not has.any():
        raise ValueError("no anchor in the batch has a positive (another example of its "
                         "class); use larger batches")
    per_anchor = -(log_prob.masked_fill(~positives, 0.0)).sum(1)[has] / counts[has]
    return per_anchor.mean()


@torch.no_grad()
def retrieval_metrics(embeddings: torch.Tensor, labels: torch.Tensor, k: int = 5
                      ) -> dict[str, float]:
    """Leave-one-out retrieval by cosine similarity: ``{"precision@k": ..., "mrr": ...}``.

    Shapes: embeddings (N, D), labels (N,). A query whose class has no other member
    contributes 0 to the MRR. Ties in similarity keep the examples' order (a stable sort),
    so the result does not depend on the sorting algorithm; identical embeddings tie.
    """
    z = F.normalize(embeddings.float(), dim=1)
    similarity = z @ z.T
    similarity.fill_diagonal_(float("-inf"))
    order = similarity.argsort(dim=1, descending=True, stable=True)[:, :-1]   # drop the query
    hits = labels[order] == labels[:, None]
    precision = hits[:, :k].float().mean().item()
    first = torch.where(hits.any(1), hits.float().argmax(1) + 1, torch.zeros_like(labels))
    reciprocal = torch.where(first > 0, 1.0 / first.clamp(min=1).float(), 0.0)
    return {f"precision@{k}": precision, "mrr": reciprocal.mean().item()}


# The one history type; the name is kept for the chapters and figures that used it.
EmbeddingHistory = History


def contrastive_task(evaluate: Callable[[nn.Module], dict[str, float]] | None = None, *,
                     temperature: float = 0.1) -> Task:
    """The supervised contrastive loss on each batch, averaged per batch; ``evaluate(model)``
    at every record (the loop calls it in eval mode without gradients)."""
    def contrastive(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> BatchLoss:
        return BatchLoss(supervised_contrastive_loss(model(x), y, temperature))

    return Task(contrastive, evaluate, name="supervised contrastive",
                config={"temperature": float(temperature)})


def train_embedding(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, steps: int,
                    evaluate: Callable[[nn.Module], dict[str, float]],
                    batch_size: int = 128, lr: float = 1e-3, temperature: float = 0.1,
                    optimizer: str = "adam", momentum: float = 0.9,
                    record_every: int = 10, seed: int | None = None,
                    checkpoint: str | os.PathLike | None = None, desc: str = "fine-tuning",
                    show_progress: bool = True) -> History:
    """Train ``model`` (inputs -> embeddings) with the supervised contrastive loss:
    :func:`skiplab.train.fit` with :func:`contrastive_task`.

    Only parameters with ``requires_grad`` are updated (Adam, or SGD with momentum). ``x``
    may be raw inputs or cached embeddings, as long as ``model`` takes them. Each batch is
    a fresh random subset (``batches="subsets"``: a duplicated example would be a trivial
    positive). ``evaluate(model)`` is called in eval mode at step 0, every
    ``record_every`` steps and at the end.

    Returns:
        The :class:`~skiplab.train.History`: ``metrics`` holds what ``evaluate`` returned,
        ``train_loss`` the mean loss since the previous record (NaN at step 0).
    """
    return fit(model, x, y, contrastive_task(evaluate, temperature=temperature), steps=steps,
               optimization=Optimization(optimizer, lr, momentum), batch_size=batch_size,
               batches="subsets", record_every=record_every, record_start=True, seed=seed,
               checkpoint=checkpoint, desc=desc, show_progress=show_progress)
