"""Training: one loop (:func:`fit`) for every chapter's task, one :class:`History`.

- :mod:`~skiplab.train.loop`: :func:`fit`, :class:`Task`, :class:`BatchLoss`,
  :class:`Optimization`;
- :mod:`~skiplab.train.classify`: :func:`train` (classification, the common call),
  :func:`evaluate`, :func:`run_config`;
- :mod:`~skiplab.train.history`: :class:`History`;
- :mod:`~skiplab.train.checkpoint`: atomic saves, safe loads, random states.

Segmentation (:func:`skiplab.segmentation.train_segmentation`) and metric learning
(:func:`skiplab.finetune.train_embedding`) are the same loop with their own task.
"""

from .classify import classification_task, evaluate, run_config, train
from .history import History
from .loop import BATCHINGS, BatchLoss, Optimization, Task, fit, loop_config

__all__ = ["BATCHINGS", "BatchLoss", "History", "Optimization", "Task", "classification_task",
           "evaluate", "fit", "loop_config", "run_config", "train"]
