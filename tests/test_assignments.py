"""`make assignments` and `make grade`: the chapters' exercises as otter-grader assignments.

Builds every assignment once (otter assign runs each exercise's checks on its solution while
it builds), then: each student notebook, executed unfinished as a student would first run
it, shows a check failure that names the property, not a crash; grading a solved student
notebook gives full marks, an unfinished or wrong one zero; hidden checks stay out of the
student's copy and call the checkers with their hidden sizes; a sys.exit() costs only its
exercise, tampering with the checks is reported, and the time limit kills every process
the notebook started.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import assignments  # noqa: E402
import setup_cell  # noqa: E402

EXPECTED = {"gradient_flow": ["gradient_probe"], "degradation": ["delete_block"],
            "symmetry": ["permutation", "function_change"], "landscape": ["filter_normalise"],
            "resnet": ["basic_block"], "densenet": ["dense_layer"],
            "unet": ["crop_and_concat"], "transformer": ["prenorm_block"],
            "identity": ["rezero_block"], "heads": ["gated_head"]}


def tags(cell) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("assignments")
    result = subprocess.run(["make", "-s", "assignments", f"ASSIGNMENTS={out}"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def solved_copy(built: Path, name: str, target: Path) -> Path:
    """The student notebook with each answer cell replaced by the solution, as a student
    who got everything right would hand it in."""
    student = nbformat.read(built / name / "student" / f"{name}.ipynb", as_version=4)
    solved = nbformat.read(built / name / "autograder" / f"{name}.ipynb", as_version=4)
    answers = [c for c in student.cells if "otter_answer_cell" in tags(c)]
    solutions = [c for c in solved.cells if "otter_assign_solution_cell" in tags(c)]
    assert answers and len(answers) == len(solutions)
    for answer, solution in zip(answers, solutions):
        answer.source = solution.source
    nbformat.write(student, target)
    return target


def test_every_chapter_with_exercises_has_an_assignment(built):
    assert set(assignments.chapters()) == set(EXPECTED)
    for name, questions in EXPECTED.items():
        dist = built / name
        student = nbformat.read(dist / "student" / f"{name}.ipynb", as_version=4)
        code = [c.source for c in student.cells if c.cell_type == "code"]
        text = "\n".join(c.source for c in student.cells)
        assert '_pip_install("--no-deps"' in code[0] and '"otter-grader==7.0.0"' in code[0]
        assert f"@{setup_cell.release_tag()}\")" in code[0], "install the book's release tag"
        assert "PUBLIC_CHECKS = {\n" in code[0]
        assert "BEGIN SOLUTION" not in text and "# BEGIN" not in text
        assert not any("book-only" in tags(c) or "remove-cell" in tags(c) for c in student.cells)
        assert assignments.autograder_zip(dist).stat().st_size > 0
        for question in questions:
            assert f"'{question}.py'" in code[0]
            assert f'grader.check("{question}")' in code
            assert f"test_{question}_hidden" not in text, "a hidden check leaked into the notebook"
            hidden = (dist / "autograder" / "tests" / f"{question}.py").read_text()
            assert "hidden=True" in hidden
            public = (dist / "student" / "tests" / f"{question}.py").read_text()
            assert "hidden=True" not in public


def test_solutions_are_removed_from_the_student_notebook(built):
    chapter = nbformat.read(assignments.chapters()["resnet"], as_version=4)
    solution = next(c.source for c in chapter.cells if "hide-input" in tags(c)
                    and "class BasicBlock" in c.source)
    key_line = "return torch.relu(self.bn2(self.conv2(h)) + self.shortcut(x))"
    assert key_line in solution
    student = (built / "resnet" / "student" / "resnet.ipynb").read_text()
    assert "class BasicBlock(nn.Module)" in student and "bn2" not in student


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_an_unfinished_student_notebook_names_the_failed_property(built, name, tmp_path):
    """Run top to bottom in a fresh kernel, as a student first would: no cell crashes, and
    the check says which property failed and why."""
    workdir = tmp_path / "colab"
    workdir.mkdir()
    path = workdir / f"{name}.ipynb"
    shutil.copy(built / name / "student" / f"{name}.ipynb", path)   # the notebook alone
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(workdir)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors, errors
    checks = [c for c in nb.cells if c.source.startswith("grader.check(")]
    assert len(checks) == len(EXPECTED[name])
    for check in checks:
        shown = "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                        for o in check.outputs)
        assert "Test case failed" in shown, shown
        assert re.search(r"CheckFailed: \[[^\]]+\] property '[^']+' failed", shown), shown
        assert "expected:" in shown and "measured:" in shown and "hint:" in shown, shown
    assert (workdir / "skiplab_checks" / name).is_dir(), "the setup cell wrote no checks"


def grade(name: str, folder: Path, scores: Path, timeout: int = 600) -> dict[str, dict]:
    result = subprocess.run(
        ["make", "-s", "grade", f"ASSIGNMENT={name}", f"SUBMISSIONS={folder}",
         f"ASSIGNMENTS={folder.parent / 'built'}", f"SCORES={scores}",
         f"GRADE_TIMEOUT={timeout}"],
        cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    with open(scores, newline="") as f:
        return {Path(row["submission"]).stem: row for row in csv.DictReader(f)}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_grading_gives_full_marks_to_a_solution_and_zero_to_an_unfinished_notebook(
        built, name, tmp_path):
    (tmp_path / "built").symlink_to(built)
    folder = tmp_path / "submissions"
    folder.mkdir()
    shutil.copy(built / name / "student" / f"{name}.ipynb", folder / "unfinished.ipynb")
    solved_copy(built, name, folder / "solved.ipynb")
    rows = grade(name, folder, tmp_path / "scores.csv")
    assert set(rows) == {"solved", "unfinished"}
    solved, unfinished = rows["solved"], rows["unfinished"]
    possible = 2 * len(EXPECTED[name])     # each exercise: 1 point public, 1 point hidden
    assert all(float(solved[question]) == 2 for question in EXPECTED[name])
    assert float(solved["possible"]) == possible and not solved["error"]
    assert float(solved["total"]) == possible
    assert float(unfinished["total"]) == 0 and float(unfinished["possible"]) == possible
    assert "CheckFailed" in unfinished["failed"] and not unfinished["error"]


def test_a_wrong_block_scores_zero_and_a_broken_notebook_does_not_stop_grading(built, tmp_path):
    """ReLU on the branch before the addition (a classic mistake) fails the public and the
    hidden check, and the table says which property; a notebook whose code does not even
    run, and a file that is not a notebook, are graded too, with zero."""
    (tmp_path / "built").symlink_to(built)
    folder = tmp_path / "submissions"
    folder.mkdir()
    nb = nbformat.read(solved_copy(built, "resnet", tmp_path / "solved.ipynb"), as_version=4)
    answer = next(c for c in nb.cells if "otter_answer_cell" in tags(c))
    right = "return torch.relu(self.bn2(self.conv2(h)) + self.shortcut(x))"
    assert right in answer.source
    answer.source = answer.source.replace(
        right, "return torch.relu(self.bn2(self.conv2(h))) + self.shortcut(x)")
    nbformat.write(nb, folder / "relu_before_add.ipynb")
    answer.source = "class BasicBlock(nn.Module:\n    pass"
    nbformat.write(nb, folder / "syntax_error.ipynb")
    (folder / "not_a_notebook.ipynb").write_text('{"cells": [')
    rows = grade("resnet", folder, tmp_path / "scores.csv")
    assert set(rows) == {"relu_before_add", "syntax_error", "not_a_notebook"}
    assert all(float(r["total"]) == 0 and float(r["possible"]) == 2 for r in rows.values())
    assert "property 'addition before the final ReLU' failed" in rows["relu_before_add"]["failed"]
    assert not rows["relu_before_add"]["error"] and not rows["syntax_error"]["error"]
    assert rows["not_a_notebook"]["error"].startswith("not graded: ")
    assert "NotJSONError" in rows["not_a_notebook"]["error"]


def test_a_notebook_that_never_ends_is_stopped(built, tmp_path):
    """The time limit stops the notebook and every process it started, including a helper
    that called setsid() to leave the process group (it used to survive)."""
    (tmp_path / "built").symlink_to(built)
    folder = tmp_path / "submissions"
    folder.mkdir()
    nb = nbformat.read(solved_copy(built, "resnet", tmp_path / "solved.ipynb"), as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("while True:\n    pass"))
    nbformat.write(nb, folder / "endless.ipynb")
    pid_file = tmp_path / "helper.pid"
    helper = (f"import os, time; os.setsid(); open({str(pid_file)!r}, 'w')"
              ".write(str(os.getpid())); time.sleep(600)")
    nb.cells[-1] = nbformat.v4.new_code_cell(
        "import subprocess, sys, time\n"
        f"subprocess.Popen([sys.executable, '-c', {helper!r}])\n"
        "while True:\n    time.sleep(0.1)")
    nbformat.write(nb, folder / "helper.ipynb")
    rows = grade("resnet", folder, tmp_path / "scores.csv", timeout=30)
    for name in ("endless", "helper"):
        assert rows[name]["error"] == "not graded: ran over 30 s"
        assert float(rows[name]["total"]) == 0
    import psutil
    pid = int(pid_file.read_text())
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_grade_without_arguments_says_how_to_call_it():
    result = subprocess.run(["make", "-s", "grade"], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "ASSIGNMENT": "", "SUBMISSIONS": ""})
    assert result.returncode != 0 and "usage: make grade ASSIGNMENT=" in result.stdout


def test_an_exercise_section_needs_its_markers(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# T")])
    with pytest.raises(ValueError, match="one cell tagged 'exercises'"):
        assignments.exercise_cells(nb, tmp_path / "x.ipynb")
    nb.cells.append(nbformat.v4.new_markdown_cell("## Exercises", metadata={"tags": ["exercises"]}))
    with pytest.raises(ValueError, match="no '# BEGIN QUESTION'"):
        assignments.exercise_cells(nb, tmp_path / "x.ipynb")


# ---------------------------------------------------------------------------------------------
# Grading a hostile notebook: exits, tampering, processes that leave the group


def test_hidden_checks_call_the_checkers_with_hidden_sizes(built):
    for name, questions in EXPECTED.items():
        for question in questions:
            hidden = (built / name / "autograder" / "tests" / f"{question}.py").read_text()
            assert re.search(r"check_\w+\(\w+, hidden=True\)", hidden), (name, question)
            public = (built / name / "student" / "tests" / f"{question}.py").read_text()
            assert "hidden=True" not in public


def test_hidden_checks_rewrite_only_hidden_test_cells():
    hidden = ('""" # BEGIN TEST CONFIG\nhidden: true\n""" # END TEST CONFIG\n'
              "check_x(F)\ncheck_y(F, 2)")
    assert assignments.hidden_checks(hidden).endswith("check_x(F, hidden=True)\ncheck_y(F, 2)")
    public = hidden.replace("hidden: true", "points: 1")
    assert assignments.hidden_checks(public) == public


def test_first_failure_says_what_was_measured():
    output = ("Error at line 3 in test basic_block:\n    check_basic_block(BasicBlock)\n"
              "CheckFailed: [basic block] property 'forward runs' failed\n"
              "  expected: it runs\n  measured: SystemExit(3): the code called sys.exit()\n"
              "  hint: remove it")
    assert assignments.first_failure(output) == (
        "CheckFailed: [basic block] property 'forward runs' failed (measured: SystemExit(3): "
        "the code called sys.exit())")
    assert assignments.first_failure("❌ Test case failed\nSystemExit: the code called "
                                     "sys.exit(3)").startswith("SystemExit")


def write_results(folder: Path, tests: list[dict], output: str | None) -> Path:
    import json
    path = folder / "results.json"
    path.write_text(json.dumps({"tests": tests, **({"output": output} if output else {})}))
    return path


def test_read_results_reports_what_stopped_grading(tmp_path):
    ok = [{"name": "q", "score": 1, "max_score": 2, "output": "AssertionError: no"}]
    verified = "skiplab grading guard: verified"
    row = assignments.read_results(write_results(tmp_path, ok, verified), "", 0, ["q"])
    assert row == {"scores": {"q": (1, 2)}, "failed": ["q: AssertionError: no"], "error": ""}
    crashed = [{"name": "Autograder Failed", "output": "..."},
               {"name": "Autograder Exception", "output": "Traceback\nSystemExit: 3"}]
    row = assignments.read_results(write_results(tmp_path, crashed, None), "", 0, ["q"])
    assert row["error"] == "not graded: otter could not collect the results (SystemExit: 3)"
    row = assignments.read_results(write_results(tmp_path, ok, None), "", 0, ["q"])
    assert row["error"].startswith("not graded: the grading guard did not report")
    changed = "skiplab grading guard: changed: torch.allclose replaced"
    row = assignments.read_results(write_results(tmp_path, ok, changed), "", 0, ["q"])
    assert row["error"] == ("not graded: the submission changed the grading environment: "
                            "torch.allclose replaced")
    row = assignments.read_results(write_results(tmp_path, ok, verified), "", 0, ["q", "r"])
    assert row["error"] == "not graded: no result for r"


ESCAPING_HELPERS = """\
import json, os, subprocess, sys, time
sys.path.insert(0, {tools!r})
import assignments

assignments.become_subreaper()
helper = (
    "import os, sys, time\\n"
    "if os.fork() == 0:\\n"                    # a daemon: double fork, new session
    "    os.setsid()\\n"
    "    if os.fork() == 0:\\n"
    "        open(sys.argv[1] + '.daemon', 'w').write(str(os.getpid())); time.sleep(300)\\n"
    "    os._exit(0)\\n"
    "os.setsid()\\n"                            # and this process leaves the group too
    "open(sys.argv[1] + '.setsid', 'w').write(str(os.getpid())); time.sleep(300)\\n")
token = "t0ken"
root = subprocess.Popen([sys.executable, "-c", helper, {stem!r}],
                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        env={{**os.environ, assignments.RUN_TOKEN: token}})
tree = assignments.ProcessTree(root.pid, token)
deadline = time.time() + 30
try:
    while not all(os.path.exists({stem!r} + s) for s in (".daemon", ".setsid")):
        assert time.time() < deadline, "the helper did not start"
        tree.scan()
        time.sleep(0.1)
    time.sleep(0.3)
finally:
    tree.kill()
import psutil
pids = [int(open({stem!r} + s).read()) for s in (".daemon", ".setsid")]
alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
print(json.dumps(alive))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="setsid and prctl: Linux")
def test_the_time_limit_kills_processes_that_left_the_group(tmp_path):
    """A helper that calls setsid(), and a daemon that double-forks out of the tree, are
    found (the grader is their subreaper, they carry the run's token) and killed."""
    script = ESCAPING_HELPERS.format(tools=str(ROOT / "tools"), stem=str(tmp_path / "pid"))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def answer_cell(nb, marker: str):
    return next(c for c in nb.cells if "otter_answer_cell" in tags(c) and marker in c.source)


def test_an_exit_costs_only_its_own_exercise(built, tmp_path):
    """sys.exit() inside the permutation, reached only by its hidden check's own code
    (width 16): that hidden check fails and the table says why; the public check and the
    other exercise keep their points (the exit used to zero the whole notebook, with empty
    failed and error columns)."""
    (tmp_path / "built").symlink_to(built)
    folder = tmp_path / "submissions"
    folder.mkdir()
    nb = nbformat.read(solved_copy(built, "symmetry", tmp_path / "solved.ipynb"), as_version=4)
    answer = answer_cell(nb, "def permute_hidden_units")
    answer.source = answer.source.replace(
        '"""\n', '"""\n    if perm.numel() == 16:\n        import sys\n        sys.exit(3)\n', 1)
    assert "sys.exit(3)" in answer.source
    nbformat.write(nb, folder / "exits.ipynb")
    row = grade("symmetry", folder, tmp_path / "scores.csv")["exits"]
    assert not row["error"], row
    assert float(row["permutation"]) == 1 and float(row["function_change"]) == 2
    assert "permutation: SystemExit: the code called sys.exit(3)" in row["failed"]


def test_tampering_with_the_checks_is_reported(built, tmp_path):
    """A notebook that replaces the checker, or torch.allclose, is not graded, and the
    error column names what it replaced."""
    (tmp_path / "built").symlink_to(built)
    folder = tmp_path / "submissions"
    folder.mkdir()
    solved = solved_copy(built, "heads", tmp_path / "solved.ipynb")
    tampering = {
        "checker": "import skiplab.checks\n"
                   "skiplab.checks.check_gated_head = lambda *args, **kwargs: 'passed'",
        "allclose": "import torch\ntorch.allclose = lambda *args, **kwargs: True",
    }
    for name, code in tampering.items():
        nb = nbformat.read(solved, as_version=4)
        first = next(i for i, c in enumerate(nb.cells) if "otter_answer_cell" in tags(c))
        nb.cells.insert(first, nbformat.v4.new_code_cell(code))
        nbformat.write(nb, folder / f"{name}.ipynb")
    rows = grade("heads", folder, tmp_path / "scores.csv")
    for name, replaced in (("checker", "skiplab.checks.check_gated_head replaced"),
                           ("allclose", "torch.allclose replaced")):
        assert float(rows[name]["total"]) == 0, rows[name]
        assert rows[name]["error"].startswith("not graded: the submission changed the grading "
                                              "environment: "), rows[name]
        assert replaced in rows[name]["error"]


# ---------------------------------------------------------------------------------------------
# Gradescope: what the autograder zip installs


def test_the_autograder_zip_carries_what_gradescope_installs(built, tmp_path):
    """Unzipped as Gradescope does: otter's run_autograder and setup.sh, the checks (hidden
    ones included) and otter_config.json, and the environment setup.sh creates. otter 7.0.0
    writes no requirements.txt into the zip: it adds the assignment's requirements to the pip
    list of environment.yml, which setup.sh installs (mamba env create); there they must be
    torch's CPU build at the book's version and skiplab at the book's release tag, and git
    (for the git+ requirement) among the conda packages."""
    import zipfile

    import yaml
    from packaging.requirements import Requirement

    url = setup_cell.repository()
    skiplab = f"skiplab @ git+{url}@{setup_cell.release_tag()}"
    torch = f"torch=={assignments.book_torch()}"
    for name, questions in EXPECTED.items():
        folder = tmp_path / name
        with zipfile.ZipFile(assignments.autograder_zip(built / name)) as zf:
            zf.extractall(folder)
        files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
        assert {"run_autograder", "run_otter.py", "setup.sh", "environment.yml",
                "otter_config.json"} <= files, files
        assert {f"tests/{q}.py" for q in questions} <= files, files
        for question in questions:
            assert "hidden=True" in (folder / "tests" / f"{question}.py").read_text()
        setup = (folder / "setup.sh").read_text()
        assert "mamba env create -f /autograder/source/environment.yml" in setup
        assert "python /autograder/source/run_otter.py" in (folder / "run_autograder").read_text()
        json_config = (folder / "otter_config.json").read_text()
        assert '"token"' not in json_config
        environment = yaml.safe_load((folder / "environment.yml").read_text())
        conda = [d for d in environment["dependencies"] if isinstance(d, str)]
        pip = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict))
        assert "git" in conda and "pip" in conda and any(d.startswith("python=") for d in conda)
        assert f"--extra-index-url {assignments.TORCH_CPU_INDEX}" in pip
        assert assignments.TORCH_CPU_INDEX == "https://download.pytorch.org/whl/cpu"
        assert torch in pip and skiplab in pip, pip
        assert "otter-grader[grading,plugins]==7.0.0" in pip
        for line in pip:                   # each line is what pip reads from a requirements file
            if not line.startswith("--"):
                Requirement(line)
        beside = (built / name / "autograder" / "requirements.txt").read_text()
        assert beside == assignments.grading_requirements()


# ---------------------------------------------------------------------------------------------
# The student notebook's first cell in a running kernel (Colab)

SETUP_PROBE = """\
import importlib.util, json, os, pathlib, subprocess, sys
site = pathlib.Path(sys.argv[1])
(site / "fakepkg").mkdir()
(site / "fakepkg" / "__init__.py").write_text("")
def dist_info(version):
    info = site / f"fakepkg-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\\nName: fakepkg\\nVersion: {version}\\n")
    (info / "top_level.txt").write_text("fakepkg\\n")
    return info
old = dist_info("1.0")
sys.path.insert(0, str(site))
import fakepkg                        # a package the kernel has already imported
state = {"installed": False, "calls": []}
find_spec = importlib.util.find_spec
importlib.util.find_spec = lambda name, *a: (
    None if name == "otter" and not state["installed"] else find_spec(name, *a))
def fake_pip(args, **kwargs):           # pip: installs otter and, if asked to, upgrades fakepkg
    state["calls"].append(args[3:])
    state["installed"] = True
    if sys.argv[2] == "upgrade":
        import shutil
        shutil.rmtree(old)
        dist_info("2.0")
    return subprocess.CompletedProcess(args, 0, "", "")
subprocess.run = fake_pip
try:
    exec(sys.stdin.read(), {})
    error = ""
except RuntimeError as e:
    error = str(e)
print(json.dumps({"calls": state["calls"], "error": error}))
"""


@pytest.mark.parametrize("pip_upgrades", [False, True])
def test_the_setup_cell_installs_otter_without_changing_the_kernels_packages(
        tmp_path, pip_upgrades):
    """Where otter is missing (Colab), the first cell installs otter-grader with --no-deps and,
    of what grader.check needs, only what is missing (otter's own requirements would replace
    Colab's ipywidgets 7.7.1 with 8.1.9 under the running kernel). If pip still changed a
    package the kernel had imported, the cell stops and asks for a restart. (Measured for
    real in a copy of the Colab venv: see book/teachers.md.)"""
    import json

    nb = assignments.master_notebook("resnet", assignments.chapters()["resnet"])
    setup = nb.cells[2].source.split("PUBLIC_CHECKS =")[0]
    site = tmp_path / "site"
    site.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", SETUP_PROBE, str(site), "upgrade" if pip_upgrades else "add"],
        input=setup, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    (call,) = report["calls"]                       # skiplab imports: only otter is installed
    assert call[:3] == ["install", "--quiet", "--no-deps"] and "otter-grader==7.0.0" in call
    assert not any(arg.startswith(("ipywidgets", "dill", "pandas")) for arg in call), call
    if pip_upgrades:
        assert "fakepkg 1.0 -> 2.0" in report["error"] and "Restart" in report["error"]
    else:
        assert report["error"] == ""


# ---------------------------------------------------------------------------------------------
# SANDBOX=1: grading inside bubblewrap


def bubblewrap_missing() -> str:
    try:
        assignments.sandbox_available()
    except SystemExit as e:
        return str(e)
    return ""


def test_sandbox_stops_with_the_reason_when_bubblewrap_cannot_run(tmp_path, monkeypatch):
    monkeypatch.setattr(assignments.shutil, "which", lambda name: None)
    with pytest.raises(SystemExit, match="bubblewrap .bwrap. is not installed.*container"):
        assignments.sandbox_available()
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\n"
                    "exit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(assignments.shutil, "which", lambda name: str(fake))
    with pytest.raises(SystemExit, match="cannot create its sandbox here .bwrap: No "
                                         "permissions to create new namespace.*container"):
        assignments.sandbox_available()


def test_the_sandbox_is_read_only_and_offline(tmp_path):
    scratch = tmp_path / "scratch"
    args = assignments.sandboxed(["python", "-V"], scratch, scratch / "input",
                                 [tmp_path / "submissions"])
    joined = " ".join(args)
    for flag in ("--unshare-net", "--unshare-pid", "--die-with-parent", "--ro-bind / /",
                 "--tmpfs /tmp", f"--bind {scratch} {scratch}",
                 f"--ro-bind {scratch / 'input'} {scratch / 'input'}"):
        assert flag in joined, flag
    assert args[-3:] == ["--", "python", "-V"]
    # the writable scratch folder comes after the mounts that hide /tmp and $HOME
    assert joined.index("--tmpfs /tmp") < joined.index(f"--bind {scratch}")


ESCAPES = {
    "writes": "pathlib.Path({target!r}).write_text('escaped')",
    "connects": "socket.create_connection(('127.0.0.1', {port}), timeout=5).sendall(b'escaped')",
}


@pytest.mark.skipif(bool(bubblewrap_missing()), reason=bubblewrap_missing() or "-")
def test_sandboxed_grading_refuses_writes_and_the_network_but_grades(built, tmp_path):
    """Under SANDBOX=1 (passed through by the Makefile), a submission that writes into the
    checkout, or connects to a server on the grading machine, is refused, and still gets its
    row: the cell restores the answer only when the attempt failed, so full marks prove the
    refusal (without the sandbox both attempts succeed and score 0, checked by hand)."""
    import socket
    import threading

    (tmp_path / "built").symlink_to(built)
    folder = tmp_path / "submissions"
    folder.mkdir()
    probe = ROOT / "_build" / f"sandbox-probe-{os.getpid()}"
    probe.mkdir(parents=True, exist_ok=True)
    target = probe / "escaped.txt"
    server = socket.create_server(("0.0.0.0", 0))
    server.settimeout(1)
    port, received = server.getsockname()[1], []

    def serve():
        while server.fileno() != -1:
            try:
                received.append(server.accept()[0].recv(100))
            except OSError:
                pass

    threading.Thread(target=serve, daemon=True).start()
    try:
        for name, escape in ESCAPES.items():
            nb = nbformat.read(solved_copy(built, "resnet", tmp_path / "solved.ipynb"),
                               as_version=4)
            answer = next(i for i, c in enumerate(nb.cells) if "otter_answer_cell" in tags(c))
            nb.cells.insert(answer + 1, nbformat.v4.new_code_cell(
                "import pathlib, socket\n"
                "_answer, BasicBlock = BasicBlock, None   # back only if the attempt fails\n"
                f"try:\n    {escape.format(target=str(target), port=port)}\n"
                "except OSError as error:\n    print('refused:', error)\n"
                "    BasicBlock = _answer"))
            nbformat.write(nb, folder / f"{name}.ipynb")
        result = subprocess.run(
            ["make", "-s", "grade", "ASSIGNMENT=resnet", f"SUBMISSIONS={folder}",
             f"ASSIGNMENTS={tmp_path / 'built'}", f"SCORES={tmp_path / 'scores.csv'}",
             "SANDBOX=1"], cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
        with open(tmp_path / "scores.csv", newline="") as f:
            rows = {Path(row["submission"]).stem: row for row in csv.DictReader(f)}
        assert set(rows) == set(ESCAPES)
        for row in rows.values():
            assert float(row["total"]) == 2 and not row["error"] and not row["failed"], row
        assert not target.exists() and not received
    finally:
        server.close()
        shutil.rmtree(probe, ignore_errors=True)
