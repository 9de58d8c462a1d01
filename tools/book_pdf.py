"""Print the rendered book into one PDF, in _toc.yml's order, with the Chromium the tests use.

    python tools/book_pdf.py [--html _build/html] [--out _build/pdf/book.pdf]

`make pdf` runs it after `make book`. Each page of _toc.yml (the introduction, every chapter,
the teachers' page, the bibliography) is opened in headless Chromium (driven by Playwright, as
in the browser tests) with print media from the start, so that plotly lays its figures out at
the paper's width; once MathJax has typeset and every figure is drawn, the page is printed
to PDF (A4), and the pages are joined with pypdf, one bookmark per page. Interactive figures
print in the state they are drawn in (the first slider step, the first dropdown choice);
plotly's toolbar is hidden and long code lines wrap.

Chromium's own ``--print-to-pdf`` was tried first: it lays figures out at the window's width
before printing, so they came out clipped at the right edge, and code lines were cut off.
"""

from __future__ import annotations

import argparse
import html
import re
import sys
import tempfile
import time
from pathlib import Path

import yaml
from pypdf import PdfReader, PdfWriter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ensure_browser import find_chromium  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TITLE = re.compile(r"<title>(.*?)</title>", re.IGNORECASE | re.DOTALL)
# A4 with 15 mm margins: 180 mm of text width, in CSS pixels (96 per inch)
MARGIN = "15mm"
WIDTH_PX = round(180 / 25.4 * 96)
PRINT_CSS = """
.modebar-container { display: none !important; }
pre, pre code { white-space: pre-wrap !important; overflow-wrap: anywhere; }
.js-plotly-plot, .skiplab-claim, .cell_input, .cell_output .output, figure { break-inside: avoid; }
h1, h2, h3 { break-after: avoid; }
"""
DRAWN = """() => [...document.querySelectorAll('.js-plotly-plot')]
    .every(e => e.querySelector('.main-svg'))"""


def pages(html_dir: Path) -> list[Path]:
    """The rendered page of every _toc.yml entry, in order."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf8"))
    names = [toc["root"]] + [c["file"] for p in toc.get("parts", []) for c in p["chapters"]]
    found = [html_dir / f"{name}.html" for name in names]
    missing = [str(p) for p in found if not p.exists()]
    if missing:
        raise SystemExit(f"book_pdf.py: not rendered: {', '.join(missing)} (run `make book`)")
    return found


def title(page: Path) -> str:
    match = TITLE.search(page.read_text(encoding="utf8"))
    text = html.unescape(re.sub(r"<[^>]+>", "", match.group(1))).strip() if match else page.stem
    return text.split(" — ")[0].strip() or page.stem


def print_pages(chromium: Path, todo: list[Path], parts: list[Path], timeout_s: int) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), headless=True, args=ARGS)
        try:
            for source, out in zip(todo, parts):
                page = browser.new_page(viewport={"width": WIDTH_PX, "height": 1200})
                page.set_default_timeout(timeout_s * 1000)
                page.emulate_media(media="print")
                page.goto(source.resolve().as_uri(), wait_until="load")
                if page.locator("script[src*='mathjax']").count():
                    page.wait_for_function(
                        "() => window.MathJax && MathJax.startup && MathJax.startup.promise")
                    page.evaluate("() => MathJax.startup.promise")
                page.wait_for_function(DRAWN)
                page.add_style_tag(content=PRINT_CSS)
                page.wait_for_timeout(1500)  # the widget manager draws after load
                page.pdf(path=str(out), format="A4", print_background=True,
                         margin={side: MARGIN for side in ("top", "right", "bottom", "left")})
                page.close()
        finally:
            browser.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--html", type=Path, default=ROOT / "_build" / "html")
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "pdf" / "book.pdf")
    parser.add_argument("--timeout-s", type=int, default=120,
                        help="how long a page may take to load and draw")
    args = parser.parse_args(argv)

    chromium = find_chromium()
    if chromium is None:
        raise SystemExit("book_pdf.py: no Chromium found; `make browser` installs one or says "
                         "how to get one (SKIPLAB_CHROMIUM=/path/to/chrome names one)")
    start = time.monotonic()
    todo = pages(args.html)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="skiplab-pdf-pages-") as tmp:
        parts = [Path(tmp) / f"{i:02d}.pdf" for i in range(len(todo))]
        print_pages(chromium, todo, parts, args.timeout_s)
        writer = PdfWriter()
        for page, part in zip(todo, parts):
            writer.append(PdfReader(part), outline_item=title(page))
        writer.add_metadata({"/Title": "Skip connections, executed",
                             "/Author": "The skiplab developers"})
        with open(args.out, "wb") as handle:
            writer.write(handle)
    total = len(writer.pages)
    size = args.out.stat().st_size / 1e6
    print(f"{args.out}: {len(todo)} pages of _toc.yml, {total} PDF pages, {size:.1f} MB, "
          f"{time.monotonic() - start:.0f} s (Chromium: {chromium})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
