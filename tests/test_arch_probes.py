"""Cost probes (multiply-adds, peak memory), DenseNet reuse maps, architecture figures."""

import numpy as np
import pytest
import torch
from torch import nn

from skiplab.blocks import BasicBlock, Bottleneck, PlainBasicBlock, PreActBlock
from skiplab.figures import (accuracy_per_parameter_figure, block_anatomy_figure,
                             block_profile_figure, reuse_heatmap_figure, width_profile_figure)
from skiplab.models import densenet_bc
from skiplab.probes import count_macs, peak_memory, reuse_ablation_map, reuse_map


def test_count_macs_matches_hand_counts():
    assert count_macs(nn.Linear(30, 7), (30,)) == 30 * 7
    conv = nn.Conv2d(4, 6, 3, padding=1, bias=False)
    assert count_macs(conv, (4, 10, 10)) == 6 * 10 * 10 * 4 * 9
    strided = nn.Conv2d(4, 6, 3, padding=1, stride=2, bias=False)
    assert count_macs(strided, (4, 10, 10)) == 6 * 5 * 5 * 4 * 9


def test_count_macs_leaves_the_model_where_it_was():
    model = nn.Linear(3, 2)
    before = model.weight.detach().clone()
    count_macs(model, (3,))
    assert model.weight.device.type == "cpu" and torch.equal(model.weight, before)


def test_peak_memory_sees_a_large_temporary_and_not_a_small_one():
    big = peak_memory(lambda: torch.ones(16, 2**20).sum())            # 64 MiB, then freed
    small = peak_memory(lambda: torch.ones(16).sum())
    assert 60 < big.megabytes < 80
    assert small.megabytes < 4
    assert "mallinfo2" in big.method


def test_peak_memory_refuses_unknown_devices():
    with pytest.raises(NotImplementedError, match="'cpu' or 'cuda'"):
        peak_memory(lambda: None, "meta")


def test_reuse_map_reads_each_source_slice():
    torch.manual_seed(0)
    model = densenet_bc(22, 4, in_channels=1)
    block, transition = model.blocks[0], model.transitions[0]
    # make layer 3 read only source 1 (the first layer's channels): everything else zero
    layer = block.layers[2]
    with torch.no_grad():
        layer.reduce.conv.weight.zero_()
        c0 = block.in_channels
        layer.reduce.conv.weight[:, c0:c0 + 4] = 2.0
    grid = reuse_map(block, transition, normalise_rows=False)
    assert grid.shape == (4, 4)                                      # 3 layers + transition
    assert np.isnan(grid[0, 1:]).all() and np.isnan(grid[1, 2:]).all()
    np.testing.assert_allclose(grid[2, :3], [0.0, 2.0, 0.0])
    normalised = reuse_map(block, transition)
    assert np.nanmax(normalised, axis=1) == pytest.approx(np.ones(4))


def test_reuse_ablation_map_finds_the_only_source_used_and_restores_the_model():
    torch.manual_seed(0)
    model = densenet_bc(22, 4, in_channels=1, n_classes=3).train()
    x, y = torch.randn(16, 1, 16, 16), torch.randint(0, 3, (16,))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    # the transition after block 1 reads only the block input: other sources cannot matter
    with torch.no_grad():
        transition = model.transitions[0]
        c0 = model.blocks[0].in_channels
        transition.conv.weight[:, c0:] = 0.0
    grid = reuse_ablation_map(model, 0, x, y, normalise_rows=False)
    assert grid.shape == (4, 4)
    np.testing.assert_allclose(grid[3, 1:], 0.0, atol=1e-6)
    assert grid[3, 0] != 0.0
    assert model.training                                            # mode restored
    for k, v in model.state_dict().items():                          # no hook left behind
        if k.startswith("transitions.0.conv"):
            continue
        assert torch.equal(v, state[k]), k
    assert not any(m._forward_pre_hooks for m in model.modules())


def test_block_anatomy_draws_every_operation_and_the_shortcuts():
    blocks = {"plain": PlainBasicBlock(8, 8), "basic": BasicBlock(8, 16, 2, shortcut="B"),
              "bottleneck": Bottleneck(16, 4), "pre": PreActBlock(8, 8)}
    fig = block_anatomy_figure(blocks)
    texts = [a.text for a in fig.layout.annotations]
    assert texts.count("BatchNorm") == 2 + 2 + 3 + 2
    assert texts.count("+") == 3                     # the plain block has no addition
    assert any("option B" in t for t in texts)
    hover = fig.data[0].hovertext
    assert any("shortcut" in h for h in hover)


def test_block_profile_slider_shows_one_depth_at_a_time():
    values = {(a, d): np.logspace(0, 1, d) for a in ("plain", "residual") for d in (3, 9)}
    fig = block_profile_figure(values)
    (slider,) = fig.layout.sliders
    assert [s.label for s in slider.steps] == ["3", "9"]
    assert [t.visible for t in fig.data] == [True, True, False, False]
    assert slider.steps[1].args[0]["visible"] == [False, False, True, True]
    with pytest.raises(ValueError, match="missing"):
        block_profile_figure({("plain", 3): [1.0], ("residual", 9): [1.0]})


def test_other_architecture_figures_have_their_traces():
    fig = accuracy_per_parameter_figure({"ResNet": [("a", 10, 0.5), ("b", 100, 0.7)],
                                         "DenseNet": [("c", 20, 0.6)]})
    assert [t.name for t in fig.data] == ["ResNet", "DenseNet"]
    assert list(fig.data[0].x) == [10, 100]
    maps = {"one": np.eye(3), "two": np.ones((3, 3))}
    heat = reuse_heatmap_figure(maps, last_row="next")
    assert [b.label for b in heat.layout.updatemenus[0].buttons] == ["one", "two"]
    assert list(heat.data[0].y)[-1] == "next"
    widths = width_profile_figure({"k": [4, 8, 12]})
    assert list(widths.data[0].y) == [4, 8, 12]


def test_normalised_rows_keeps_missing_cells_and_survives_rows_without_a_rise():
    from skiplab.probes import normalised_rows

    grid = np.array([[2.0, np.nan, np.nan], [-1.0, -0.5, np.nan], [1.0, 4.0, -3.0]])
    out = normalised_rows(grid)
    assert np.isnan(out[0, 1:]).all() and out[0, 0] == 1.0
    np.testing.assert_array_equal(out[1, :2], [0.0, 0.0])
    assert np.isnan(out[1, 2])
    np.testing.assert_allclose(out[2], [0.25, 1.0, 0.0])
