"""A chapter's view of a recorded experiment: the numbers with their provenance, or how to
produce them."""

from __future__ import annotations

import os
from collections.abc import Mapping

from .registry import EXPERIMENTS
from .results import ResultsMismatch, read_results, results_dir

__all__ = ["recorded_results"]

SCALE_ORDER = ("paper", "gpu", "quick")


def _value(metrics: Mapping[str, float], key: str) -> str:
    value = metrics.get(key)
    return "" if value is None else f"{value:.2f}"


def recorded_results(name: str, *, this_run: Mapping[str, float] | None = None,
                     this_run_label: str = "this page's run", metric: str = "final_test_error_percent",
                     root: str | os.PathLike | None = None) -> str:
    """Markdown: the largest-scale results file of experiment ``name`` found under
    ``results_dir(root)`` (paper, then gpu, then quick; the lowest seed), as a table of
    ``metric`` per run beside ``this_run`` (``{run label: value}``, e.g. the page's own
    quick run) and the paper's published values, with the file's provenance. A file whose
    configuration no longer matches the experiment is not shown: its refusal is. Without a
    file, the commands that make one."""
    experiment = EXPERIMENTS[name]
    folder = results_dir(root)
    found = None
    for scale in SCALE_ORDER:
        files = sorted(folder.glob(f"{name}-{scale}-seed*.json"),
                       key=lambda p: int(p.stem.rsplit("seed", 1)[1] or 0))
        if files:
            found = (scale, files[0])
            break
    def how() -> str:
        return (f"`python -m skiplab.experiments {name} --scale paper`, or on N GPUs "
                f"`torchrun --nproc-per-node N -m skiplab.experiments {name} --scale paper` "
                "(`python -m skiplab.experiments --list` gives the estimated GPU-hours). It "
                f"writes `results/{name}-paper-seed0.json`; commit that file and rebuild the "
                "book.")

    if found is None:
        return (f"No recorded run of `{name}` is in this copy of the book (looked in "
                f"`{folder}`). To record one: {how()}")
    scale, path = found
    try:
        record = read_results(path, experiment=name, scale=scale,
                              config=experiment.config(scale))
    except ResultsMismatch as refusal:
        return f"A results file was found but is not shown:\n\n```\n{refusal}\n```"
    p = record["provenance"]
    label = {"final_test_error_percent": "test error (%)", "final_train_loss":
             "final training loss", "final_test_acc": "test accuracy"}.get(metric, metric)
    # the experiment's order of runs, then runs only this page has
    order = [spec.label for spec in experiment.runs(record["config"])]
    runs = [*(r for r in order if r in record["metrics"]),
            *(r for r in record["metrics"] if r not in order),
            *(r for r in (this_run or {}) if r not in record["metrics"])]
    rows = [f"| run | {this_run_label} | recorded, `{scale}` scale | published (paper's setup) |",
            "|---|---:|---:|---:|"]
    for run in runs:
        mine = "" if this_run is None or run not in this_run else f"{this_run[run]:.2f}"
        published = experiment.published.get(run)
        recorded = _value(record["metrics"].get(run, {}), metric)
        rows.append(f"| {run} | {mine} | {recorded} | "
                    f"{'' if published is None else f'{published:.2f}'} |")
    dirty = " (with uncommitted changes)" if p.get("git_dirty") else ""
    commit = (p.get("git_commit") or "unknown")[:10]
    lines = [f"**Recorded run** ({label}): `{path.name}`, `{scale}` scale, seed "
             f"{record['seed']}.", "", *rows, "",
             f"Provenance: {p['device']} ({p['device_name']}), {p['world_size']} "
             f"process{'es' if p['world_size'] > 1 else ''}"
             f"{'' if not p.get('backend') else ' (' + p['backend'] + ')'}; torch {p['torch']}, "
             f"torchvision {p['torchvision']}, skiplab {p['skiplab']}, python {p['python']}; "
             f"commit {commit}{dirty}; finished {p['finished']} after {p['wall_seconds']:.0f} s; "
             f"command `{p['command']}`."]
    if experiment.published_note:
        lines.append(f"Published: {experiment.published_note}.")
    if scale != "paper":
        lines.append(f"This file is a `{scale}`-scale run, not the paper's sizes: to record "
                     f"those, {how()}")
    return "\n".join(lines)
