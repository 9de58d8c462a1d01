"""Execute the book's changed notebooks into Jupyter Book's cache, several at a time.

Jupyter Book v1 executes the notebooks that changed one after another. On 2 cores two
notebooks side by side with one torch thread each get more done than one with two threads,
so `make book` runs this first: jupyter-cache's parallel executor (one process per core)
executes every notebook of ``_toc.yml`` whose code changed into ``_build/.jupyter_cache``,
and the build that follows finds them cached. A notebook that fails here is left out of the
cache; the build then runs it again and reports its error as usual.

    OMP_NUM_THREADS=1 python tools/execute_parallel.py [--cache _build/.jupyter_cache]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml
from jupyter_cache import get_cache
from jupyter_cache.executors import load_executor

ROOT = Path(__file__).resolve().parent.parent


def toc_notebooks() -> list[Path]:
    """The notebooks the book renders, in ``_toc.yml`` order."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf8"))
    files = [toc["root"]] + [c["file"] for part in toc.get("parts", [])
                             for c in part.get("chapters", [])]
    return [p for f in files if (p := ROOT / f"{f}.ipynb").exists()]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default=str(ROOT / "_build" / ".jupyter_cache"))
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    args = parser.parse_args(argv)
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf8"))
    timeout = config.get("execute", {}).get("timeout", args.timeout)
    cache = get_cache(args.cache)
    for path in toc_notebooks():
        cache.add_nb_to_project(str(path))
    executor = load_executor("local-parallel", cache=cache)
    result = executor.run_and_cache(timeout=timeout, allow_errors=False)
    for uri in result.excepted + result.errored:
        print(f"execute_parallel: {Path(uri).relative_to(ROOT)} failed; the build runs it "
              "again and shows the error", file=sys.stderr)
    print(f"execute_parallel: {len(result.succeeded)} executed, {len(result.excepted)} failed, "
          f"{len(result.errored)} could not start")
    return 0   # the build is the judge: it re-executes what is not cached and fails on errors


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
