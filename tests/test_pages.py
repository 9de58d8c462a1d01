"""The rendered book, loaded in real headless Chromium (found by tools/ensure_browser.py).

Run after `make book`: every page must load with no JavaScript error and no request that
leaves the machine; every plotly figure must be drawn; math must be typeset; widgets must
show their saved state; every chapter notebook page must carry its Colab launch link.
"""

from __future__ import annotations

import functools
import http.server
import json
import re
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
HTML = ROOT / "_build" / "html"
sys.path.insert(0, str(ROOT / "tools"))
from ensure_browser import find_chromium  # noqa: E402

# $SKIPLAB_CHROMIUM, else Debian's /usr/bin/chromium, else one on PATH, else Playwright's download
CHROMIUM = find_chromium()
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chapter_sources() -> list[Path]:
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for p in toc.get("parts", []) for c in p["chapters"]]
    found = []
    for name in files:
        matches = [ROOT / f"{name}{ext}" for ext in (".ipynb", ".md")
                   if (ROOT / f"{name}{ext}").exists()]
        assert matches, f"{name} from _toc.yml has no source"
        found.append(matches[0])
    return found


PAGES = chapter_sources()


@pytest.fixture(scope="module")
def server():
    if not (HTML / "index.html").exists():
        pytest.fail("no _build/html: run `make book` first")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(HTML))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.fail("no Chromium found: `make browser` installs one or says how to get one "
                    "(SKIPLAB_CHROMIUM=/path/to/chrome names one)")
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="skiplab-chromium-")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), headless=True, args=ARGS,
            viewport={"width": 1280, "height": 1600})
        yield context
        context.close()
    shutil.rmtree(profile, ignore_errors=True)


def load(browser, url):
    """Open url; return the page and the console errors and outside requests it caused."""
    page = browser.new_page()
    errors: list[str] = []
    outside: list[str] = []
    failed: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    def on_request(request):
        host = urlparse(request.url).hostname
        if urlparse(request.url).scheme not in ("data", "blob", "about") and host != "127.0.0.1":
            outside.append(request.url)

    page.on("request", on_request)
    page.on("requestfailed", lambda r: failed.append(f"{r.url} ({r.failure})"))
    page.on("response", lambda r: failed.append(f"{r.url} ({r.status})") if r.status >= 400
            else None)
    page.goto(url, wait_until="load")
    if page.locator("script[src*='mathjax']").count():  # Sphinx loads it where there is math
        page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise",
                               timeout=20_000)
        page.evaluate("() => MathJax.startup.promise")
    page.wait_for_timeout(1500)  # plotly and the widget manager draw after load
    return page, errors, outside, failed


@pytest.mark.parametrize("source", PAGES, ids=lambda p: p.stem)
def test_page_loads_clean_and_offline(server, browser, source):
    rel = source.relative_to(ROOT).with_suffix(".html")
    page, errors, outside, failed = load(browser, f"{server}/{rel.as_posix()}")
    try:
        assert not errors, f"console errors: {errors}"
        assert not outside, f"requests that leave the machine: {outside}"
        assert not failed, f"failed requests: {failed}"

        figures = page.eval_on_selector_all(
            ".plotly-graph-div", "divs => divs.map(d => d.querySelectorAll('.main-svg').length)")
        assert all(n > 0 for n in figures), f"plotly figures without drawn SVG: {figures}"

        # math: typeset into SVG, no raw TeX left in the text (scripts stripped first)
        text = page.evaluate("""() => { const c = document.querySelector('main').cloneNode(true);
                                c.querySelectorAll('script, style, .plotly-graph-div')
                                 .forEach(e => e.remove()); return c.innerText; }""")
        assert "\\(" not in text and "\\[" not in text, "untypeset math left in the page"
        if "math" in source.read_text():
            assert page.locator("mjx-container svg").count() > 0, "no typeset math"

        if source.suffix == ".ipynb":
            colab = page.locator("a[href*='colab.research.google.com/github/']")
            assert colab.count() > 0, "no Colab launch link"
            href = colab.first.get_attribute("href")
            assert href.endswith(f"/blob/main/{source.relative_to(ROOT).as_posix()}"), href
            nb = json.loads(source.read_text())
            if any("plotly" in "".join(c["source"]) for c in nb["cells"]
                   if c["cell_type"] == "code"):
                assert figures, "the chapter makes plotly figures, none is on the page"
            if page.locator("script[type='application/vnd.jupyter.widget-state+json']").count():
                assert page.locator(".jupyter-widgets").count() > 0, "widgets not rendered"
    finally:
        page.close()


def test_gradient_flow_figure_controls_work_without_a_kernel(server, browser):
    page, errors, _, _ = load(browser, f"{server}/book/why/gradient_flow.html")
    try:
        page.screenshot(path=str(HTML.parent / "gradient_flow.png"), full_page=False)
        gd = "document.querySelectorAll('.plotly-graph-div')[0]"
        visible_before = page.evaluate(f"() => {gd}.data.map(t => t.visible)")
        # the activation dropdown: open it and pick 'relu', as a reader would
        page.locator(".plotly-graph-div").first.locator(".updatemenu-header-group").click()
        page.locator(".plotly-graph-div").first.locator(".updatemenu-dropdown-button",
                                                        has_text="relu").click()
        page.wait_for_timeout(500)
        visible_after = page.evaluate(f"() => {gd}.data.map(t => t.visible)")
        assert visible_after != visible_before
        names = page.evaluate(f"() => {gd}.data.filter(t => t.visible).map(t => t.hovertemplate)")
        assert names and all(", relu," in n for n in names)
        # the depth slider: run its first step's own action and check the lines got shorter
        before = page.evaluate(f"() => {gd}._fullData.filter(t => t.visible === true)[0]._length")
        page.evaluate(f"""() => {{ const s = {gd}.layout.sliders[0].steps[0];
                                  return Plotly.animate({gd}, s.args[0], s.args[1]); }}""")
        page.wait_for_timeout(500)
        after = page.evaluate(f"() => {gd}._fullData.filter(t => t.visible === true)[0]._length")
        assert after < before
        assert page.evaluate(f"() => {gd}.data.filter(t => t.visible).length") == len(names)
        assert not errors, errors
    finally:
        page.close()


def test_degradation_figure_controls_work_without_a_kernel(server, browser):
    page, errors, _, _ = load(browser, f"{server}/book/why/degradation.html")
    try:
        page.screenshot(path=str(HTML.parent / "degradation.png"), full_page=False)
        curves = page.locator(".plotly-graph-div").first
        gd = "document.querySelectorAll('.plotly-graph-div')[0]"
        losses = page.evaluate(f"() => {gd}.data.map(t => Array.from(t.y))")
        # metric dropdown (the first menu): pick the training error, as a reader would
        curves.locator(".updatemenu-header-group").nth(0).click()
        curves.locator(".updatemenu-dropdown-button", has_text="training error").click()
        page.wait_for_timeout(500)
        errors_y = page.evaluate(f"() => {gd}.data.map(t => Array.from(t.y))")
        assert errors_y != losses
        assert all(0.0 <= v <= 1.0 for ys in errors_y for v in ys)
        assert page.evaluate(f"() => {gd}.layout.yaxis.type") == "linear"
        # depth dropdown (the second menu): one depth leaves one line per panel, same metric
        curves.locator(".updatemenu-header-group").nth(1).click()
        label = page.evaluate(f"() => {gd}.layout.updatemenus[1].buttons[1].label")
        curves.locator(".updatemenu-dropdown-button").filter(
            has_text=re.compile(f"^{label}$")).click()
        page.wait_for_timeout(500)
        visible = page.evaluate(f"() => {gd}.data.filter(t => t.visible !== false).length")
        assert visible == 2
        assert page.evaluate(f"() => {gd}.data.map(t => Array.from(t.y))") == errors_y
        # the path-length slider: run a step's own action; fewer bars are shown
        paths = ("Array.from(document.querySelectorAll('.plotly-graph-div'))"
                 ".find(d => d.layout.sliders && d.layout.sliders.length)")
        bars_before = page.evaluate(
            f"() => {paths}._fullData.filter(t => t.visible === true)[0]._length")
        page.evaluate(f"""() => {{ const gd = {paths}; const s = gd.layout.sliders[0].steps[0];
                                  return Plotly.update(gd, s.args[0], s.args[1]); }}""")
        page.wait_for_timeout(300)
        bars_after = page.evaluate(
            f"() => {paths}._fullData.filter(t => t.visible === true)[0]._length")
        assert bars_after < bars_before
        assert not errors, errors
    finally:
        page.close()


def slider_to_last_step(page) -> tuple[list[int], list[int]]:
    """Point counts of the visible traces of the page's first figure with a slider (an
    `update` slider), before and after moving it to its last step."""
    profile = ("Array.from(document.querySelectorAll('.plotly-graph-div'))"
               ".find(d => d.layout.sliders && d.layout.sliders.length)")
    lengths = f"() => {profile}._fullData.filter(t => t.visible === true).map(t => t._length)"
    first = page.evaluate(lengths)
    page.evaluate(f"""() => {{ const gd = {profile};
                              const s = gd.layout.sliders[0].steps.at(-1);
                              return Plotly.update(gd, s.args[0], s.args[1]); }}""")
    page.wait_for_timeout(300)
    return first, page.evaluate(lengths)


def test_architecture_figure_controls_work_without_a_kernel(server, browser):
    # ResNet chapter: the depth slider of the gradient profile shows one depth at a time
    page, errors, _, _ = load(browser, f"{server}/book/arch/resnet.html")
    try:
        first, last = slider_to_last_step(page)
        assert len(first) == len(last) == 3          # plain, post- and pre-activation
        assert min(last) > max(first)                # a deeper net has more blocks
        assert not errors, errors
    finally:
        page.close()
    # DenseNet chapter: the reuse heatmaps' dropdown switches the map shown
    page, errors, _, _ = load(browser, f"{server}/book/arch/densenet.html")
    try:
        heat = ("Array.from(document.querySelectorAll('.plotly-graph-div'))"
                ".find(d => d.data[0].type === 'heatmap')")
        shown = f"() => {heat}.data.findIndex(t => t.visible !== false)"
        assert page.evaluate(shown) == 0
        page.evaluate(f"""() => {{ const gd = {heat};
                                  const b = gd.layout.updatemenus[0].buttons[1];
                                  return Plotly.update(gd, b.args[0]); }}""")
        page.wait_for_timeout(300)
        assert page.evaluate(shown) == 1
        assert not errors, errors
    finally:
        page.close()


def test_unet_example_slider_changes_every_panel(server, browser):
    page, errors, _, _ = load(browser, f"{server}/book/arch/unet.html")
    try:
        grid = ("Array.from(document.querySelectorAll('.plotly-graph-div'))"
                ".filter(d => d.layout.sliders && d.layout.sliders.length"
                " && d.data[0].type === 'heatmap').at(-1)")
        before = page.evaluate(f"() => {grid}.data.map(t => JSON.stringify(t.z))")
        page.evaluate(f"""() => {{ const gd = {grid}; const s = gd.layout.sliders[0].steps[1];
                                  return Plotly.restyle(gd, s.args[0]); }}""")
        page.wait_for_timeout(300)
        after = page.evaluate(f"() => {grid}.data.map(t => JSON.stringify(t.z))")
        assert len(before) == len(after) >= 5          # input, truth and four predictions
        assert before[0] != after[0] and before[1] != after[1]
        assert not errors, errors
    finally:
        page.close()


def test_transformer_page_shows_both_forwards_and_its_depth_slider_works(server, browser):
    page, errors, _, _ = load(browser, f"{server}/book/arch/transformer.html")
    try:
        # the two forwards, side by side, from the library's source
        columns = page.eval_on_selector_all(
            "div[style*='display:flex'] > pre, div[style*='display: flex'] > pre",
            "pres => pres.map(p => p.innerText)")
        assert len(columns) == 2, columns
        assert "def forward_post" in columns[0] and "def forward_pre" in columns[1]
        # gradient profile: the slider's last step shows the deepest stacks
        first, last = slider_to_last_step(page)
        assert len(first) == len(last) == 2          # post-norm and pre-norm
        assert min(last) > max(first)
        # rank collapse spans many orders of magnitude: a log axis
        log_axes = page.evaluate("""() => Array.from(document.querySelectorAll('.plotly-graph-div'))
            .filter(d => d.layout.yaxis && d.layout.yaxis.type === 'log').length""")
        assert log_axes >= 3
        assert not errors, errors
    finally:
        page.close()


def test_landscape_page_draws_3d_surfaces_and_its_dropdown_switches_nets(server, browser):
    page, errors, _, _ = load(browser, f"{server}/book/why/landscape.html")
    try:
        scenes = ("Array.from(document.querySelectorAll('.plotly-graph-div'))"
                  ".filter(d => d._fullLayout && d._fullLayout.scene)")
        # every 3-D figure got a WebGL scene and a canvas to draw it on
        drawn = page.evaluate(f"""() => {scenes}.map(d => !!(d._fullLayout.scene._scene
                                  && d._fullLayout.scene._scene.glplot)
                                  && d.querySelectorAll('canvas').length > 0)""")
        assert drawn and all(drawn), drawn
        surface = f"{scenes}[0]"
        shown = f"() => {surface}.data.findIndex(t => t.visible === true)"
        assert page.evaluate(shown) == 0
        title_before = page.evaluate(f"() => {surface}.layout.title.text")
        page.evaluate(f"""() => {{ const gd = {surface};
                                  const b = gd.layout.updatemenus[0].buttons.at(-1);
                                  return Plotly.update(gd, b.args[0], b.args[1]); }}""")
        page.wait_for_timeout(500)
        assert page.evaluate(shown) == 3                  # four nets; the last one is shown
        assert page.evaluate(f"() => {surface}.layout.title.text") != title_before
        assert not errors, errors
    finally:
        page.close()


NOTEBOOK_PAGES = [p for p in PAGES if p.suffix == ".ipynb"]


@pytest.mark.parametrize("source", NOTEBOOK_PAGES, ids=lambda p: p.stem)
def test_chapter_ends_with_exercises_whose_solutions_open_on_click(server, browser, source):
    rel = source.relative_to(ROOT).with_suffix(".html")
    page, errors, _, _ = load(browser, f"{server}/{rel.as_posix()}")
    try:
        headings = page.eval_on_selector_all("main section > h2",
                                             "hs => hs.map(h => h.innerText.replace('#', ''))")
        assert headings and headings[-1].strip() == "Exercises", headings
        solutions = page.locator("section#exercises details.hide")
        assert solutions.count() >= 1
        html = page.content()
        assert "BEGIN TEST CONFIG" not in html and "BEGIN QUESTION" not in html
        for i in range(solutions.count()):
            details = solutions.nth(i)
            code = details.locator(".cell_input")
            assert details.get_attribute("open") is None and not code.is_visible()
            summary = details.locator("summary")
            assert "Show the solution" in summary.inner_text()
            summary.click()
            code.wait_for(state="visible", timeout=5_000)
            assert "def " in code.inner_text() or "class " in code.inner_text()
        # the build ran each solution through its checker and printed the report
        reports = page.locator("section#exercises .cell_output").all_inner_texts()
        assert sum("checks passed" in r for r in reports) == solutions.count(), reports
        assert not errors, errors
    finally:
        page.close()


def test_pages_are_light_only_with_no_mode_button_and_name_their_licences(server, browser):
    """The book is light-only (README, "Dark mode"): no colour-mode button, and light even where
    the browser kept "dark" from another site; every page's footer names both licences."""
    page, errors, _, _ = load(browser, f"{server}/book/intro.html")
    try:
        page.evaluate("() => localStorage.setItem('mode', 'dark')")
        page.reload(wait_until="load")
        assert page.evaluate("() => document.documentElement.dataset.theme") == "light"
        assert page.locator(".theme-switch-button").count() == 0
        footer = page.locator(".extra_footer")
        assert "MIT" in footer.inner_text() and "CC BY 4.0" in footer.inner_text()
        assert footer.locator("a[href='https://creativecommons.org/licenses/by/4.0/']").count()
        assert not errors, errors
    finally:
        page.evaluate("() => localStorage.removeItem('mode')")
        page.close()
