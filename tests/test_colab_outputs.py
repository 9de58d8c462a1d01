"""The Colab pass's output check (tools/colab_outputs.py): what it accepts and what it fails."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import colab_outputs  # noqa: E402

go = pytest.importorskip("plotly.graph_objects")
pio = pytest.importorskip("plotly.io")


def bundle(renderer: str) -> dict:
    return pio.renderers[renderer].to_mimebundle(go.Figure(go.Scatter(y=[1, 2])).to_plotly_json())


def test_colab_renderer_figure_passes():
    assert colab_outputs.classify(bundle("colab")) == ("figure", [])


@pytest.mark.parametrize("renderer", ["plotly_mimetype", "json", "notebook"])
def test_figures_colab_does_not_draw_fail(renderer):
    kind, problems = colab_outputs.classify(bundle(renderer))
    assert problems, (renderer, kind)


def test_widgets_need_a_widget_view():
    colab_outputs.pytest_configure(None)  # learns ipywidgets' class names
    view = {"model_id": "x", "version_major": 2, "version_minor": 0}
    assert colab_outputs.classify({"text/plain": "VBox(children=())",
                                   colab_outputs.WIDGET_MIME: view}) == ("widget", [])
    kind, problems = colab_outputs.classify({"text/plain": "VBox(children=())"})
    assert kind == "widget" and problems
    assert colab_outputs.classify({"text/plain": "plain:  0%|  | 0/600",
                                   colab_outputs.WIDGET_MIME: view}) == ("progress", [])


def test_png_and_text_pass():
    assert colab_outputs.classify({"image/png": "iVBOR", "text/plain": "<Figure>"}) == ("image", [])
    assert colab_outputs.classify({"text/plain": "42"}) == ("text", [])


NOTEBOOK = {
    "cells": [
        {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
         "source": "import plotly.graph_objects as go\ngo.Figure(go.Scatter(y=[1, 2]))"},
    ],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                "language": "python"}},
    "nbformat": 4, "nbformat_minor": 5,
}


@pytest.mark.parametrize("renderer, passes", [("colab", True), ("plotly_mimetype", False)])
def test_the_plugin_fails_the_notebook_under_nbval(tmp_path, renderer, passes):
    """Wired to nbval: one extra test per notebook, failed when a figure is not drawable."""
    path = tmp_path / "figure.ipynb"
    path.write_text(json.dumps(NOTEBOOK))
    env = {**os.environ, "PLOTLY_RENDERER": renderer, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-p",
         "tools.colab_outputs", "-p", "no:cacheprovider", "-q", str(path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert "figure.ipynb::Colab outputs" in run.stdout or passes, run.stdout
    assert (run.returncode == 0) == passes, run.stdout + run.stderr
    assert ("2 passed" if passes else "1 failed, 1 passed") in run.stdout, run.stdout
