"""Structure of the book's notebooks: the contract every chapter keeps (no execution here)."""

import json
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import setup_cell  # noqa: E402

NOTEBOOKS = setup_cell.notebooks()


def toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [c["file"] for c in part.get("chapters", [])]
    return files


def test_there_are_chapters():
    assert NOTEBOOKS, "no notebooks under book/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_first_cell_is_the_canonical_setup_cell(path):
    assert setup_cell.first_cell_ok(path), "run `python tools/setup_cell.py` to sync it"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_without_outputs(path):
    nb = json.loads(path.read_text())
    stored = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code" and c["outputs"]]
    assert not stored, f"cells {stored} carry outputs; the build executes notebooks"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_is_in_the_toc(path):
    assert str(path.relative_to(ROOT).with_suffix("")) in toc_files()


def test_setup_cell_installs_from_the_configured_repository():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    source = setup_cell.canonical_source()
    assert f"git+{config['repository']['url']}@{config['repository']['branch']}" in source
    assert 'find_spec("skiplab") is None' in source


def test_setup_cell_does_nothing_where_skiplab_imports(monkeypatch):
    """Run the cell's logic outside IPython: with skiplab importable, %pip is never reached."""
    source = setup_cell.canonical_source().replace("%pip install", "raise SystemExit  #")
    exec(compile(source, "setup-cell", "exec"), {})


def test_colab_launch_configuration():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert config["repository"]["branch"] == "main"
    assert config["repository"]["path_to_book"] == ""
    assert config["execute"]["raise_on_error"] is True
