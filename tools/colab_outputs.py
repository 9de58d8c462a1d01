"""pytest plugin for the Colab pass of `make test`: are the notebooks' outputs ones Colab draws?

nbval (`--nbval-lax`) runs every cell and fails on errors, but compares no output. Loaded next
to it (`python -m pytest --nbval-lax -p tools.colab_outputs book`), this plugin reads what each
cell displayed (nbval keeps it in `IPyNbCell.test_outputs`) and adds one test per notebook,
`<notebook>::Colab outputs`, run after its last cell. It fails when

- a display (`display_data` / `execute_result`) carries none of the types Colab draws
  (`COLAB_MIMES`), e.g. a plotly figure as `application/vnd.plotly.v1+json` alone;
- a plotly figure comes without `text/html` that draws it and loads plotly.js itself (Colab
  draws each output in its own iframe, so a figure that relies on plotly.js loaded by an
  earlier output stays blank: the `notebook` renderer's second figure, for instance);
- an ipywidget comes without `application/vnd.jupyter.widget-view+json` (Colab would print
  its text repr), or a cell that builds widgets (`WIDGET_SOURCE`) shows no widget view;
- the chapter drew no plotly figure at all.
(tqdm's progress bars are widget views too; they count as `progress`, not as widgets.)

The summary at the end lists, per notebook, the kinds of output seen.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter

import pytest

# What Colab's front end draws from a kernel's display (the types these notebooks produce).
COLAB_MIMES = frozenset({
    "text/html",
    "text/plain",
    "image/png",
    "application/vnd.jupyter.widget-view+json",
})
PLOTLY_MIME = "application/vnd.plotly.v1+json"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
# A plotly figure's text repr is `Figure({...})`; an ipywidget's is `ClassName(...)` with a
# class of ipywidgets (filled in at configure time, when ipywidgets imports).
FIGURE_TEXT = re.compile(r"^Figure\(")
FIGURE_HTML = 'class="plotly-graph-div"'  # the figure's <div> in any plotly HTML renderer
# plotly.js itself: a <script src=...plotly...js> (the colab renderer: the CDN) or inlined.
LOADS_PLOTLYJS = re.compile(r"<script[^>]*\bsrc=[\"'][^\"']*plotly[^\"']*\.js|plotly\.js v\d")
# A code cell that mentions these is expected to show at least one ipywidget.
WIDGET_SOURCE = re.compile(r"\bipywidgets\b|skiplab\.widgets\b|\binteract(ive)?\(")

_widget_text = re.compile(r"(?!)")  # matches nothing until pytest_configure


OUTPUT_TIMEOUT_S = 120


def pytest_configure(config):
    global _widget_text
    try:
        with warnings.catch_warnings():  # ipykernel 6.17 warns on import under Python 3.13
            warnings.simplefilter("ignore")
            import ipywidgets
    except ImportError:
        return
    names = sorted(n for n, obj in vars(ipywidgets).items()
                   if isinstance(obj, type) and issubclass(obj, ipywidgets.Widget))
    _widget_text = re.compile(r"^(%s)\(" % "|".join(map(re.escape, names)))


def classify(data: dict) -> tuple[str, list[str]]:
    """One display's kind (`figure`, `widget`, `progress`, `image`, `html`, `text`) and its
    problems."""
    mimes = set(data)
    text = data.get("text/plain", "")
    html = data.get("text/html", "")
    if PLOTLY_MIME in mimes or FIGURE_TEXT.match(text) or FIGURE_HTML in html:
        if not (FIGURE_HTML in html and "Plotly.newPlot" in html):
            return "figure", ["a plotly figure without text/html that draws it, only "
                              f"{sorted(mimes)}"]
        if not LOADS_PLOTLYJS.search(html):
            return "figure", ["a plotly figure whose text/html does not load plotly.js itself "
                              "(blank in Colab, which draws each output in its own iframe)"]
        return "figure", []
    problems = []
    if not mimes & COLAB_MIMES:
        problems.append(f"none of the types Colab draws, only {sorted(mimes)}")
    if _widget_text.match(text):
        if WIDGET_MIME not in mimes:
            problems.append(f"a widget without a widget view, only {sorted(mimes)}")
        return "widget", problems
    if WIDGET_MIME in mimes:
        return "progress", problems
    if "image/png" in mimes:
        return "image", problems
    if "text/html" in mimes:
        return "html", problems
    return "text", problems


class ColabOutputs(pytest.Item):
    """Checks the displays of every cell of one notebook; runs after its last cell."""

    def __init__(self, *, cells, **kwargs):
        super().__init__(**kwargs)
        self.cells = cells

    def runtest(self):
        kinds, problems, drawn = Counter(), [], 0
        for cell in self.cells:
            first = next((ln for ln in cell.cell.source.splitlines() if ln.strip()), "").strip()
            where = f"cell {cell.cell_num} ({first[:60]!r})"
            here = Counter()
            for out in cell.test_outputs or ():
                if out.get("output_type") not in ("display_data", "execute_result"):
                    continue
                kind, found = classify(out.get("data", {}))
                here[kind] += 1
                drawn += kind == "figure" and not found
                problems += [f"{where}: {p}" for p in found]
            kinds += here
            if (cell.test_outputs is not None and WIDGET_SOURCE.search(cell.cell.source)
                    and not here["widget"]):
                problems.append(f"{where}: builds widgets but shows no widget view")
        self.config._colab_outputs[self.parent.nodeid] = kinds
        if all(c.test_outputs is not None for c in self.cells):   # every cell ran
            if not drawn:
                problems.append("no plotly figure drawn as text/html in the whole notebook")
        if problems:
            raise ColabOutputError(problems)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, ColabOutputError):
            return "outputs Colab would not draw:\n  " + "\n  ".join(excinfo.value.problems)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, f"{self.parent.nodeid}::Colab outputs"


class ColabOutputError(Exception):
    def __init__(self, problems):
        super().__init__("\n".join(problems))
        self.problems = problems


def _is_cell(item) -> bool:
    return type(item).__name__ == "IPyNbCell" and hasattr(item, "test_outputs")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    config._colab_outputs = {}
    out, i = [], 0
    while i < len(items):
        item = items[i]
        if _is_cell(item):
            # nbval waits only 5 s for a cell's outputs once the kernel has answered; with the
            # book build beside it on 2 cores, a training cell's last progress-bar messages
            # came later than that (measured: two chapters failed "waiting for output").
            # The pass checks what the cells show, not how fast the messages arrive.
            item.output_timeout = OUTPUT_TIMEOUT_S
        out.append(item)
        nxt = items[i + 1] if i + 1 < len(items) else None
        if _is_cell(item) and (nxt is None or nxt.parent is not item.parent):
            cells = [c for c in items if _is_cell(c) and c.parent is item.parent]
            out.append(ColabOutputs.from_parent(item.parent, name="Colab outputs", cells=cells))
        i += 1
    items[:] = out


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    seen = getattr(config, "_colab_outputs", {})
    if not seen:
        return
    terminalreporter.section("displays per notebook (Colab output check)")
    for nodeid, kinds in seen.items():
        terminalreporter.write_line(
            f"{nodeid}: " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))
