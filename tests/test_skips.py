"""The skip vocabulary: every block family and model config takes ``skip=``, ReZero behaves
as its paper says, a new kind is one class plus one line, and norms and activations are
injectable."""

from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from skiplab.blocks import (SKIPS, BasicBlock, Bottleneck, DecoderBlock, EncoderBlock,
                            PlainBasicBlock, PreActBlock, ResidualLinearBlock, ReZero, Skip)
from skiplab.models import (CifarNet, CifarNetConfig, DeepMLP, MLPConfig, SequenceModel,
                            TransformerConfig, architectures)

D, H = 16, 2


def _set_alpha(block: nn.Module, value: float) -> None:
    with torch.no_grad():
        for m in block.modules():
            if isinstance(m, ReZero):
                m.alpha.fill_(value)


def _encoder_reference(block, x, a):
    """x = x + a F(LN(x)) for each sub-layer (pre-norm)."""
    x = x + a * block.self_attn(block.norm1(x))
    return x + a * block.ff(block.norm2(x))


def _decoder_reference(block, x, memory, a):
    """x = LN(x + a F(x)) for each sub-layer (post-norm)."""
    x = block.norm1(x + a * block.self_attn(x))
    x = block.norm2(x + a * block.cross_attn(x, memory))
    return block.norm3(x + a * block.ff(x))


def _case(name):
    """(block, inputs, reference(a) = the block's formula with alpha = a, branch parameters,
    the block at alpha = 0 written as a function of its stream)."""
    torch.manual_seed(0)
    if name == "linear":
        block = ResidualLinearBlock(6, skip="rezero", act_layer=nn.Tanh).double()
        x = torch.randn(5, 6, dtype=torch.float64)
        return (block, (x,), lambda a: x + a * block.branch(x), block.branch.parameters(),
                lambda: x)
    if name in ("basic", "bottleneck", "preact"):
        if name == "basic":
            block, x = BasicBlock(4, 8, 2, skip="rezero"), torch.randn(3, 4, 8, 8)
        elif name == "bottleneck":
            block, x = Bottleneck(8, 4, 2, skip="rezero"), torch.randn(3, 8, 8, 8)
        else:
            block, x = PreActBlock(4, 8, 2, skip="rezero"), torch.randn(3, 4, 8, 8)
        block = block.double().train()
        x = x.double()
        act = nn.Identity() if name == "preact" else torch.relu
        return (block, (x,), lambda a: act(block.shortcut(x) + a * block.branch(x)),
                block.branch.parameters(), lambda: act(block.shortcut(x)))
    if name == "encoder":
        block = EncoderBlock(D, H, norm="pre", skip="rezero").double()
        x = torch.randn(2, 5, D, dtype=torch.float64)
        branch = [*block.self_attn.parameters(), *block.ff.parameters(),
                  *block.norm1.parameters(), *block.norm2.parameters()]
        return block, (x,), lambda a: _encoder_reference(block, x, a), branch, lambda: x
    block = DecoderBlock(D, H, norm="post", skip="rezero").double()
    x, memory = torch.randn(2, 5, D, dtype=torch.float64), torch.randn(2, 4, D, dtype=torch.float64)
    branch = [*block.self_attn.parameters(), *block.cross_attn.parameters(),
              *block.ff.parameters()]
    return (block, (x, memory), lambda a: _decoder_reference(block, x, memory, a), branch,
            lambda: block.norm3(block.norm2(block.norm1(x))))


FAMILIES = ["linear", "basic", "bottleneck", "preact", "encoder", "decoder"]


@pytest.mark.parametrize("family", FAMILIES)
def test_a_rezero_block_starts_as_exactly_the_identity_on_its_stream(family):
    block, inputs, _, _, identity = _case(family)
    skips = [m for m in block.modules() if isinstance(m, Skip)]
    assert skips and all(isinstance(m, ReZero) for m in skips)
    with torch.no_grad():
        assert torch.equal(block(*inputs), identity())


@pytest.mark.parametrize("family", FAMILIES)
def test_at_alpha_zero_alpha_gets_a_gradient_and_the_branch_none(family):
    block, inputs, _, branch, _ = _case(family)
    out = block(*inputs)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1),
                          dtype=out.dtype)
    (out * weights).sum().backward()
    alphas = [m.alpha for m in block.modules() if isinstance(m, ReZero)]
    assert all(a.grad is not None and a.grad.abs() > 1e-8 for a in alphas)
    branch = list(branch)
    assert branch and all(p.grad is None or not p.grad.any() for p in branch)


@pytest.mark.parametrize("family", FAMILIES)
def test_rezero_computes_stream_plus_alpha_times_branch(family):
    block, inputs, reference, _, _ = _case(family)
    _set_alpha(block, 0.37)
    with torch.no_grad():
        torch.testing.assert_close(block(*inputs), reference(0.37), rtol=1e-12, atol=1e-12)
        assert not torch.allclose(block(*inputs), reference(0.0))


def test_every_model_config_accepts_rezero_and_starts_as_the_identity():
    torch.manual_seed(0)
    mlp = DeepMLP(MLPConfig(12, 3, depth=5, width=8, architecture="rezero"))
    h = mlp.stem(torch.randn(4, 12))
    assert "rezero" in architectures() and torch.equal(mlp.blocks(h), h)
    cifar = CifarNet(CifarNetConfig(depth=8, skip="rezero", widths=(4, 8, 16), in_channels=1))
    assert cifar.config.name == "rezero-resnet-8" and cifar.config.residual
    h = cifar.stem(torch.randn(2, 1, 8, 8))          # after a ReLU: relu(h) = h
    assert torch.equal(cifar.stages[0](h), h)
    assert cifar(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    pre = CifarNet(CifarNetConfig(depth=8, skip="rezero", norm="pre", widths=(4, 8, 16),
                                  in_channels=1))
    assert pre.config.name == "preact-rezero-resnet-8"
    h = torch.randn(2, 4, 8, 8)
    assert torch.equal(pre.stages[0](h), h)
    config = TransformerConfig(vocab_size=7, d_model=D, n_heads=H, n_layers=3, skip="rezero")
    assert config.name == "pre-norm-3-rezero"
    streams = SequenceModel(config).streams(torch.randint(0, 7, (2, 6)))
    assert all(torch.equal(s, streams[0]) for s in streams)


@pytest.mark.parametrize("build", [
    lambda: ResidualLinearBlock(4, skip="gated"),
    lambda: BasicBlock(4, 4, skip="gated"),
    lambda: Bottleneck(4, 1, skip="gated"),
    lambda: PreActBlock(4, 4, skip="gated"),
    lambda: EncoderBlock(D, H, skip="gated"),
    lambda: DecoderBlock(D, H, skip="gated"),
    lambda: CifarNetConfig(skip="gated"),
    lambda: TransformerConfig(vocab_size=5, skip="gated"),
])
def test_unknown_kinds_are_errors_that_list_the_kinds(build):
    with pytest.raises(ValueError, match=r"skip='gated' is not known; accepted: 'none', "
                                         r"'residual', 'rezero'"):
        build()


def test_unknown_architectures_and_placements_list_what_is_accepted():
    with pytest.raises(ValueError, match="architecture='gated' is not known; accepted: 'plain', "
                                         "'plain_bn', 'residual', 'rezero'"):
        MLPConfig(4, 2, architecture="gated")
    with pytest.raises(ValueError, match=r"norm='mid' is not known; accepted: 'post' \("):
        CifarNetConfig(norm="mid")
    with pytest.raises(ValueError, match="norm='pre' needs a skip, not skip='none'"):
        CifarNetConfig(norm="pre", skip="none")
    with pytest.raises(ValueError, match="zero_init_last=True needs a skip"):
        BasicBlock(4, 4, skip="none", zero_init_last=True)


class Halfway(Skip):
    """stream + branch / 2: a kind the library does not ship."""

    def forward(self, stream: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        return stream + 0.5 * branch


def test_a_new_kind_is_one_class_plus_one_line(monkeypatch):
    monkeypatch.setitem(SKIPS, "halfway", Halfway)   # the one line, here as a monkeypatch
    torch.manual_seed(0)
    mlp = DeepMLP(MLPConfig(12, 3, depth=4, width=8, architecture="halfway"))
    h = mlp.stem(torch.randn(5, 12))
    block = mlp.blocks[0]
    assert isinstance(block.skip, Halfway)
    torch.testing.assert_close(block(h), h + 0.5 * block.branch(h))
    cifar = CifarNet(CifarNetConfig(depth=8, skip="halfway", widths=(4, 8, 16), in_channels=1))
    assert cifar.config.name == "halfway-resnet-8"
    assert all(isinstance(b.skip, Halfway) for b in cifar.blocks())
    assert cifar(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    config = TransformerConfig(vocab_size=7, d_model=D, n_heads=H, n_layers=2, skip="halfway")
    model = SequenceModel(config)
    assert config.name == "pre-norm-2-halfway"
    assert all(isinstance(b.skip1, Halfway) and isinstance(b.skip2, Halfway)
               for b in model.blocks)
    assert model(torch.randint(0, 7, (2, 6))).shape == (2, 6, 7)


def test_the_plain_basic_block_is_the_basic_block_without_a_skip():
    torch.manual_seed(0)
    plain = PlainBasicBlock(4, 8, 2)
    torch.manual_seed(0)
    none = BasicBlock(4, 8, 2, skip="none", shortcut="B")
    assert plain.shortcut is None and none.shortcut is None
    assert not plain.residual and not none.residual and BasicBlock(4, 4).residual
    assert plain.state_dict().keys() == none.state_dict().keys()
    assert all(torch.equal(v, none.state_dict()[k]) for k, v in plain.state_dict().items())
    x = torch.randn(3, 4, 8, 8)
    assert torch.equal(plain(x), none(x))


def _calls(block: nn.Module, kinds: tuple[type, ...]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name, m in block.named_modules():
        if isinstance(m, kinds):
            m.register_forward_hook(
                lambda *_, name=name: counts.__setitem__(name, counts.get(name, 0) + 1))
    return counts


def test_conv_blocks_take_any_norm_and_activation():
    torch.manual_seed(0)
    group_norm = partial(nn.GroupNorm, 2)
    block = BasicBlock(4, 8, 2, shortcut="B", norm_layer=group_norm, act_layer=nn.GELU)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in block.modules())
    calls = _calls(block, (nn.GroupNorm, nn.GELU))
    x = torch.randn(3, 4, 8, 8)
    out = block(x)
    assert calls == {"branch.0.norm": 1, "branch.0.act": 1, "branch.1.norm": 1,
                     "shortcut.1": 1, "act": 1}

    def gn(norm, t):
        return F.group_norm(t, 2, norm.weight, norm.bias, norm.eps)

    first, second, projection = block.branch[0], block.branch[1], block.shortcut
    branch = gn(second.norm, second.conv(F.gelu(gn(first.norm, first.conv(x)))))
    torch.testing.assert_close(out, F.gelu(gn(projection[1], projection[0](x)) + branch))
    pre = PreActBlock(4, 4, norm_layer=partial(nn.GroupNorm, 1), act_layer=nn.SiLU)
    calls = _calls(pre, (nn.GroupNorm, nn.SiLU))
    pre(torch.randn(2, 4, 6, 6))
    assert calls == {f"branch.{i}.{part}": 1 for i in (0, 1) for part in ("norm", "act")}
    bottleneck = Bottleneck(8, 4, norm_layer=partial(nn.GroupNorm, 2), act_layer=nn.GELU)
    assert sum(isinstance(m, nn.GroupNorm) for m in bottleneck.modules()) == 4  # + projection
    assert sum(isinstance(m, nn.GELU) for m in bottleneck.modules()) == 3
    assert bottleneck(torch.randn(2, 8, 5, 5)).shape == (2, 16, 5, 5)


def test_linear_and_transformer_blocks_take_any_norm_and_activation():
    torch.manual_seed(0)
    block = ResidualLinearBlock(6, norm_layer=nn.LayerNorm, act_layer=nn.Tanh)
    x = torch.randn(5, 6)
    norm = block.branch.norm
    assert isinstance(norm, nn.LayerNorm) and isinstance(block.branch.act, nn.Tanh)
    expected = x + torch.tanh(F.layer_norm(block.linear(x), (6,), norm.weight, norm.bias))
    torch.testing.assert_close(block(x), expected)
    encoder = EncoderBlock(D, H, norm="pre", norm_layer=nn.RMSNorm, act_layer=nn.GELU)
    assert isinstance(encoder.norm1, nn.RMSNorm) and isinstance(encoder.ff.activation, nn.GELU)
    calls = _calls(encoder, (nn.RMSNorm, nn.GELU))
    encoder(torch.randn(2, 5, D))
    assert calls == {"norm1": 1, "norm2": 1, "ff.activation": 1}
