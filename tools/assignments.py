"""Build the chapters' exercises into otter-grader assignments, and grade submissions.

The exercises live in the chapter notebooks (one source for the book page and the
assignment): a chapter's exercise section starts at the markdown cell tagged ``exercises``
and runs to the end of the notebook. In it, otter's delimiters (``# BEGIN QUESTION``,
``# BEGIN SOLUTION``, ``# BEGIN TESTS`` ...) are raw cells and the test cells are code
cells, all tagged ``remove-cell`` so the book hides them; cells tagged ``book-only`` (the
section's book introduction, the check printed under each solution) stay out of the
assignment, where otter's ``grader.check`` cell takes the check's place.

    python tools/assignments.py build [--out _build/assignments] [NAME ...]
    python tools/assignments.py grade NAME SUBMISSION_OR_FOLDER ... [--csv scores.csv] [--sandbox]

``build`` writes, for each chapter with exercises, ``OUT/NAME/student/NAME.ipynb`` (solutions
replaced by ``...``, public checks only; its first cell installs skiplab at the book's release
tag and otter-grader where they are missing, e.g. in Colab, without changing a package the
kernel has, and writes the public checks next to the notebook) and ``OUT/NAME/autograder/``
(the solved notebook and ``NAME-autograder_*.zip`` with the hidden checks, a Gradescope
autograder whose environment installs torch's CPU build and skiplab at the release tag).
otter assign runs every check on the solutions while it builds, so a solution that stops
passing fails the build.

``grade`` grades submitted notebooks with the autograder zip, without Docker (``otter run``
for each notebook, in its own process and a fresh kernel, with a time limit), and writes one
row per submission: points per exercise, total, possible, the first failed check of each
exercise that lost points, and why a notebook could not be graded, if it could not.
Each grading kernel first runs :func:`skiplab.checks.integrity.install_grading_guard`
(refuses to score when the submission replaced a checker or a torch function it relies on;
a ``sys.exit()`` costs only the check it happens in), and the time limit kills every
process the run started, those that called setsid() included. With ``--sandbox`` each run
is inside bubblewrap: no network, the file system read-only but for a scratch folder.
``book/teachers.md`` states what this grading can and cannot stop.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from setup_cell import release_tag  # noqa: E402  (the tag the book's notebooks install)

BOOK = ROOT / "book"
DEFAULT_OUT = ROOT / "_build" / "assignments"
OTTER = "otter-grader==7.0.0"
# What ``otter.Notebook(...).check`` needs in the student's kernel beyond what a Jupyter kernel
# with skiplab has (measured in a venv with Colab's versions: import otter and run a check).
# The setup cell installs otter-grader with --no-deps and, of these, only what is missing:
# otter's own requirements would replace Colab's ipywidgets 7.7.1 with 8 (otter requires
# ipywidgets>=8.1.5) and upgrade other packages under the running kernel.
OTTER_NEEDS = {"python-frontmatter": "python-frontmatter==1.3.0", "fica": "fica==0.4.1",
               "dill": "dill==0.4.1", "wrapt": "wrapt==1.17.3", "ipylab": "ipylab==1.1.0",
               "pandas": "pandas>=2"}
# The CPU build of torch for the Gradescope image (no GPU there); the pinned version is the
# book's (requirements.txt). pip prefers 2.x.y+cpu from this index over PyPI's CUDA 2.x.y.
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
BOOK_TAGS = {"remove-cell", "hide-input", "exercises"}

CONFIG = """\
# ASSIGNMENT CONFIG
name: {name}
requirements: requirements.txt
environment: environment.yml
init_cell: false
check_all_cell: false
export_cell: false
generate: true
tests:
  files: true
  ok_format: false
runs_on: default
"""

SETUP = '''\
# Setup: where skiplab or otter-grader is missing (a fresh Colab kernel), install them without
# changing any package this kernel already has; then write this assignment's public checks to
# a folder of their own, where grader.check reads them. (When a teacher grades the notebook,
# otter reads its own checks instead.)
import importlib.metadata
import importlib.util
import pathlib
import re
import subprocess
import sys


def _installed_versions():
    return {{re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower(): d.version
            for d in importlib.metadata.distributions()}}


def _pip_install(*args):
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *args],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"pip install {{' '.join(args)}} failed (is the runtime online?):\\n"
                           + done.stdout[-2000:] + done.stderr[-2000:])


if importlib.util.find_spec("skiplab") is None or importlib.util.find_spec("otter") is None:
    before = _installed_versions()
    if importlib.util.find_spec("skiplab") is None:
        _pip_install("skiplab @ git+{url}@{tag}")
    if importlib.util.find_spec("otter") is None:
        # otter-grader without its dependencies (they would replace Colab's ipywidgets 7 with
        # 8 under the running kernel), and of those grader.check needs, the missing ones.
        OTTER_NEEDS = {otter_needs}
        _pip_install("--no-deps", "{otter}", *[spec for name, spec in OTTER_NEEDS.items()
                                               if name not in before])
    importlib.invalidate_caches()
    after = _installed_versions()
    modules = importlib.metadata.packages_distributions()
    loaded = {{re.sub(r"[-_.]+", "-", d).lower() for m in list(sys.modules)
              for d in modules.get(m.partition(".")[0], [])}}
    changed = [f"{{n}} {{before[n]}} -> {{v}}" for n, v in after.items()
               if n in before and before[n] != v and n in loaded]
    if changed:
        raise RuntimeError("The install changed packages this kernel had already imported ("
                           + ", ".join(changed) + "). Restart the kernel (Colab: Runtime -> "
                           "Restart session), then run the notebook again from the top.")
    if importlib.util.find_spec("skiplab") is None or importlib.util.find_spec("otter") is None:
        raise RuntimeError("skiplab or otter-grader is still missing after the install.")

PUBLIC_CHECKS = {checks}
checks_dir = pathlib.Path("skiplab_checks") / "{name}"
checks_dir.mkdir(parents=True, exist_ok=True)
for file_name, text in PUBLIC_CHECKS.items():
    (checks_dir / file_name).write_text(text)

import otter

grader = otter.Notebook(tests_dir=str(checks_dir))'''

INTRO = """\
# Exercises: {title}

These exercises come from the chapter *{title}* of the book *Skip connections*
({page}). Run the first cell once: it installs what the notebook needs when something is
missing (in Colab) and prepares the checks. Write your code where you find `...`, then run
the `grader.check(...)` cell under the exercise: it runs your code through the properties it
must have and, when one fails, tells you which one, what it expected, what it measured and
the likely mistake. Your teacher grades the notebook with further, hidden checks. When you
are done, save the notebook (in Colab: File → Download → Download .ipynb) and hand it in."""


def book_torch() -> str:
    """The torch version the book is built and tested with (``torch==X`` in requirements.txt)."""
    found = re.search(r"^torch==([^\s;#]+)", (ROOT / "requirements.txt").read_text(), re.M)
    if not found:
        raise LookupError("requirements.txt pins no torch==VERSION")
    return found.group(1)


def grading_requirements() -> str:
    """requirements.txt of the grading image (otter adds otter-grader itself): skiplab at the
    book's release tag, and torch's CPU build (a Gradescope image has no GPU)."""
    url, _ = repository()
    return (f"# The autograder's Python packages, installed by setup.sh into otter's environment\n"
            f"# (Gradescope builds its image with it). Written by tools/assignments.py.\n"
            f"--extra-index-url {TORCH_CPU_INDEX}\n"
            f"torch=={book_torch()}\n"
            f"skiplab @ git+{url}@{release_tag()}\n")


# conda packages for otter's grading environment, merged with otter's own (python, pip, ...):
# git, which pip needs for the git+ requirement, whatever the base image has.
GRADING_ENVIRONMENT = """\
name: otter-env
channels:
  - conda-forge
dependencies:
  - git
"""


def repository() -> tuple[str, str]:
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf8"))
    repo = config["repository"]
    return repo["url"].rstrip("/"), repo.get("branch", "main")


def tags(cell: nbformat.NotebookNode) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def chapters() -> dict[str, Path]:
    """Assignment name (the notebook's stem) -> chapter notebook, for chapters with exercises."""
    found = {}
    for path in sorted(BOOK.rglob("*.ipynb")):
        if ".ipynb_checkpoints" in path.parts:
            continue
        nb = nbformat.read(path, as_version=4)
        if any("exercises" in tags(c) for c in nb.cells):
            if path.stem in found:
                raise ValueError(f"two chapters named {path.stem}: {found[path.stem]} and {path}")
            found[path.stem] = path
    return found


def chapter_title(nb: nbformat.NotebookNode, path: Path) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.source.lstrip().startswith("# "):
            return cell.source.lstrip()[2:].splitlines()[0].strip()
    raise ValueError(f"{path}: no '# Title' heading")


def exercise_cells(nb: nbformat.NotebookNode, path: Path) -> list[nbformat.NotebookNode]:
    """The exercise section without book-only cells, its book tags dropped, outputs cleared."""
    starts = [i for i, c in enumerate(nb.cells) if "exercises" in tags(c)]
    if len(starts) != 1:
        raise ValueError(f"{path}: expected one cell tagged 'exercises', found {len(starts)}")
    cells = []
    for cell in nb.cells[starts[0]:]:
        if "book-only" in tags(cell):
            continue
        cell = copy.deepcopy(cell)
        kept = [t for t in tags(cell) if t not in BOOK_TAGS]
        cell.metadata.pop("tags", None)
        cell.metadata.pop("mystnb", None)      # the book's "Show the solution" prompt
        if kept:
            cell.metadata["tags"] = kept
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            cell.source = hidden_checks(cell.source)
        cells.append(cell)
    if not any(c.cell_type == "raw" and c.source.startswith("# BEGIN QUESTION") for c in cells):
        raise ValueError(f"{path}: the exercise section has no '# BEGIN QUESTION' cell")
    return cells


HIDDEN_TEST = re.compile(r"^\s*hidden:\s*true\s*$", re.M)
CHECK_CALL = re.compile(r"\b(check_\w+)\((\w+)\)")


def hidden_checks(source: str) -> str:
    """In a hidden test cell, call each checker with ``hidden=True``: the same properties on
    further sizes, which the public check (and so the student) never runs. A call that
    passes arguments of its own is left as it is."""
    if "BEGIN TEST CONFIG" not in source or not HIDDEN_TEST.search(source):
        return source
    return CHECK_CALL.sub(r"\1(\2, hidden=True)", source)


def master_notebook(name: str, path: Path) -> nbformat.NotebookNode:
    """otter's input: config, title, setup cell, then the chapter's exercise section."""
    nb = nbformat.read(path, as_version=4)
    url, branch = repository()
    title = chapter_title(nb, path)
    page = f"the chapter's notebook: {url}/blob/{branch}/{path.relative_to(ROOT).as_posix()}"
    needs = "{\n" + "".join(f"            {k!r}: {v!r},\n".replace("'", '"')
                             for k, v in OTTER_NEEDS.items()) + "        }"
    setup = SETUP.format(url=url, tag=release_tag(), otter=OTTER, otter_needs=needs, checks="{}",
                         name=name)
    cells = [nbformat.v4.new_raw_cell(CONFIG.format(name=name)),
             nbformat.v4.new_markdown_cell(INTRO.format(title=title, page=page)),
             nbformat.v4.new_code_cell(setup)]
    return nbformat.v4.new_notebook(cells=cells + exercise_cells(nb, path),
                                    metadata=copy.deepcopy(nb.metadata))


def fill_public_checks(student: Path) -> None:
    """Put the public checks into the student notebook's setup cell (a Colab kernel sees
    the notebook alone, not the tests/ folder beside it)."""
    folder = student.parent / "tests"
    tests = {p.name: p.read_text(encoding="utf8") for p in sorted(folder.glob("*.py"))}
    if not tests:
        raise RuntimeError(f"otter wrote no public checks beside {student}")
    nb = nbformat.read(student, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and "PUBLIC_CHECKS = {}" in cell.source:
            body = "{\n" + "".join(f"    {k!r}: {v!r},\n" for k, v in tests.items()) + "}"
            cell.source = cell.source.replace("PUBLIC_CHECKS = {}", f"PUBLIC_CHECKS = {body}")
            break
    else:
        raise RuntimeError(f"{student}: no setup cell to fill")
    nbformat.write(nb, student)


def build_one(name: str, path: Path, out: Path) -> Path:
    dist = out / name
    with tempfile.TemporaryDirectory() as tmp:
        master = Path(tmp) / f"{name}.ipynb"
        nbformat.write(master_notebook(name, path), master)
        (Path(tmp) / "requirements.txt").write_text(grading_requirements(), encoding="utf8")
        (Path(tmp) / "environment.yml").write_text(GRADING_ENVIRONMENT, encoding="utf8")
        shutil.rmtree(dist, ignore_errors=True)
        result = subprocess.run([sys.executable, "-m", "otter", "assign", str(master), str(dist)],
                                capture_output=True, text=True, cwd=tmp)
        if result.returncode != 0:
            raise RuntimeError(f"otter assign failed for {name} ({path.relative_to(ROOT)}):\n"
                               f"{result.stdout}\n{result.stderr}")
    fill_public_checks(dist / "student" / f"{name}.ipynb")
    return dist


def build(out: Path, names: list[str], jobs: int) -> list[Path]:
    found = chapters()
    unknown = sorted(set(names) - set(found))
    if unknown:
        raise SystemExit(f"no chapter with exercises named {', '.join(unknown)}; "
                         f"known: {', '.join(found)}")
    selected = {n: found[n] for n in (names or found)}
    out.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        dists = list(pool.map(lambda item: build_one(item[0], item[1], out), selected.items()))
    for dist in dists:
        print(f"{dist.relative_to(out.parent) if out.parent in dist.parents else dist}: "
              f"student/{dist.name}.ipynb, autograder/{autograder_zip(dist).name}")
    return dists


def autograder_zip(dist: Path) -> Path:
    zips = sorted((dist / "autograder").glob("*-autograder_*.zip"))
    if not zips:
        raise FileNotFoundError(f"no autograder zip in {dist / 'autograder'}: run build first")
    return zips[-1]


def submissions(paths: list[Path]) -> list[Path]:
    found = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
        elif path.suffix == ".ipynb" and path.exists():
            found.append(path)
        else:
            raise SystemExit(f"{path}: not a notebook or a folder of notebooks")
    if not found:
        raise SystemExit("no submitted notebooks found")
    return found


def questions(dist: Path) -> list[str]:
    """The assignment's exercises, in notebook order (its grader.check cells)."""
    nb = nbformat.read(dist / "autograder" / f"{dist.name}.ipynb", as_version=4)
    found = [re.match(r'grader\.check\("([^"]+)"\)', c.source.strip()) for c in nb.cells
             if c.cell_type == "code"]
    return [m.group(1) for m in found if m]


def points(dist: Path) -> dict[str, float]:
    """Points each exercise is worth, public and hidden checks together (the autograder's)."""
    from otter.test_files.exception_test import ExceptionTestFile

    return {p.stem: float(ExceptionTestFile.from_file(str(p)).possible)
            for p in sorted((dist / "autograder" / "tests").glob("*.py"))}


def first_failure(output: str) -> str:
    """The line of otter's output that says why a check failed (for a failed property, with
    what was measured: 'SystemExit(3): the code called sys.exit()' names its own cause)."""
    match = re.search(r"^\s*((?:CheckFailed|AssertionError|IntegrityError|"
                      r"\w+(?:Error|Exit|Exception|Interrupt))\b.*)$", output, re.M)
    if not match:
        return "failed"
    line = match.group(1).strip()
    measured = re.search(r"^\s*measured: (.*)$", output[match.end():], re.M)
    if line.startswith("CheckFailed") and measured:
        line += f" (measured: {measured.group(1).strip()})"
    return line


# ---------------------------------------------------------------------------------------------
# Grading one notebook: a guarded kernel, a time limit on every process it starts

GUARD_STARTUP = """\
# Written by tools/assignments.py grade: runs in the grading kernel before the notebook.
from skiplab.checks.integrity import install_grading_guard

install_grading_guard()
del install_grading_guard
"""
RUN_TOKEN = "SKIPLAB_GRADING_RUN"


def become_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants (Linux), so that a process
    that double-forks and calls setsid() to leave the grader's tree is re-parented here,
    where :class:`ProcessTree` still finds it. False where the system has no such call."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0      # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


class ProcessTree:
    """Every process one grading run starts: the otter process, its kernel (which runs in a
    session of its own) and whatever the submission starts, including processes that call
    setsid() to leave the process group. Followed by polling: the descendants of the root,
    and the orphans re-parented to this grader (see :func:`become_subreaper`) that carry the
    run's token in their environment. ``kill`` kills every process seen, if still alive."""

    def __init__(self, root_pid: int, token: str):
        import psutil

        self.psutil = psutil
        self.root_pid, self.token = root_pid, token
        self.seen: dict[int, float] = {}
        self.scan()

    def _ours(self, process: object) -> bool:
        try:
            return process.environ().get(RUN_TOKEN) == self.token   # type: ignore[attr-defined]
        except self.psutil.Error:
            return False

    def scan(self) -> None:
        psutil = self.psutil
        found = []
        try:
            root = psutil.Process(self.root_pid)
            found = [root, *root.children(recursive=True)]
        except psutil.Error:
            pass
        try:
            found += [p for p in psutil.Process().children(recursive=True)
                      if p.pid not in self.seen and self._ours(p)]
        except psutil.Error:
            pass
        for process in found:
            try:
                self.seen.setdefault(process.pid, process.create_time())
            except psutil.Error:
                pass

    def kill(self) -> int:
        """Kill every process seen (and any new descendant); return how many were alive."""
        psutil = self.psutil
        self.scan()
        alive = []
        for pid, created in self.seen.items():
            try:
                process = psutil.Process(pid)
                if process.create_time() == created:
                    process.kill()
                    alive.append(process)
            except psutil.Error:
                pass
        psutil.wait_procs(alive, timeout=5)
        return len(alive)


def guarded_environment(tmp: Path, token: str) -> dict[str, str]:
    """The environment of ``otter run``: IPython's startup folder holds the grading guard
    (:func:`skiplab.checks.integrity.install_grading_guard`), which every kernel started
    for the notebook runs before its first cell; the token marks the run's processes."""
    startup = tmp / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-skiplab-grading-guard.py").write_text(GUARD_STARTUP, encoding="utf8")
    return {**os.environ, "IPYTHONDIR": str(tmp / "ipython"), RUN_TOKEN: token}


def read_results(path: Path, output: str, returncode: int, questions: list[str]) -> dict:
    """Scores, failed checks and error of one graded notebook, from otter's results.json."""
    from skiplab.checks.integrity import GUARD_REPORT_PREFIX

    def error(reason: str) -> dict:
        return {"scores": {}, "failed": [], "error": f"not graded: {reason}"}

    if returncode != 0 or not path.exists():
        lines = [ln.strip() for ln in output.splitlines()
                 if re.match(r"\s*[\w.]*(Error|Exception)\b", ln)]
        return error(lines[-1] if lines else f"otter run exited with {returncode}")
    data = json.loads(path.read_text(encoding="utf8"))
    tests = data.get("tests", [])
    crashed = next((t for t in tests if t.get("name") == "Autograder Exception"), None)
    if crashed is not None or any(t.get("name") == "Autograder Failed" for t in tests):
        lines = [ln.strip() for ln in (crashed or {}).get("output", "").splitlines()
                 if ln.strip()]
        return error("otter could not collect the results"
                     + (f" ({lines[-1]})" if lines else ""))
    report = data.get("output") or ""
    if GUARD_REPORT_PREFIX not in report:
        return error("the grading guard did not report (was it disabled by the submission?)")
    if "changed" in report:
        return error("the submission changed the grading environment: "
                     + report.split(":", 1)[1].replace("changed:", "").strip())
    scores, failed = {}, []
    for test in tests:
        if "score" not in test:          # otter's summary of the public checks
            continue
        scores[test["name"]] = (test["score"], test["max_score"])
        if test["score"] < test["max_score"]:
            failed.append(f"{test['name']}: {first_failure(test.get('output', ''))}")
    missing = [q for q in questions if q not in scores]
    if missing:
        return error(f"no result for {', '.join(missing)}")
    return {"scores": scores, "failed": failed, "error": ""}


# ---------------------------------------------------------------------------------------------
# SANDBOX=1: each grading run inside bubblewrap (no network, the file system read-only)

SANDBOX_HELP = ("grade in a container instead (book/teachers.md, 'Grading in a container'), or "
                "install bubblewrap where user namespaces are allowed (apt-get install bubblewrap)")


def sandbox_available() -> None:
    """Raise SystemExit, saying why, when bubblewrap cannot run a sandbox here."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SystemExit(f"make grade SANDBOX=1: bubblewrap (bwrap) is not installed; "
                         f"{SANDBOX_HELP}.")
    probe = subprocess.run([bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                            "--unshare-net", "--unshare-pid", "--die-with-parent", "true"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        raise SystemExit(f"make grade SANDBOX=1: bubblewrap cannot create its sandbox here "
                         f"({probe.stderr.strip() or f'exit status {probe.returncode}'}); "
                         f"{SANDBOX_HELP}.")


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def sandboxed(command: list[str], scratch: Path, inputs: Path, hide: list[Path]) -> list[str]:
    """``command`` inside bubblewrap: no network (its own, empty network namespace: loopback
    only, for the kernel's sockets), its own process namespace (everything in it dies with
    it), the whole file system read-only, and writable only ``scratch`` (and an empty private
    /tmp and /dev/shm). ``inputs`` (the submission and the autograder, copied) is read-only.
    /tmp, $HOME and the folders in ``hide`` (the other submissions) are replaced by empty
    folders, except the Python environment and this checkout, which grading needs."""
    needed = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, ROOT)}
    needed |= {Path(p).resolve() for p in sys.path if p and Path(p).is_dir()}
    hidden = [h for h in dict.fromkeys([Path("/tmp"), Path.home().resolve(),
                                        *(h.resolve() for h in hide)]) if h != Path("/")]
    args = [shutil.which("bwrap") or "bwrap", "--die-with-parent", "--new-session",
            "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
            "--tmpfs", "/dev/shm"]
    for folder in hidden:
        if folder.is_dir():
            args += ["--tmpfs", str(folder)]
    for folder in sorted(needed):       # what grading needs, back where a tmpfs hid it
        if any(_inside(folder, h) for h in hidden):
            args += ["--ro-bind", str(folder), str(folder)]
    args += ["--bind", str(scratch), str(scratch), "--ro-bind", str(inputs), str(inputs),
             "--setenv", "HOME", str(scratch / "home"), "--setenv", "TMPDIR", "/tmp",
             "--chdir", str(scratch), "--", *command]
    return args


def grade_one(path: Path, zip_path: Path, timeout: float,
              questions: list[str] | None = None, *, sandbox: bool = False,
              hide: list[Path] | None = None) -> dict:
    """Grade one notebook with ``otter run`` in its own process (a fresh kernel, no Docker),
    the kernel guarded (see :func:`guarded_environment`), at most ``timeout`` seconds; then
    every process the run started is killed, those that left its process group included.
    With ``sandbox``, the run is inside bubblewrap (see :func:`sandboxed`): no network, and
    it can write only to a scratch folder, deleted afterwards.

    Returns {question: (score, possible)} under "scores", the failed checks under "failed"
    and, when the notebook could not be graded at all, the reason under "error"."""
    import uuid

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        out = tmp / "out"
        out.mkdir()
        token = uuid.uuid4().hex
        log = tmp / "otter.log"
        env = guarded_environment(tmp, token)
        if sandbox:
            inputs = tmp / "input"
            inputs.mkdir()
            (tmp / "home").mkdir()
            zip_path = Path(shutil.copy(zip_path, inputs / zip_path.name))
            path = Path(shutil.copy(path, inputs / path.name))
        command = [sys.executable, "-m", "otter", "run", "-a", str(zip_path), "-o", str(out),
                   str(path)]
        if sandbox:
            command = sandboxed(command, tmp, tmp / "input", hide or [])
        with open(log, "w", encoding="utf8") as sink:
            process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT,
                                       env=env, start_new_session=True)
            tree = ProcessTree(process.pid, token)
            deadline = time.monotonic() + timeout
            try:
                while process.poll() is None and time.monotonic() < deadline:
                    tree.scan()
                    time.sleep(0.2)
                timed_out = process.poll() is None
            finally:
                tree.kill()
                process.wait()
        if timed_out:
            return {"scores": {}, "failed": [], "error": f"not graded: ran over {timeout:g} s"}
        output = log.read_text(encoding="utf8", errors="replace")
        return read_results(out / "results.json", output, process.returncode,
                            questions or [])


def grade(name: str, paths: list[Path], out: Path, csv_path: Path | None, *, jobs: int = 2,
          timeout: float = 600.0, sandbox: bool = False) -> list[dict]:
    """Grade each submission with the assignment's autograder; one row per submission.

    Columns: submission, points per exercise, total, possible, failed (the first failing
    check of each exercise that lost points, with what it measured), error (why a notebook
    could not be graded: not a notebook, over ``timeout`` seconds, the grading environment
    changed by the submission, results otter could not collect). A notebook that could not
    be graded scores 0 of the assignment's points. Rows are printed and written as they
    come. With ``sandbox``, each run is inside bubblewrap (:func:`sandboxed`); SystemExit
    before grading anything when bubblewrap cannot work here."""
    if sandbox:
        sandbox_available()
    become_subreaper()
    dist = out / name
    zip_path = autograder_zip(dist)
    names = questions(dist)
    possible = sum(points(dist).values())
    possible = int(possible) if float(possible).is_integer() else possible
    columns = ["submission", *names, "total", "possible", "failed", "error"]
    found = submissions(paths)
    writers = [csv.DictWriter(sys.stdout, fieldnames=columns)]
    handle = None
    if csv_path is not None:
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(csv_path, "w", newline="", encoding="utf8")
        writers.append(csv.DictWriter(handle, fieldnames=columns))
    rows = []
    try:
        for writer in writers:
            writer.writeheader()
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            hide = [p if p.is_dir() else p.parent for p in paths]
            graded = pool.map(lambda p: (p, grade_one(p, zip_path, timeout, names,
                                                      sandbox=sandbox, hide=hide)), found)
            for path, result in graded:
                row = {"submission": str(path), "failed": "; ".join(result["failed"]),
                       "error": result["error"]}
                for question in names:
                    row[question] = result["scores"].get(question, (0, None))[0]
                row.update(total=sum(row[q] for q in names), possible=possible)
                rows.append(row)
                for writer in writers:
                    writer.writerow(row)
                if handle is not None:
                    handle.flush()
    finally:
        if handle is not None:
            handle.close()
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="student notebooks and autograders for the chapters")
    b.add_argument("names", nargs="*", help="assignments to build (default: every chapter's)")
    b.add_argument("--out", type=Path, default=DEFAULT_OUT)
    b.add_argument("--jobs", type=int, default=2, help="otter assign runs side by side")
    g = sub.add_parser("grade", help="grade submitted notebooks into a score table")
    g.add_argument("name", help="the assignment (a chapter's notebook name, e.g. resnet)")
    g.add_argument("submissions", nargs="+", type=Path, help="notebooks or folders of them")
    g.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where build wrote them")
    g.add_argument("--csv", type=Path, default=None, help="write the table here too")
    g.add_argument("--jobs", type=int, default=2, help="notebooks graded side by side")
    g.add_argument("--timeout", type=float, default=600.0,
                   help="seconds one notebook may run before it counts as not graded")
    g.add_argument("--sandbox", action="store_true",
                   help="grade each notebook inside bubblewrap: no network, read-only files")
    args = parser.parse_args(argv)
    if args.command == "build":
        build(args.out.resolve(), args.names, args.jobs)
    else:
        grade(args.name, args.submissions, args.out.resolve(), args.csv, jobs=args.jobs,
              timeout=args.timeout, sandbox=args.sandbox)


if __name__ == "__main__":
    main()
