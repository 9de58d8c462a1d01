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


def test_setup_cell_installs_the_release_of_this_version():
    """The cell installs the tag v<skiplab.__version__>, never a moving branch."""
    import skiplab

    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    source = setup_cell.canonical_source()
    assert f"git+{config['repository']['url']}@v{skiplab.__version__}\"" in source
    assert "@main" not in source and "@master" not in source
    assert 'find_spec("skiplab") is None' in source


def test_version_is_written_once():
    """pyproject.toml reads the version from skiplab.__version__ instead of repeating it."""
    import importlib.metadata

    import skiplab

    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and 'version = "' not in pyproject
    assert importlib.metadata.version("skiplab") == skiplab.__version__


def test_setup_cell_stops_with_a_message_when_the_install_fails():
    """Simulate a failed %pip in a kernel without skiplab: the cell raises, naming the tag."""
    source = setup_cell.canonical_source().replace("%pip install", "pass  #")
    real_find_spec = __import__("importlib.util").util.find_spec

    def missing(name, *args):
        return None if name == "skiplab" else real_find_spec(name, *args)

    import importlib.util
    original = importlib.util.find_spec
    importlib.util.find_spec = missing
    try:
        with pytest.raises(RuntimeError, match=rf"Installing skiplab {setup_cell.release_tag()}"):
            exec(compile(source, "setup-cell", "exec"), {})
    finally:
        importlib.util.find_spec = original


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
