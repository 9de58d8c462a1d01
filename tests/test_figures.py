from types import SimpleNamespace

import numpy as np
import pytest

from skiplab import History
from skiplab.figures import (FALLBACK, PALETTE, TRANSFORMER_PALETTE, accuracy_per_parameter_figure,
                             block_profile_figure, depth_curves_figure, embedding_scatter_figure,
                             final_loss_figure, forgetting_figure, history_figure,
                             landscape_contour_figure, landscape_surface_figure,
                             layer_profile_figure, layer_series_figure, lesion_figure,
                             retrieval_curves_figure, series_figure, slices_figure,
                             surfaces_figure, symmetry_order_figure, trace_colours,
                             width_profile_figure)
from skiplab.landscape import Surface


def grid(depths=(3, 5)):
    return {(a, i, r, d): np.logspace(0, d, d)
            for a in ("sigmoid", "relu") for i in ("xavier", "kaiming")
            for r in ("plain", "residual") for d in depths}


def test_layer_profile_controls_match_the_grid():
    fig = layer_profile_figure(grid())
    assert len(fig.data) == 2 * 2 * 2
    assert [f.name for f in fig.frames] == ["3", "5"]
    assert all(len(f.data) == len(fig.data) for f in fig.frames)
    (menu,) = fig.layout.updatemenus
    assert [b.label for b in menu.buttons] == ["sigmoid", "relu"]
    # each dropdown entry shows exactly the traces of its activation
    for button in menu.buttons:
        assert sum(button.args[0]["visible"]) == 4
    (slider,) = fig.layout.sliders
    assert [s.label for s in slider.steps] == ["3", "5"]
    assert fig.layout.yaxis.type == "log"
    # the slider starts at the deepest net, and the traces show it
    assert slider.active == 1 and len(fig.data[0].y) == 5


def test_layer_profile_refuses_an_incomplete_grid():
    norms = grid()
    del norms[("relu", "kaiming", "plain", 5)]
    with pytest.raises(ValueError, match="lacks 1 combinations"):
        layer_profile_figure(norms)


def test_history_figure_switches_metrics():
    h = History(step=[1, 2], train_loss=[2.0, 1.0], train_metrics={"acc": [0.1, 0.5]},
                metrics={"loss": [2.1, 1.1], "acc": [0.1, 0.4]})
    fig = history_figure({"plain": h, "residual": h})
    assert len(fig.data) == 6 and sum(t.visible for t in fig.data) == 2
    labels = [b.label for b in fig.layout.updatemenus[0].buttons]
    assert labels == ["training loss", "training accuracy", "test accuracy"]


# --- colours: explicit colours win, then the book-wide names, then a stable order --------

def test_trace_colours_follow_the_one_rule():
    assert trace_colours(["plain", "mine", "residual"], {"residual": "black"}) == {
        "plain": PALETTE["plain"], "mine": FALLBACK[1], "residual": "black"}
    # stable: the same names in the same order get the same colours, repeats count once
    assert trace_colours(["a", "b", "a"]) == {"a": FALLBACK[0], "b": FALLBACK[1]}
    assert trace_colours(["plain"], book_colours=False) == {"plain": FALLBACK[0]}
    assert trace_colours(["x"] * 1 + ["y"], fallback=("red",)) == {"x": "red", "y": "red"}


def test_base_holds_only_the_book_wide_names():
    chapter_only = set(TRANSFORMER_PALETTE)
    assert not chapter_only & set(PALETTE)
    assert {"plain", "plain_bn", "residual", "pre-activation", "post-activation", "pre-norm",
            "post-norm"} <= set(PALETTE)


def test_the_transformer_chapter_keeps_its_colours():
    # the colours its figures had when they were keyed in figures/base.py
    h = SimpleNamespace(step=[0, 1], train_loss=[1.0, 0.5], train_acc=[0.1, 0.2],
                        test_acc=[0.1, 0.2])
    runs = {name: h for name in ("post-norm", "post-norm + warm-up", "pre-norm")}
    fig = history_figure(runs, colors=TRANSFORMER_PALETTE)
    assert {t.name: t.line.color for t in fig.data} == {
        "post-norm": "#D55E00", "post-norm + warm-up": "#E69F00", "pre-norm": "#009E73"}
    stream = layer_series_figure({"pre-norm (at initialisation)": [1.0, 0.5],
                                  "pre-norm, no skips (trained)": [1.0, 0.1]},
                                 colors=TRANSFORMER_PALETTE)
    assert [t.line.color for t in stream.data] == ["#56B4E9", "#D55E00"]
    lesion = lesion_figure({"post-norm + warm-up": {0: 0.5}, "pre-norm": {0: 0.4}},
                           {"post-norm + warm-up": 0.9, "pre-norm": 0.9}, chance=0.1,
                           colors=TRANSFORMER_PALETTE)
    assert [t.marker.color for t in lesion.data] == ["#E69F00", "#009E73"]


def _history(n=2):
    return SimpleNamespace(step=list(range(n)), train_loss=[1.0] * n, train_acc=[0.5] * n,
                           test_acc=[0.5] * n, metrics={"m": [0.1] * n},
                           final=lambda name="train_loss", records=2: 1.0)


_S1 = Surface(np.linspace(-1, 1, 3), None, np.ones(3), np.ones(3))
_PATHS = {"mine": np.zeros((2, 2))}
# builder -> a figure with a trace named "mine", built with the given colors
_COLOURING = {
    "block_profile_figure": lambda c: block_profile_figure({("mine", 3): [1.0]}, colors=c),
    "accuracy_per_parameter_figure": lambda c: accuracy_per_parameter_figure(
        {"mine": [("a", 10, 0.5)]}, colors=c),
    "width_profile_figure": lambda c: width_profile_figure({"mine": [4, 8]}, colors=c),
    "final_loss_figure": lambda c: final_loss_figure({("mine", 8): _history()}, colors=c),
    "lesion_figure": lambda c: lesion_figure({"mine": {0: 0.5}}, {"mine": 0.9}, chance=0.1,
                                             colors=c),
    "layer_profile_figure": lambda c: layer_profile_figure(
        {("relu", "xavier", "mine", 3): [1.0, 2.0]}, colors=c),
    "history_figure": lambda c: history_figure({"mine": _history()}, colors=c),
    "layer_series_figure": lambda c: layer_series_figure({"mine": [1.0, 2.0]}, colors=c),
    "series_figure": lambda c: series_figure([0, 1], {"mine": [1.0, 2.0]}, yaxis_title="y",
                                             colors=c),
    "retrieval_curves_figure": lambda c: retrieval_curves_figure({"mine": _history()},
                                                                 colors=c),
    "forgetting_figure": lambda c: forgetting_figure({"head": {"mine": 0.5}}, colors=c),
    "embedding_scatter_figure": lambda c: embedding_scatter_figure(
        {"p": np.zeros((2, 2))}, np.array([0, 1]), class_names=["mine", "other"], colors=c),
    "slices_figure": lambda c: slices_figure({"panel": {"mine": _S1}}, colors=c),
    "landscape_contour_figure": lambda c: landscape_contour_figure(
        [0, 1], [0, 1], np.ones((2, 2)), _PATHS, colors=c),
    "landscape_surface_figure": lambda c: landscape_surface_figure(
        [0, 1], [0, 1], np.ones((2, 2)), _PATHS, {"mine": np.ones(2)}, colors=c),
}
PINK = "#FF00FF"


def _colour_of(trace) -> str:
    line = getattr(trace, "line", None)
    return line.color if line is not None and line.color else trace.marker.color


@pytest.mark.parametrize("builder", _COLOURING)
def test_every_colouring_builder_takes_explicit_colours(builder):
    mine = [t for t in _COLOURING[builder]({"mine": PINK}).data if t.name == "mine"]
    assert mine and all(_colour_of(t) == PINK for t in mine)
    # without them, a name no palette knows still gets a colour of its own
    default = [t for t in _COLOURING[builder](None).data if t.name == "mine"]
    assert all(_colour_of(t) not in (None, PINK) for t in default)


def test_symmetry_order_figure_takes_explicit_colours():
    fig = symmetry_order_figure([2, 4], [2], colors={"plain": PINK})
    assert [_colour_of(t) == PINK for t in fig.data] == [True, False, False]


def test_depth_curves_take_a_colour_per_depth():
    runs = {(a, d): _history() for a in ("plain", "residual") for d in (8, 14)}
    fig = depth_curves_figure(runs, colors={14: PINK})
    assert [t.line.color == PINK for t in fig.data] == [False, True, False, True]


# --- generic builders live in figures.series and keep their old homes --------------------

def test_generic_builders_are_re_exported_from_their_old_modules():
    import skiplab.figures as figures_package
    from skiplab.figures import finetune, series, symmetry, training

    assert symmetry.series_figure is series.series_figure is figures_package.series_figure
    assert training.history_figure is series.history_figure
    assert training.layer_series_figure is series.layer_series_figure
    assert finetune.retrieval_curves_figure is series.retrieval_curves_figure
    for name in figures_package.__all__:
        assert getattr(figures_package, name) is not None


def test_surfaces_figure_names_the_accepted_kinds():
    s2 = Surface(np.linspace(-1, 1, 3), np.linspace(-1, 1, 3), np.ones((3, 3)),
                 np.ones((3, 3)))
    with pytest.raises(ValueError, match="kind='bars' is not known; accepted: 'contour', "
                                         "'surface'"):
        surfaces_figure({"a": s2}, kind="bars")
