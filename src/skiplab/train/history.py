"""What a training run measured: one :class:`History` for every task the loop trains."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ..validation import check_choice

__all__ = ["History"]


@dataclass
class History:
    """One entry per record; index i of every list belongs to ``step[i]``.

    - ``train_loss``: the mean training loss over the steps since the previous record (NaN
      for a record at step 0, before any update);
    - ``train_metrics``: other averages over the same training batches, e.g. ``{"acc": ...}``
      for classification;
    - ``metrics``: what the task's evaluation measured at that step (on held-out data, in
      eval mode), e.g. ``{"loss": ..., "acc": ...}`` for classification, ``{"mean IoU": ...}``
      for segmentation, ``{"precision@5": ...}`` for retrieval.

    Classification's names of the first history type still read: ``train_acc``,
    ``test_loss`` and ``test_acc`` are ``train_metrics["acc"]``, ``metrics["loss"]`` and
    ``metrics["acc"]``.
    """

    step: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_metrics: dict[str, list[float]] = field(default_factory=dict)
    metrics: dict[str, list[float]] = field(default_factory=dict)

    def record(self, step: int, train_loss: float, metrics: Mapping[str, float],
               train_metrics: Mapping[str, float] | None = None) -> None:
        """Append one entry: the step, the training loss, and the named values. A name
        missing from this record, or new since earlier ones, gets NaN there, so that every
        list stays aligned with ``step``."""
        earlier = len(self.step)
        self.step.append(step)
        self.train_loss.append(train_loss)
        for table, values in ((self.train_metrics, train_metrics or {}),
                              (self.metrics, metrics)):
            for name in [n for n in values if n not in table]:   # in the order given
                table[name] = [float("nan")] * earlier
            for name, column in table.items():
                column.append(values.get(name, float("nan")))

    def _table(self) -> dict[str, list[float]]:
        table = {"train_loss": self.train_loss}
        table.update({f"train_{k}": v for k, v in self.train_metrics.items()})
        table.update({f"test_{k}": v for k, v in self.metrics.items()})
        table.update(self.metrics)
        return table

    def names(self) -> list[str]:
        """Every name :meth:`series`, :meth:`final` and :meth:`last` accept."""
        return list(self._table())

    def series(self, name: str) -> list[float]:
        """The recorded values of ``name``: ``"train_loss"``, ``"train_<m>"`` for a training
        average, ``"test_<m>"`` or plain ``"<m>"`` for an evaluation metric."""
        table = self._table()
        return table[check_choice("metric", name, table)]

    def final(self, name: str = "train_loss", records: int = 2) -> float:
        """Mean of ``name`` over the last ``records`` records: where the run ended, with
        the noise of a single record smoothed. A record at step 0 (before any update)
        never counts."""
        values = [v for s, v in zip(self.step, self.series(name)) if s > 0]
        if not values:
            raise ValueError("the history has no records yet")
        if records < 1:
            raise ValueError(f"records={records} must be at least 1")
        tail = values[-records:]
        return float(sum(tail) / len(tail))

    def last(self, name: str) -> float:
        """The value of ``name`` at the last record."""
        values = self.series(name)
        if not values:
            raise ValueError("the history has no records yet")
        return float(values[-1])

    @property
    def train_acc(self) -> list[float]:
        return self.series("train_acc")

    @property
    def test_loss(self) -> list[float]:
        return self.series("test_loss")

    @property
    def test_acc(self) -> list[float]:
        return self.series("test_acc")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> History:
        return cls(step=list(state["step"]), train_loss=list(state["train_loss"]),
                   train_metrics={k: list(v) for k, v in state["train_metrics"].items()},
                   metrics={k: list(v) for k, v in state["metrics"].items()})
