"""python -m skiplab.experiments: see :mod:`skiplab.experiments`."""

from __future__ import annotations

import argparse
import ast
import os
import sys

from .registry import EXPERIMENTS
from .runner import run_experiment


def _override(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--set {text!r}: expected KEY=VALUE")
    key, value = text.split("=", 1)
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def list_experiments() -> str:
    lines = []
    for e in EXPERIMENTS.values():
        lines.append(f"{e.name}: {e.title}\n  shown in {e.chapter}")
        for scale in e.sizes:
            config = e.config(scale)
            runs = e.runs(config)
            lines.append(f"  {scale:>5}: {len(runs)} runs ({', '.join(r.label for r in runs)}), "
                         f"{runs[0].steps} steps of batch {runs[0].batch} each, data "
                         f"{config['dataset']}; about {e.estimate_hours(scale):.2f} GPU-hours "
                         "on a T4 (estimate)")
    return "\n".join(lines)


def _command_line() -> list[str]:
    """The command as typed: ``torchrun`` with its process count when under torchrun."""
    launcher = ["python", "-m"]
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        nodes = os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"])
        launcher = ["torchrun", f"--nproc-per-node {nodes}", "-m"]
    return [*launcher, "skiplab.experiments", *sys.argv[1:]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m skiplab.experiments",
                                     description="Run one of the book's experiments at a scale.")
    parser.add_argument("name", nargs="?", help="the experiment (see --list)")
    parser.add_argument("--list", action="store_true", help="name the experiments and sizes")
    parser.add_argument("--scale", default="paper", choices=("quick", "gpu", "paper"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", dest="overrides", type=_override, action="append", default=[],
                        metavar="KEY=VALUE", help="override one size (recorded in the results)")
    parser.add_argument("--results", default=None, help="folder of results files "
                        "(default: the repository's results/)")
    parser.add_argument("--checkpoints", default="checkpoints",
                        help="folder for resumable checkpoints (default: ./checkpoints)")
    parser.add_argument("--checkpoint-every", type=int, default=500)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.list:
        print(list_experiments())
        return 0
    if args.name is None:
        parser.error("name an experiment, or pass --list")
    if args.name not in EXPERIMENTS:
        parser.error(f"experiment {args.name!r} is not known; accepted: {', '.join(EXPERIMENTS)}")
    path = run_experiment(args.name, scale=args.scale, seed=args.seed,
                          overrides=dict(args.overrides), results=args.results,
                          checkpoints=args.checkpoints, checkpoint_every=args.checkpoint_every,
                          show_progress=not args.no_progress,
                          command=_command_line())
    if path is not None:
        print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
