"""CONTRIBUTING.md's code runs as written, and the commands it names exist."""

import re
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
GUIDE = (ROOT / "CONTRIBUTING.md").read_text()


def test_the_train_something_example_runs_and_resumes(tmp_path, monkeypatch):
    (example,) = re.findall(r"## Train something.*?```python\n(.*?)```", GUIDE, re.S)
    monkeypatch.chdir(tmp_path)                       # the example writes run.pt
    torch.manual_seed(0)
    x, x_test = torch.randn(128, 3), torch.randn(32, 3)
    w = torch.randn(3, 1)
    scope = {"model": nn.Linear(3, 1), "x": x, "y": x @ w, "x_test": x_test,
             "y_test": x_test @ w}
    exec(compile(example, "CONTRIBUTING.md", "exec"), scope)
    history = scope["history"]
    assert history.step[-1] == 500 and history.last("mse") < history.metrics["mse"][0]
    assert (tmp_path / "run.pt").exists()


def test_the_guides_commands_and_files_exist():
    for target in re.findall(r"`make (\w+)", GUIDE):
        assert re.search(rf"^{target}:", (ROOT / "Makefile").read_text(), re.M), target
    for path in re.findall(r"`((?:tests|tools|benchmarks|src/skiplab|book)/[\w/.]+\.(?:py|bib))`",
                           GUIDE):
        assert (ROOT / path).exists(), path
