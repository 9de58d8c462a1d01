"""tools/book_pdf.py (`make pdf`) without a browser: which pages it prints, in which order,
and the bookmark titles. The printing itself needs a built book and Chromium (README, "PDF")."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import book_pdf  # noqa: E402


def test_pages_follow_the_table_of_contents(tmp_path):
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    names = [toc["root"]] + [c["file"] for p in toc["parts"] for c in p["chapters"]]
    for name in names:
        (tmp_path / f"{name}.html").parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f"{name}.html").write_text("<title>x</title>")
    assert book_pdf.pages(tmp_path) == [tmp_path / f"{n}.html" for n in names]
    (tmp_path / f"{names[-1]}.html").unlink()
    with pytest.raises(SystemExit, match="make book"):
        book_pdf.pages(tmp_path)


def test_bookmark_title_drops_the_books_name(tmp_path):
    page = tmp_path / "p.html"
    page.write_text("<title>ResNet: skipping by addition &#8212; Skip connections, executed"
                    "</title>")
    assert book_pdf.title(page) == "ResNet: skipping by addition"
