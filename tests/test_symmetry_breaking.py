"""The symmetry chapter's deciding experiment: symmetry broken without an identity path, an
identity-free (orthogonal) shortcut, and the depthwise-convolution permutation."""

import pytest
import torch
from torch import nn

from skiplab.figures.symmetry import replicate_figure
from skiplab.models import DeepMLP, MLPConfig
from skiplab.models.symmetry_breaking import (FrozenEntryLinear, break_unit_symmetry,
                                              orthogonal_shortcuts, random_orthogonal)
from skiplab.probes import permute_stream_
from skiplab.probes.symmetry import permute_depthwise_channels_


def mlp(architecture, depth=5, width=6):
    torch.manual_seed(0)
    return DeepMLP(MLPConfig(7, 3, depth=depth, width=width, activation="tanh", init="xavier",
                             architecture=architecture)).double()


def test_break_unit_symmetry_freezes_columns_and_distinct_biases():
    plain = mlp("plain")
    before = {k: v.clone() for k, v in plain.state_dict().items()}
    net = break_unit_symmetry(plain, n_frozen=2, bias_spread=0.5, seed=3)
    assert all(torch.equal(v, plain.state_dict()[k]) for k, v in before.items()), \
        "the source net was modified"
    layers = net.hidden_modules()
    assert all(isinstance(m.linear, FrozenEntryLinear) for m in layers)
    for source, layer in zip(plain.hidden_modules(), layers):
        lin = layer.linear
        # step 0: the weights are the source's; biases evenly spaced, all distinct
        assert torch.equal(lin.weight, source.linear.weight)
        assert torch.allclose(lin.bias.sort().values,
                              torch.linspace(-0.5, 0.5, lin.out_features, dtype=torch.float64))
        assert int(lin.frozen_mask[0].sum()) == 2 and bool((lin.frozen_mask == lin.frozen_mask[0]).all())
    # trainable parameters: the source's minus frozen biases and frozen columns
    n_frozen = sum(m.linear.out_features * 3 for m in layers)   # bias + 2 columns per unit
    assert sum(p.numel() for p in net.parameters()) == \
        sum(p.numel() for p in plain.parameters()) - n_frozen
    # a training step moves only the free entries
    x, y = torch.randn(20, 7, dtype=torch.float64), torch.randint(0, 3, (20,))
    frozen = [(m.linear.weight.detach()[m.linear.frozen_mask].clone(), m.linear.bias.clone())
              for m in layers]
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    nn.functional.cross_entropy(net(x), y).backward()
    opt.step()
    for (w, b), m in zip(frozen, layers):
        assert torch.equal(m.linear.weight.detach()[m.linear.frozen_mask], w)
        assert torch.equal(m.linear.bias, b)
    assert not torch.equal(layers[1].linear.weight, plain.hidden_modules()[1].linear.weight)


def test_break_unit_symmetry_rejects_a_residual_net_and_bad_arguments():
    with pytest.raises(ValueError, match="plain net"):
        break_unit_symmetry(mlp("residual"))
    with pytest.raises(ValueError, match="n_frozen"):
        break_unit_symmetry(mlp("plain"), n_frozen=6)
    with pytest.raises(ValueError, match="bias_spread"):
        break_unit_symmetry(mlp("plain"), bias_spread=0.0)


def test_orthogonal_shortcuts_remove_the_stream_permutation():
    residual = mlp("residual")
    orth = orthogonal_shortcuts(residual, seed=1)
    qs = [b.shortcut.q for b in orth.blocks]
    for q in qs:
        assert torch.allclose(q @ q.T, torch.eye(6, dtype=torch.float64), atol=1e-12)
    assert not torch.allclose(qs[0], qs[1])
    assert all(isinstance(b.shortcut, nn.Identity) for b in residual.blocks)
    x = torch.randn(30, 7, dtype=torch.float64)
    perm = torch.roll(torch.arange(6), 1)
    change = {}
    for name, net in (("identity", residual), ("orthogonal", orth)):
        with torch.no_grad():
            before = net(x)
            permute_stream_(net.stem.linear, [b.linear for b in net.blocks], net.readout, perm)
            change[name] = (net(x) - before).abs().max().item()
    assert change["identity"] < 1e-12
    assert change["orthogonal"] > 1e-3
    with pytest.raises(ValueError, match="residual"):
        orthogonal_shortcuts(mlp("plain"))


def test_random_orthogonal_is_orthogonal_and_seeded():
    a = random_orthogonal(5, torch.Generator().manual_seed(0), dtype=torch.float64)
    b = random_orthogonal(5, torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.equal(a, b)
    assert torch.allclose(a.T @ a, torch.eye(5, dtype=torch.float64), atol=1e-12)


def test_permuting_depthwise_channels_with_their_filters_is_a_symmetry():
    torch.manual_seed(0)
    producer, depthwise, pointwise = (nn.Conv2d(3, 6, 3, padding=1),
                                      nn.Conv2d(6, 6, 3, padding=1, groups=6),
                                      nn.Conv2d(6, 4, 1))
    block = nn.Sequential(producer, nn.Tanh(), depthwise, nn.Tanh(), pointwise).double()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    perm = torch.tensor([2, 0, 5, 1, 3, 4])
    with torch.no_grad():
        before = block(x)
        permute_depthwise_channels_(producer, depthwise, pointwise, perm)
        assert (block(x) - before).abs().max().item() < 1e-12
        depthwise.weight.copy_(depthwise.weight[perm])      # filters alone: not a symmetry
        assert (block(x) - before).abs().max().item() > 1e-3
    with pytest.raises(ValueError, match="groups"):
        permute_depthwise_channels_(producer, nn.Conv2d(6, 6, 3), pointwise, perm)


def test_replicate_figure():
    fig = replicate_figure({"plain": [0.5, 0.7], "residual": [0.1]}, yaxis_title="loss")
    assert [t.name for t in fig.data] == ["plain", "residual"]
    assert fig.layout.yaxis.type == "log"
    with pytest.raises(ValueError):
        replicate_figure({"plain": []}, yaxis_title="loss")

