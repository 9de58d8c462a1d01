"""The grading guard (skiplab.checks.integrity): a snapshot of what the checkers rely on
notices a submission that replaced a checker or a torch function, and the patched otter
test runner lets a sys.exit() cost only the test it happens in.

The end-to-end cases (``make grade`` on such notebooks) are in tests/test_assignments.py;
here the guard runs in a subprocess, so that its patches stay out of the test process."""

from __future__ import annotations

import builtins
import subprocess
import sys
import textwrap

import pytest
import torch
from test_checks_arch import RefBlock
from test_checks_identity import ReZeroBlock

import skiplab.checks
import skiplab.checks.basic_block
import skiplab.checks.core
import skiplab.checks.zero_gate
from skiplab.checks import check_basic_block, check_rezero_block
from skiplab.checks.integrity import Snapshot


@pytest.fixture(scope="module")
def snapshot() -> Snapshot:
    return Snapshot.take()


@pytest.mark.parametrize("check, solution", [(check_basic_block, RefBlock),
                                             (check_rezero_block, ReZeroBlock)],
                         ids=["basic block", "rezero block"])
def test_nothing_changes_when_the_checks_run(snapshot, check, solution):
    check(solution, hidden=True)
    assert snapshot.changes() == []


@pytest.mark.parametrize("owner, name, key", [
    (skiplab.checks, "check_gated_head", "skiplab.checks.check_gated_head replaced"),
    (skiplab.checks, "check_rezero_block", "skiplab.checks.check_rezero_block replaced"),
    (skiplab.checks.zero_gate, "gate_mistake", "skiplab.checks.zero_gate.gate_mistake replaced"),
    (torch, "allclose", "torch.allclose replaced"),
    (torch, "equal", "torch.equal replaced"),
    (builtins, "isinstance", "builtins.isinstance replaced"),
    (skiplab.checks.basic_block, "_CASES", "skiplab.checks.basic_block._CASES replaced"),
    (skiplab.checks.core.Checker, "fail", "skiplab.checks.core.Checker.fail replaced"),
    (torch.nn.Conv2d, "forward", "torch.nn.modules.conv.Conv2d.forward replaced"),
])
def test_a_replaced_object_is_named(snapshot, monkeypatch, owner, name, key):
    original = getattr(owner, name)
    if callable(original):     # a stand-in that still works, so that the test run goes on
        def stand_in(*args, **kwargs):
            return original(*args, **kwargs)
    else:
        stand_in = tuple(list(original))
    monkeypatch.setattr(owner, name, stand_in)
    assert key in snapshot.changes()


def test_a_method_that_shadows_an_inherited_one_is_named(snapshot, monkeypatch):
    monkeypatch.setattr(torch.Tensor, "allclose", lambda *args, **kwargs: True, raising=False)
    assert "torch.Tensor.allclose added" in snapshot.changes()


def test_new_code_in_an_old_function_is_named(snapshot, monkeypatch):
    check = skiplab.checks.basic_block.check_basic_block
    inner = check.__wrapped__
    monkeypatch.setattr(inner, "__code__", (lambda block_cls, hidden=False: "ok").__code__)
    assert any("basic_block" in c and "changed" in c for c in snapshot.changes())


def test_a_replaced_module_is_named(snapshot, monkeypatch):
    monkeypatch.setitem(sys.modules, "skiplab.checks", type(sys)("skiplab.checks"))
    assert "sys.modules['skiplab.checks'] replaced" in snapshot.changes()


GUARDED_RUN = """\
import pathlib, sys, tempfile
from skiplab.checks.integrity import install_grading_guard
install_grading_guard()

from otter.test_files import GradingResults
from otter.test_files.exception_test import ExceptionTestFile

folder = pathlib.Path(tempfile.mkdtemp())
def test_file(name, body):
    (folder / f"{name}.py").write_text(
        "from otter.test_files import test_case\\nOK_FORMAT = False\\n"
        f"name = {name!r}\\npoints = 1\\n@test_case(points=1)\\ndef test_it(fn):\\n"
        + "".join(f"    {line}\\n" for line in body.splitlines()))
    return ExceptionTestFile.from_file(str(folder / f"{name}.py"))

def exits():
    sys.exit(3)

def tampers():
    import torch
    torch.allclose = lambda *a, **k: True

files = [test_file("exits", "fn()"), test_file("fine", "assert 1 + 1 == 2"),
         test_file("tampers", "fn()"), test_file("after", "assert True")]
envs = [{"fn": exits}, {}, {"fn": tampers}, {}]
for f, env in zip(files, envs):
    f.run(env)
    print(f.name, f.score, f.test_case_results[0].message.splitlines()[-1])
print(GradingResults(files).output)
"""


def test_the_guard_in_a_kernel_like_process():
    """sys.exit() fails its own test only; a tampering test and every later one are refused,
    and the results say the environment changed."""
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(GUARDED_RUN)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("exits 0 SystemExit: the code called sys.exit(3)")
    assert lines[1].startswith("fine 1")
    assert lines[2].startswith("tampers 0 IntegrityError") and "torch.allclose" in lines[2]
    assert lines[3].startswith("after 0 IntegrityError")
    assert lines[4].startswith("skiplab grading guard: changed")
