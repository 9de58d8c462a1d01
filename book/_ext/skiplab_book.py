"""Local Sphinx extension of the book: keep rendered pages free of outside requests.

plotly (7.x) writes a ``<script src="https://.../mathjax/...">`` CDN tag into every figure's
HTML output, also inside the saved state of widgets that display figures. The book loads
its own offline MathJax, so those tags only cost a failed request each when offline.
After the build, remove every ``<script src="http(s)://...">`` tag from the written pages,
in plain HTML and in the JSON-escaped form used by saved widget state.
"""

from __future__ import annotations

import re
from pathlib import Path

# <script ... src="https://..."></script>, or the same with \" and <\/script> inside JSON
OUTSIDE_SCRIPT = re.compile(
    r'<script[^<>]*?\ssrc=\\?"https?://[^"\\]*\\?"[^<>]*>\s*<\\?/script>', re.IGNORECASE)


def strip_outside_scripts(html: str) -> str:
    return OUTSIDE_SCRIPT.sub("", html)


def _on_build_finished(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    for page in Path(app.outdir).rglob("*.html"):
        text = page.read_text(encoding="utf8")
        cleaned = strip_outside_scripts(text)
        if cleaned != text:
            page.write_text(cleaned, encoding="utf8")


def setup(app):
    app.connect("build-finished", _on_build_finished)
    return {"version": "0.2", "parallel_read_safe": True, "parallel_write_safe": True}
