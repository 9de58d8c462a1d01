"""The Makefile's phony targets all exist, and the contributor targets run what they say."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAKEFILE = (ROOT / "Makefile").read_text()


def test_every_phony_target_has_a_rule():
    phony = {name for line in re.findall(r"^\.PHONY:(.*)$", MAKEFILE, re.M)
             for name in line.split()}
    rules = set(re.findall(r"^([A-Za-z][\w-]*):(?!=)", MAKEFILE, re.M))
    assert {"book", "test", "unit", "chapter"} <= phony
    assert phony <= rules, f"phony targets without a rule: {sorted(phony - rules)}"


def test_unit_and_chapter_targets_run_pytest():
    dry = subprocess.run(["make", "-n", "--no-print-directory", "unit", "chapter",
                          "CHAPTER=book/why/symmetry.ipynb"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert re.search(r"pytest tests -m \"not browser\".*--ignore=tests/test_assignments.py", dry)
    assert "--nbval-lax" in dry and "book/why/symmetry.ipynb" in dry
    missing = subprocess.run(["make", "--no-print-directory", "-s", "chapter"], cwd=ROOT,
                             capture_output=True, text=True)
    assert missing.returncode != 0 and "usage: make chapter CHAPTER=" in missing.stdout
