"""The book's paper-scale experiments as commands, on one process or many.

    python -m skiplab.experiments --list
    python -m skiplab.experiments NAME [--scale quick|gpu|paper] [--seed S] [--set KEY=VALUE]
    torchrun --nproc-per-node N -m skiplab.experiments NAME ...

Each run writes ``results/NAME-SCALE-seedS.json`` (:mod:`~skiplab.experiments.results`):
metrics, the full configuration and where, when and how it ran. Chapters show such a file
beside their own quick run (:func:`~skiplab.experiments.show.recorded_results`).
"""

from .estimate import forward_flops, training_seconds
from .registry import EXPERIMENTS, Experiment, RunSpec
from .results import (RESULTS_SCHEMA, ResultsMismatch, provenance, read_results, results_dir,
                      results_path, write_results)
from .runner import Process, config_key, run_experiment, summarise
from .show import recorded_results

__all__ = ["EXPERIMENTS", "RESULTS_SCHEMA", "Experiment", "Process", "ResultsMismatch", "RunSpec",
           "config_key", "forward_flops", "provenance", "read_results", "recorded_results",
           "results_dir", "results_path", "run_experiment", "summarise", "training_seconds",
           "write_results"]
