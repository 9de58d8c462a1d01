"""Run the chapters over seeds and thread counts and tabulate every claim's evidence.

    python tools/claims_table.py --seeds 0 1 2 --threads 1 2 [--chapters book/why/x.ipynb ...]
                                 [--cores 2] [--out _build/claims]

Each (chapter, seed, threads) run executes the notebook top to bottom in a fresh kernel
(nbval, as ``make chapter`` does) with ``SKIPLAB_SEED=seed``, ``OMP_NUM_THREADS=threads`` and
``SKIPLAB_CLAIMS_LOG`` set, so every ``claim(...)`` appends its verdict and evidence to a log
(:func:`skiplab.claims.claim`). Runs share ``--cores``: a run with t threads takes t of them.
A failed claim is logged like a held one, and the run goes on with the next cell, so one
run shows every claim. Writes:

- ``OUT/claims.md``: one row per claim, how many runs it held in, and the runs it failed;
- ``OUT/evidence.md``: every run's evidence for every claim;
- ``OUT/claims.jsonl``: the raw records.

Exits non-zero when a claim failed in any run, or a run failed outside a claim (an error in
a cell), or a run logged no claim at all (it did not get as far as the first).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"


def chapters_in_toc() -> list[Path]:
    """The chapter notebooks, in the book's order (_toc.yml)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    found: list[Path] = []

    def walk(node):
        if isinstance(node, dict):
            if "file" in node and (ROOT / f"{node['file']}.ipynb").exists():
                found.append(ROOT / f"{node['file']}.ipynb")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(toc)
    return found


class Cores:
    """A pool of CPU cores; a run with t threads holds t of them while it runs."""

    def __init__(self, n: int):
        self.free, self.condition = n, threading.Condition()

    def hold(self, t: int):
        with self.condition:
            self.condition.wait_for(lambda: self.free >= t)
            self.free -= t

    def release(self, t: int):
        with self.condition:
            self.free += t
            self.condition.notify_all()


def run_one(chapter: Path, seed: int, threads: int, out: Path, cores: Cores) -> dict:
    name = chapter.stem
    log = out / "logs" / f"{name}-seed{seed}-threads{threads}.jsonl"
    log.unlink(missing_ok=True)
    env = {**os.environ, "SKIPLAB_SEED": str(seed), "OMP_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads), "SKIPLAB_CLAIMS_LOG": str(log),
           "SKIPLAB_CLAIMS_CHAPTER": name, "SKIPLAB_PROGRESS": "0",
           "PLOTLY_RENDERER": os.environ.get("PLOTLY_RENDERER", "notebook")}
    cores.hold(threads)
    started = time.perf_counter()
    try:
        done = subprocess.run(
            [str(PYTHON), "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-q",
             "-p", "no:cacheprovider", str(chapter)],
            cwd=ROOT, env=env, capture_output=True, text=True)
    finally:
        cores.release(threads)
    seconds = time.perf_counter() - started
    (out / "logs" / f"{name}-seed{seed}-threads{threads}.out").write_text(
        done.stdout + done.stderr)
    records = ([json.loads(line) for line in log.read_text().splitlines()]
               if log.exists() else [])
    failed_claims = sum(not r["holds"] for r in records)
    # nbval counts failed cells; a failed claim fails its cell, anything more is an error
    failed_cells = done.stdout.count("FAILED ")
    print(f"{name:16s} seed {seed} threads {threads}: {len(records)} claims, "
          f"{failed_claims} failed, {failed_cells - failed_claims} other cell errors, "
          f"{seconds:.0f} s", flush=True)
    return {"chapter": name, "seed": seed, "threads": threads, "seconds": seconds,
            "records": records, "errors": max(0, failed_cells - failed_claims)}


def write_tables(runs: list[dict], out: Path) -> bool:
    """Write claims.md, evidence.md and claims.jsonl; True when every claim held everywhere."""
    records = [r for run in runs for r in run["records"]]
    (out / "claims.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    order: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        order.setdefault((r["chapter"], r["text"]), []).append(r)
    lines = ["| chapter | claim | held | failed in (seed/threads) |", "|---|---|---|---|"]
    for (chapter, text), rs in order.items():
        failed = [f"{r['seed']}/{r['threads']}" for r in rs if not r["holds"]]
        held = sum(r["holds"] for r in rs)
        lines.append(f"| {chapter} | {text.replace('|', '/')} | {held}/{len(rs)} | "
                     f"{', '.join(failed) or '-'} |")
    problems = [f"{run['chapter']} seed {run['seed']} threads {run['threads']}: "
                f"{run['errors']} cell errors" for run in runs if run["errors"]]
    problems += [f"{run['chapter']} seed {run['seed']} threads {run['threads']}: no claim logged"
                 for run in runs if not run["records"]]
    summary = "\n".join(lines) + "\n"
    if problems:
        summary += "\nRuns that failed outside a claim:\n\n" + "".join(
            f"- {p}\n" for p in problems)
    (out / "claims.md").write_text(summary)
    evidence = []
    for (chapter, text), rs in order.items():
        evidence.append(f"## {chapter}: {text}\n")
        keys = list(dict.fromkeys(k for r in rs for k in r["evidence"]))
        evidence.append("| seed | threads | holds | " + " | ".join(k.replace("|", "/")
                                                              for k in keys) + " |")
        evidence.append("|---" * (3 + len(keys)) + "|")
        for r in sorted(rs, key=lambda r: (r["seed"], r["threads"])):
            evidence.append(f"| {r['seed']} | {r['threads']} | {'yes' if r['holds'] else 'NO'} | "
                            + " | ".join(r["evidence"].get(k, "").replace("|", "/")
                                         for k in keys) + " |")
        evidence.append("")
    (out / "evidence.md").write_text("\n".join(evidence) + "\n")
    return not problems and all(r["holds"] for r in records)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--chapters", type=Path, nargs="+", default=None)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "claims")
    args = parser.parse_args(argv)
    chapters = [c.resolve() for c in args.chapters] if args.chapters else chapters_in_toc()
    if max(args.threads) > args.cores:
        parser.error(f"--threads {max(args.threads)} needs at least that many --cores")
    (args.out / "logs").mkdir(parents=True, exist_ok=True)
    cores = Cores(args.cores)
    # the runs that need every thread first: at the end, one-thread runs fill the cores
    jobs = [(c, s, t) for t in sorted(args.threads, reverse=True) for s in args.seeds
            for c in chapters]
    with ThreadPoolExecutor(max_workers=args.cores) as pool:
        runs = list(pool.map(lambda job: run_one(*job, args.out, cores), jobs))
    ok = write_tables(runs, args.out)
    print((args.out / "claims.md").read_text())
    print(f"every claim held in every run: {ok}; evidence per run: {args.out / 'evidence.md'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
