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
- :func:`train_linear_probe_then_finetune`: LP-FT (Kumar et al. 2022): train the head on
  the frozen encoder's cached embeddings first, then unfreeze and fine-tune everything.
- :func:`embedding_retrieval` and :func:`retrieval_gap`: retrieval of a model's
  embeddings in eval mode, and its train/test gap on equal-sized sets.
- :func:`random_head_retrieval`: what fresh random heads do to an embedding's retrieval,
  draw by draw (one draw is a poor guide: a random map can help as well as hurt).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .tailor import cache_embeddings
from .train import BatchLoss, History, Optimization, Task, fit

__all__ = ["EmbeddingHistory", "contrastive_task", "embedding_retrieval",
           "random_head_retrieval", "retrieval_gap", "retrieval_metrics", "supervised_contrastive_loss", "train_embedding",
           "train_linear_probe_then_finetune"]


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


@torch.no_grad()
def embedding_retrieval(model: nn.Module, x: torch.Tensor, y: torch.Tensor, k: int = 5
                        ) -> dict[str, float]:
    """:func:`retrieval_metrics` of ``model``'s embeddings of ``x`` (N, *F) with labels
    ``y`` (N,), computed in eval mode (the model's mode is restored afterwards)."""
    was = model.training
    model.eval()
    try:
        return retrieval_metrics(model(x), y, k=k)
    finally:
        model.train(was)


def retrieval_gap(model: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor,
                  x_test: torch.Tensor, y_test: torch.Tensor, *, k: int = 5,
                  seed: int = 0) -> dict[str, float]:
    """Train/test gap of leave-one-out retrieval: precision@k on a random subset of the
    training set as large as the test set, minus precision@k on the test set.

    The subset matters: precision@k rises with the number of candidates (a larger set
    has closer neighbours of each class), so comparing the whole training set with a
    smaller test set would show a gap even for a model that never saw either.

    Shapes: x_train (N, *F), y_train (N,), x_test (M, *F), y_test (M,), M <= N.

    Returns:
        ``{"train": ..., "test": ..., "gap": train - test}``.
    """
    m = len(y_test)
    if m > len(y_train):
        raise ValueError(f"the test set ({m}) is larger than the training set "
                         f"({len(y_train)}); the gap needs a training subset of its size")
    pick = torch.randperm(len(y_train), generator=torch.Generator().manual_seed(seed))[:m]
    pick = pick.to(y_train.device)
    key = f"precision@{k}"
    train = embedding_retrieval(model, x_train[pick], y_train[pick], k)[key]
    test = embedding_retrieval(model, x_test, y_test, k)[key]
    return {"train": train, "test": test, "gap": train - test}


def train_linear_probe_then_finetune(
        model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, probe_steps: int, steps: int,
        evaluate: Callable[[nn.Module], dict[str, float]], probe_lr: float | None = None,
        **kwargs) -> tuple[History, History]:
    """LP-FT (Kumar et al. 2022, "Fine-tuning can distort pretrained features"): first a
    *linear probe*, the head trained on the frozen encoder, then everything fine-tuned
    from there, so that the encoder's first gradients come through a trained head
    instead of a random one.

    Args:
        model: an :class:`~skiplab.tailor.EmbeddingModel` whose encoder is (at least
            partly) trainable; its encoder is frozen during the probe and its
            ``requires_grad`` flags are restored afterwards.
        x, y: raw training inputs (N, *F) and labels (N,).
        probe_steps: steps of the probe; the head trains on the frozen encoder's cached
            embeddings (:func:`~skiplab.tailor.cache_embeddings`), so they cost little.
        steps: steps of the fine-tuning that follows (a fresh optimiser).
        evaluate: ``evaluate(model)``, called on the whole model in both phases.
        probe_lr: the probe's learning rate (default: ``lr`` of ``kwargs`` or 1e-3).
        **kwargs: the rest of :func:`train_embedding`'s arguments, for both phases.

    Returns:
        ``(probe history, fine-tuning history)``; both start with a record at step 0 (the
        second's step 0 is the probe's end).
    """
    encoder = getattr(model, "encoder", None)
    if encoder is None or not hasattr(model, "head"):
        raise ValueError("LP-FT needs an EmbeddingModel (to_embedding_model(...)): an "
                         "encoder to freeze and a head to probe with")
    trainable = [p for p in encoder.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("the encoder is already frozen: LP-FT would fine-tune nothing "
                         "after the probe; train the head alone with train_embedding")
    probe_kwargs = dict(kwargs)
    if probe_lr is not None:
        probe_kwargs["lr"] = probe_lr
    probe_kwargs["desc"] = kwargs.get("desc", "fine-tuning") + " (probe)"
    probe_kwargs.pop("checkpoint", None)
    for p in trainable:
        p.requires_grad_(False)
    try:
        model.train(model.training)             # a frozen encoder goes to eval mode
        cache = cache_embeddings(model, x)
        probe = train_embedding(model.head, cache, y, steps=probe_steps,
                                evaluate=lambda _head: evaluate(model), **probe_kwargs)
    finally:
        for p in trainable:
            p.requires_grad_(True)
        model.train(model.training)
    finetune = train_embedding(model, x, y, steps=steps, evaluate=evaluate, **kwargs)
    return probe, finetune


@torch.no_grad()
def random_head_retrieval(embeddings: torch.Tensor, labels: torch.Tensor,
                          make_head: Callable[[], nn.Module], *, draws: int = 100, k: int = 5,
                          seed: int = 0) -> torch.Tensor:
    """precision@k of ``make_head()(embeddings)`` for ``draws`` freshly initialised heads.

    Args:
        embeddings: (N, D) embeddings, e.g. a frozen encoder's of a test set.
        labels: (N,) their classes.
        make_head: builds one head (in eval mode for the measurement), e.g.
            ``lambda: LinearHead(D)``.
        draws: how many heads; torch's global generator is seeded with ``seed`` first and
            restored afterwards, so the draws are reproducible and leave the caller's
            random state alone.

    Returns:
        (draws,) precision@k, one per head, in draw order.
    """
    if draws < 1:
        raise ValueError(f"draws={draws} must be at least 1")
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        values = []
        for _ in range(draws):
            head = make_head().to(embeddings.device).eval()
            values.append(retrieval_metrics(head(embeddings), labels, k=k)[f"precision@{k}"])
    finally:
        torch.random.set_rng_state(state)
    return torch.tensor(values)
