import numpy as np
import pytest

from skiplab import History
from skiplab.figures import history_figure, layer_profile_figure


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
    h = History(step=[1, 2], train_loss=[2.0, 1.0], train_acc=[0.1, 0.5],
                test_loss=[2.1, 1.1], test_acc=[0.1, 0.4])
    fig = history_figure({"plain": h, "residual": h})
    assert len(fig.data) == 6 and sum(t.visible for t in fig.data) == 2
    labels = [b.label for b in fig.layout.updatemenus[0].buttons]
    assert labels == ["training loss", "training accuracy", "test accuracy"]
