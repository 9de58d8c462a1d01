"""The GitHub Actions workflows, checked offline: they cannot run here, so actionlint (installed
from requirements.txt as a wheel with its binary inside) lints them, and a deliberately broken
copy shows that the lint would catch a mistake."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"


def actionlint() -> str:
    found = shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which(
        "actionlint")
    if found is None:
        pytest.fail("actionlint is missing: `make venv` installs it (requirements.txt)")
    return found


def lint(*files: Path) -> subprocess.CompletedProcess:
    # shellcheck and pyflakes off: the result must not depend on what else a machine has
    return subprocess.run([actionlint(), "-no-color", "-oneline", "-shellcheck=", "-pyflakes=",
                           *map(str, files)], capture_output=True, text=True, timeout=120,
                          check=False)


def load(name: str) -> dict:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def test_actionlint_finds_nothing_in_the_workflows():
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert {f.name for f in files} >= {"book.yml", "ci.yml"}
    done = lint(*files)
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


BREAKAGES = {
    "unknown runner label": ("runs-on: ubuntu-latest", "runs-on: ubuntu-latst",
                             'label "ubuntu-latst" is unknown'),
    "unknown action input": ("          path: _build/html", "          pathh: _build/html",
                             'input "pathh" is not defined in action "actions/upload-pages'),
    "invalid expression": ("${{ steps.deployment.outputs.page_url }}",
                           "${{ steps.deployment.outputs.page_url ) }}", "[expression]"),
    "undefined context property": ("${{ steps.deployment.outputs.page_url }}",
                                   "${{ github.evnt.name }}", 'property "evnt" is not defined'),
    "unknown job key": ("    needs: build", "    need: build", 'unexpected key "need"'),
}


@pytest.mark.parametrize("name", BREAKAGES)
def test_a_broken_workflow_fails_the_lint(tmp_path, name):
    good, bad, message = BREAKAGES[name]
    text = (WORKFLOWS / "book.yml").read_text()
    assert good in text, f"the breakage {name!r} no longer applies to book.yml"
    broken = tmp_path / ".github" / "workflows" / "book.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(text.replace(good, bad, 1))
    done = lint(broken)
    assert done.returncode != 0, f"actionlint accepted a workflow with an {name}"
    assert message in done.stdout, done.stdout + done.stderr


def test_book_workflow_builds_and_deploys_to_pages_and_caches_executions():
    book = load("book.yml")
    assert book["permissions"]["pages"] == "write" and book["permissions"]["id-token"] == "write"
    assert book["concurrency"]["group"]
    build = book["jobs"]["build"]["steps"]
    assert any(s.get("run") == "make book" for s in build)
    upload = next(s for s in build if s.get("uses", "").startswith(
        "actions/upload-pages-artifact@"))
    assert upload["with"]["path"] == "_build/html"
    assert any(s.get("uses", "").startswith("actions/deploy-pages@")
               for s in book["jobs"]["deploy"]["steps"])
    cache = next(s for s in build if s.get("uses", "").startswith("actions/cache@"))
    paths = set(cache["with"]["path"].split())
    assert paths == {"_build/.jupyter_cache", "_build/.skiplab-source"}
    makefile = (ROOT / "Makefile").read_text()
    assert all(p in makefile or p == "_build/.jupyter_cache" for p in paths), \
        "the Makefile no longer keeps the library's hash where the workflow caches it"
    for part in ("book/**/*.ipynb", "src/skiplab/**", "requirements.txt"):
        assert part in cache["with"]["key"], f"the cache key ignores {part}"


def test_ci_workflow_runs_ci_run_on_pushes_and_pull_requests():
    ci = load("ci.yml")
    assert {"push", "pull_request"} <= set(ci["on"])
    steps = ci["jobs"]["test"]["steps"]
    assert any(".ci/run" in s.get("run", "") for s in steps)
