"""The one canonical setup cell of every chapter notebook, and a tool to keep them in sync.

The cell makes ``skiplab`` importable in a fresh Colab kernel by pip-installing the release the
book was built with (the git tag ``v<version>``, the version written once, as
``skiplab.__version__`` in ``src/skiplab/__init__.py``), and does nothing where ``skiplab``
already imports. When the install fails it stops with a message, so "Run all" halts there
instead of a ``ModuleNotFoundError`` several cells later. The repository's address is read
from ``_config.yml`` (``repository.url``), its only home.

    python tools/setup_cell.py          # rewrite the first cell of every notebook in book/
    python tools/setup_cell.py --check  # exit 1 if any notebook's first cell differs
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
TAGS = ["remove-cell"]

TEMPLATE = '''\
# Setup (hidden in the book): in a fresh kernel such as Colab's, install the skiplab release
# this book was built with; where skiplab already imports (a local checkout, the book's
# build) do nothing.
import importlib.util

if importlib.util.find_spec("skiplab") is None:
    %pip install --quiet "skiplab @ git+{url}@{tag}"
    importlib.invalidate_caches()
    if importlib.util.find_spec("skiplab") is None:
        raise RuntimeError(
            "Installing skiplab {tag} from {url} failed; pip's message is above. "
            "Check that the runtime is online, then run this cell again.")'''


def repository() -> str:
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf8"))
    return config["repository"]["url"].rstrip("/")


def version() -> str:
    """``skiplab.__version__``, read from the source without importing it (no torch needed)."""
    tree = ast.parse((ROOT / "src" / "skiplab" / "__init__.py").read_text(encoding="utf8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets):
            return ast.literal_eval(node.value)
    raise LookupError("src/skiplab/__init__.py sets no __version__")


def release_tag() -> str:
    """The git tag of the release that matches this checkout: ``v`` and the version."""
    return f"v{version()}"


def canonical_source() -> str:
    return TEMPLATE.format(url=repository(), tag=release_tag())


def notebooks() -> list[Path]:
    return sorted(p for p in (ROOT / "book").rglob("*.ipynb")
                  if ".ipynb_checkpoints" not in p.parts)


def first_cell_ok(path: Path) -> bool:
    cell = json.loads(path.read_text(encoding="utf8"))["cells"][0]
    return (cell["cell_type"] == "code" and "".join(cell["source"]) == canonical_source()
            and cell.get("metadata", {}).get("tags") == TAGS)


def write(path: Path) -> None:
    nb = json.loads(path.read_text(encoding="utf8"))
    cell = {"cell_type": "code", "execution_count": None, "id": "skiplab-setup",
            "metadata": {"tags": TAGS}, "outputs": [],
            "source": canonical_source().splitlines(keepends=True)}
    cells = nb["cells"]
    if cells and cells[0].get("id") == "skiplab-setup":
        cells[0] = cell
    else:
        cells.insert(0, cell)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf8")


def main(argv: list[str]) -> int:
    if "--check" in argv:
        bad = [p for p in notebooks() if not first_cell_ok(p)]
        for p in bad:
            print(f"{p.relative_to(ROOT)}: first cell is not the canonical setup cell")
        return 1 if bad else 0
    for p in notebooks():
        write(p)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
