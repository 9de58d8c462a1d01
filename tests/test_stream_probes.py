"""The residual-stream probes of the transformer chapter: branch/stream ratios, log-log slopes."""

import numpy as np
import pytest
import torch
from torch import nn

from skiplab.blocks.skips import make_skip
from skiplab.figures.architectures import TRANSFORMER_PALETTE, branch_ratio_figure
from skiplab.models.transformer import SequenceModel, TransformerConfig
from skiplab.probes.stream import branch_stream_ratios, loglog_slope


class _Scaled(nn.Module):
    """Two skips whose branch is a known multiple of the stream."""

    def __init__(self):
        super().__init__()
        self.first, self.second = make_skip("residual"), make_skip("none")

    def forward(self, x):
        x = self.first(x, 3 * x)           # ratio 3, output 4x
        return self.second(x, -0.5 * x)    # ratio 0.5


def test_ratios_of_known_branches_in_forward_order():
    ratios = branch_stream_ratios(_Scaled(), torch.randn(2, 5, 8))
    assert ratios.dtype == torch.float64 and ratios.shape == (2,)
    assert torch.allclose(ratios, torch.tensor([3.0, 0.5], dtype=torch.float64))


def test_ratios_match_a_hand_computation_in_a_prenorm_stack():
    torch.manual_seed(0)
    model = SequenceModel(TransformerConfig(vocab_size=7, n_layers=3, norm="pre")).double()
    tokens = torch.randint(0, 7, (4, 9))
    ratios = branch_stream_ratios(model, tokens)
    assert ratios.shape == (6,)                       # two sub-layers per block
    with torch.no_grad():
        x = model.streams(tokens)[1]                  # the stream after block 0
        block = model.blocks[1]
        branch = block.self_attn(block.norm1(x))      # block 1's attention branch
        expected = (branch.norm(dim=-1) / x.norm(dim=-1)).mean()
    assert torch.allclose(ratios[2], expected)


def test_hooks_are_removed_and_the_model_is_unchanged():
    model = SequenceModel(TransformerConfig(vocab_size=7, n_layers=2, norm="post"))
    tokens = torch.randint(0, 7, (2, 5))
    before = model(tokens).detach()
    branch_stream_ratios(model, tokens)
    assert all(not m._forward_pre_hooks for m in model.modules())
    assert torch.equal(model(tokens).detach(), before)
    with pytest.raises(ValueError, match="no Skip"):
        branch_stream_ratios(nn.Linear(3, 3), torch.randn(2, 3))


def test_prenorm_steps_shrink_with_depth_and_postnorm_steps_do_not_at_initialisation():
    # the stream of a pre-norm stack grows like sqrt(depth), a post-norm stream is
    # renormalised after every sub-layer
    tokens = torch.randint(0, 10, (16, 12))
    slopes = {}
    for norm in ("pre", "post"):
        torch.manual_seed(1)
        model = SequenceModel(TransformerConfig(vocab_size=10, n_layers=24, norm=norm)).double()
        per_block = branch_stream_ratios(model, tokens).view(-1, 2).mean(1)
        slopes[norm] = loglog_slope(np.arange(1, 25), per_block.numpy())
    assert -0.8 < slopes["pre"] < -0.25
    assert abs(slopes["post"]) < 0.15


def test_loglog_slope_recovers_a_power_law_and_refuses_bad_input():
    x = np.array([6, 12, 24, 48])
    assert loglog_slope(x, 3.0 * x ** -0.5) == pytest.approx(-0.5)
    assert loglog_slope(x, np.full(4, 2.0)) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="positive"):
        loglog_slope(x, [1.0, 0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="same length"):
        loglog_slope([1.0], [1.0])


def test_branch_ratio_figure_dashes_the_models_at_initialisation():
    fig = branch_ratio_figure({"pre-norm (at initialisation)": [0.5, 0.3],
                               "pre-norm (trained)": [0.9, 0.2]}, colors=TRANSFORMER_PALETTE)
    assert [t.line.dash for t in fig.data] == ["dash", "solid"]
    assert list(fig.data[0].x) == [1, 2] and fig.layout.yaxis.type == "log"
    assert [t.line.color for t in fig.data] == ["#56B4E9", "#009E73"]
