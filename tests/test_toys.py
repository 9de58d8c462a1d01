import numpy as np
import pytest

from skiplab.figures import (landscape_contour_figure, landscape_surface_figure, series_figure,
                             symmetry_order_figure)
from skiplab.toys import TwoUnitToy


def test_loss_is_symmetric_and_zero_at_the_target():
    toy = TwoUnitToy(target=(2.0, 0.5))
    a, b = np.linspace(-3, 3, 13), np.linspace(-2, 4, 13)
    grid = toy.grid(a, b)
    assert grid.shape == (13, 13)
    assert np.allclose(toy.grid(b, a), grid.T)  # swapping the axes = swapping the units
    assert float(toy.loss(2.0, 0.5)) == 0.0 and float(toy.loss(0.5, 2.0)) == 0.0
    with pytest.raises(ValueError, match="differ"):
        TwoUnitToy(target=(1.0, 1.0))


def test_descent_on_the_line_stays_on_it_and_beside_it_leaves():
    toy = TwoUnitToy()
    on = toy.descend((0.2, 0.2), steps=300)
    assert on.shape == (301, 2)
    assert np.array_equal(on[:, 0], on[:, 1])  # exactly: both units get the same gradient
    beside = toy.descend((0.2, 0.25), steps=300)
    assert abs(beside[-1, 0] - beside[-1, 1]) > 1.0
    assert float(toy.loss(*beside[-1])) < float(toy.loss(*on[-1])) / 100


def test_landscape_figures():
    toy = TwoUnitToy()
    a, b = np.linspace(-1, 3, 9), np.linspace(-1, 3, 9)
    z = toy.grid(a, b)
    paths = {"on the line": toy.descend((0.2, 0.2), steps=5),
             "beside it": toy.descend((0.2, 0.25), steps=5)}
    contour = landscape_contour_figure(a, b, z, paths)
    assert [t.type for t in contour.data] == ["contour", "scatter", "scatter", "scatter"]
    assert list(contour.data[2].x) == list(paths["on the line"][:, 0])
    losses = {k: toy.loss(p[:, 0], p[:, 1]).numpy() for k, p in paths.items()}
    surface = landscape_surface_figure(a, b, z, paths, losses)
    assert [t.type for t in surface.data] == ["surface", "scatter3d", "scatter3d"]
    with pytest.raises(ValueError, match="len"):
        landscape_contour_figure(a, b[:-1], z, paths)
    with pytest.raises(ValueError, match="one loss per point"):
        landscape_surface_figure(a, b, z, paths, {k: v[:-1] for k, v in losses.items()})


def test_series_and_order_figures():
    fig = series_figure([1, 2], {"plain": [0.0, 0.0], "additive": [0.1, 0.3]}, yaxis_title="d")
    assert [t.name for t in fig.data] == ["plain", "additive"]
    with pytest.raises(ValueError, match="values for"):
        series_figure([1, 2, 3], {"plain": [0.0]}, yaxis_title="d")
    order = symmetry_order_figure([2, 4], [2, 4])
    assert len(order.data) == 6 and sum(t.visible for t in order.data) == 3
    plain_4 = order.data[3]  # depth 4, plain
    assert plain_4.y[1] == pytest.approx(4 * np.log10(24))
    assert order.data[4].y[1] == pytest.approx(np.log10(24))  # one stream, one 4!
    assert order.data[5].y[1] == pytest.approx(3 * np.log10(24))  # stream + 2 inner layers
