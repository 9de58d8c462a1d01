"""The identity-at-initialisation schemes: LayerScale, Highway and DeepNorm skips, the residual
tower's branch initialisations, and the signal-propagation probe."""

import math

import pytest
import torch
from torch import nn

from skiplab.blocks import (
    BRANCH_INITS,
    DeepNormSkip,
    Highway,
    LayerScale,
    ResidualMLPBlock,
    deepnorm_alpha,
    deepnorm_beta,
    make_skip,
)
from skiplab.models import (
    ResidualTower,
    SequenceModel,
    TowerConfig,
    TransformerConfig,
    init_transformer_,
)
from skiplab.probes import signal_propagation

D = 6


def pair(shape=(4, D), seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64),
            torch.randn(shape, generator=g, dtype=torch.float64))


def test_layerscale_is_stream_plus_a_tenth_of_the_branch_per_channel():
    skip = LayerScale(D).double()
    s, f = pair()
    assert torch.all(skip.scale == torch.tensor(0.1).double())   # 0.1 as float32, then .double()
    torch.testing.assert_close(skip(s, f), s + skip.scale * f, rtol=0, atol=0)
    with torch.no_grad():
        skip.scale.copy_(torch.arange(D, dtype=torch.float64))
    torch.testing.assert_close(skip(s, f), s + torch.arange(D) * f)
    conv = LayerScale(D, channel_dim=1).double()            # (B, C, H, W) maps
    s4, f4 = pair((2, D, 3, 3))
    with torch.no_grad():
        conv.scale.copy_(torch.arange(D, dtype=torch.float64))
    torch.testing.assert_close(conv(s4, f4), s4 + torch.arange(D).view(1, D, 1, 1) * f4)


def test_layerscale_scale_gets_a_gradient_and_needs_channels():
    skip = LayerScale(D)
    s, f = pair()
    skip(s.float(), f.float()).sum().backward()
    assert skip.scale.grad is not None and skip.scale.grad.abs().min() > 0
    with pytest.raises(ValueError, match="per channel"):
        LayerScale()


def test_highway_formula_gate_bias_and_carry():
    skip = Highway(D).double()
    assert torch.all(skip.transform.bias == -2.0)
    s, f = pair()
    t = torch.sigmoid(s @ skip.transform.weight.T + skip.transform.bias)
    torch.testing.assert_close(skip(s, f), t * f + (1 - t) * s)
    with torch.no_grad():                      # a closed gate carries the stream unchanged
        skip.transform.weight.zero_()
        skip.transform.bias.fill_(-100.0)
    torch.testing.assert_close(skip(s, f), s)
    conv = Highway(D, channel_dim=1).double()
    s4, _ = pair((2, D, 3, 3))
    t4 = conv.gate(s4)
    manual = torch.sigmoid(torch.einsum("bchw,dc->bdhw", s4, conv.transform.weight)
                           + conv.transform.bias.view(1, D, 1, 1))
    torch.testing.assert_close(t4, manual)


def test_highway_gate_parameters_get_gradients():
    skip = Highway(D)
    s, f = pair()
    skip(s.float(), f.float()).pow(2).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in skip.parameters())


def test_deepnorm_constants_and_formula():
    assert deepnorm_alpha(8) == pytest.approx(16 ** 0.25)
    assert deepnorm_beta(8) == pytest.approx(64 ** -0.25)
    skip = DeepNormSkip(D, depth=8)
    s, f = pair()
    torch.testing.assert_close(skip(s, f), 2.0 * s + f)
    with pytest.raises(ValueError, match="needs the stack's depth"):
        make_skip("deepnorm", D)


def test_deepnorm_transformer_scales_value_output_and_ffn_weights_by_beta():
    config = {"vocab_size": 7, "d_model": 8, "n_heads": 2, "n_layers": 4, "norm": "post"}
    torch.manual_seed(0)
    plain = SequenceModel(TransformerConfig(**config))
    torch.manual_seed(0)
    deep = SequenceModel(TransformerConfig(**config, skip="deepnorm"))
    beta = deepnorm_beta(4)
    for a, b in zip(plain.blocks, deep.blocks):
        assert b.skip1.alpha == b.skip2.alpha == pytest.approx(8 ** 0.25)
        for name in ("v_proj", "out_proj"):
            torch.testing.assert_close(getattr(b.self_attn, name).weight,
                                       beta * getattr(a.self_attn, name).weight)
        for name in ("q_proj", "k_proj"):
            torch.testing.assert_close(getattr(b.self_attn, name).weight,
                                       getattr(a.self_attn, name).weight)
        for name in ("linear1", "linear2"):
            torch.testing.assert_close(getattr(b.ff, name).weight, beta * getattr(a.ff, name).weight)
    x = torch.randint(0, 7, (2, 5))
    block, h = deep.blocks[0], deep.embed(x) + deep.positions.table[:5]
    want = block.norm1(deepnorm_alpha(4) * h + block.self_attn(h))
    torch.testing.assert_close(block.norm1(block.skip1(h, block.self_attn(h))), want)
    assert deep(x).shape == (2, 5, 7)
    init_transformer_(deep, "xavier")          # the model keeps it; re-initialising is the user's
    with pytest.raises(ValueError, match="norm='post'"):
        TransformerConfig(**{**config, "norm": "pre"}, skip="deepnorm")


@pytest.mark.parametrize("norm, branch_init", [("none", "zero"), ("pre", "zero"),
                                               ("post", "zero"), ("none", "fixup"),
                                               ("pre", "fixup")])
def test_zero_start_branch_inits_make_each_block_exactly_the_identity(norm, branch_init):
    torch.manual_seed(0)
    tower = ResidualTower(TowerConfig(10, 3, blocks=5, width=8, norm=norm,
                                      branch_init=branch_init))
    streams = tower.streams(torch.randn(16, 10))
    assert all(torch.equal(s, streams[0]) for s in streams)


def test_fixup_and_gpt2_scaling_by_depth():
    torch.manual_seed(0)
    default = ResidualMLPBlock(32, 64, depth=16)
    torch.manual_seed(0)
    fixup = ResidualMLPBlock(32, 64, branch_init="fixup", depth=16)
    torch.manual_seed(0)
    scaled = ResidualMLPBlock(32, 64, branch_init="scaled", depth=16)
    torch.testing.assert_close(fixup.linear1.weight, default.linear1.weight / 4)
    assert not fixup.linear2.weight.any()
    torch.testing.assert_close(scaled.linear2.weight, default.linear2.weight / 4)
    torch.testing.assert_close(scaled.linear1.weight, default.linear1.weight)
    with pytest.raises(ValueError, match="depth"):
        ResidualMLPBlock(8, branch_init="fixup")
    with pytest.raises(ValueError, match="branch_init"):
        ResidualMLPBlock(8, branch_init="lsuv")
    assert set(BRANCH_INITS) == {"default", "zero", "fixup", "scaled"}


def test_zero_gamma_zeroes_the_last_batchnorm_weight():
    block = ResidualMLPBlock(8, norm="post", branch_init="zero")
    assert not block.post_norm.weight.any() and block.linear2.weight.any()


@pytest.mark.parametrize("skip", ["residual", "rezero", "layerscale", "highway", "none"])
@pytest.mark.parametrize("norm", ["none", "pre", "post"])
def test_tower_shapes_and_gradients_reach_every_parameter(skip, norm):
    torch.manual_seed(0)
    tower = ResidualTower(TowerConfig(12, 3, blocks=3, width=8, skip=skip, norm=norm))
    x = torch.randn(5, 2, 6)                   # flattened to (5, 12)
    out = tower(x)
    assert out.shape == (5, 3)
    nn.functional.cross_entropy(out, torch.tensor([0, 1, 2, 0, 1])).backward()
    # ReZero's branches get their first gradient one step later (alpha = 0)
    silent = ("branch", "linear") if skip == "rezero" else ()
    for name, p in tower.named_parameters():
        if silent and name.startswith("blocks.") and not name.endswith("alpha"):
            continue
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert len(tower.streams(x)) == 4


def test_tower_config_errors_name_the_accepted_values():
    with pytest.raises(ValueError, match="accepted"):
        TowerConfig(4, 2, norm="layer")
    with pytest.raises(ValueError, match="accepted"):
        TowerConfig(4, 2, skip="gated")
    with pytest.raises(ValueError, match=">= 1"):
        TowerConfig(4, 2, blocks=0)
    assert TowerConfig(4, 2, blocks=7, norm="pre", branch_init="scaled").name == \
        "residual-pre-norm-scaled-init-7"


def test_signal_propagation_matches_a_hand_computed_profile():
    torch.manual_seed(0)
    tower = ResidualTower(TowerConfig(10, 4, blocks=6, width=8)).double()
    x = torch.randn(32, 10, dtype=torch.float64)
    profile = signal_propagation(tower, x, seed=3)
    streams = tower.streams(x)
    for s in streams:
        s.retain_grad()
    out = tower.readout(streams[-1])
    direction = torch.randn(out.shape, generator=torch.Generator().manual_seed(3),
                            dtype=torch.float64)
    ((out * direction).sum() / out.numel() ** 0.5).backward()
    torch.testing.assert_close(profile.forward, torch.stack([s.pow(2).mean() for s in streams]))
    torch.testing.assert_close(profile.backward,
                               torch.stack([s.grad.pow(2).mean().sqrt() for s in streams]))


def test_signal_propagation_shows_doubling_without_a_norm_and_flat_identity():
    torch.manual_seed(0)
    x = torch.randn(256, 16, dtype=torch.float64)
    unscaled = signal_propagation(ResidualTower(TowerConfig(16, 2, blocks=40, width=64))
                                  .double(), x)
    growth = math.log2(unscaled.forward[-1] / unscaled.forward[0]) / 40
    assert 0.8 < growth < 1.1
    rezero = signal_propagation(ResidualTower(TowerConfig(16, 2, blocks=40, width=64,
                                                          skip="rezero")).double(), x)
    assert torch.all(rezero.forward == rezero.forward[0])


def test_signal_propagation_on_a_transformer_and_its_errors():
    model = SequenceModel(TransformerConfig(vocab_size=7, d_model=8, n_heads=2, n_layers=3))
    profile = signal_propagation(model, torch.randint(0, 7, (2, 5)))
    assert profile.forward.shape == profile.backward.shape == (4,)
    assert torch.all(profile.backward > 0)
    with pytest.raises(ValueError, match="at least one block"):
        signal_propagation(model, torch.randint(0, 7, (2, 5)), blocks=[])
