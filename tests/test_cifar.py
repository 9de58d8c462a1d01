"""CIFAR-layout nets, their blocks and shortcuts, and the lesion helpers."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from skiplab.blocks import BasicBlock, PlainBasicBlock, ShortcutA, ShortcutB, make_shortcut
from skiplab.models import CifarNet, CifarNetConfig, cifar_depths
from skiplab.probes import (delete_block, delete_layer, fit_identity, lesion_study,
                            plain_layer_sites)


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def net(depth=8, skip="residual", dims=2, **kw) -> CifarNet:
    torch.manual_seed(0)
    return CifarNet(CifarNetConfig(depth=depth, skip=skip, dims=dims, in_channels=1,
                                   widths=(4, 8, 16), **kw))


def images(dims=2, n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (n, 1, 8, 8) if dims == 2 else (n, 1, 40)
    return torch.randn(shape, generator=g), torch.randint(0, 10, (n,), generator=g)


@pytest.mark.parametrize("depth", [8, 14, 20, 32])
@pytest.mark.parametrize("dims", [1, 2])
def test_layer_count_is_6n_plus_2(depth, dims):
    for skip in ("none", "residual"):
        model = net(depth, skip, dims)
        n = (depth - 2) // 6
        assert len(model.weight_layers()) == depth
        assert len(model.blocks()) == 3 * n
        assert model(images(dims)[0]).shape == (6, 10)


def test_option_a_twins_have_identical_parameter_counts():
    for depth in (8, 20, 56):
        assert count(net(depth, "residual")) == count(net(depth, "none"))
    assert count(ShortcutA(4, 8, 2)) == 0


def test_pinned_parameter_counts_match_the_paper():
    # He et al. (2016), Table 6: ResNet-20 0.27M, ResNet-56 0.85M, ResNet-110 1.7M
    counts = {d: count(CifarNet(CifarNetConfig(depth=d))) for d in (20, 56, 110)}
    assert counts == {20: 269_722, 56: 853_018, 110: 1_727_962}


def test_option_b_adds_projection_parameters_only_where_shapes_change():
    a, b = net(20, "residual"), net(20, "residual", shortcut="B")
    projections = [blk.shortcut for blk in b.blocks() if isinstance(blk.shortcut, ShortcutB)]
    assert len(projections) == 2  # first block of stages 2 and 3
    assert count(b) - count(a) == sum(count(p) for p in projections) > 0
    assert len(b.weight_layers()) == 20  # projections are not counted as layers


def test_valid_depths_and_clear_errors():
    assert cifar_depths(4) == [8, 14, 20, 26]
    with pytest.raises(ValueError, match="6n \\+ 2"):
        CifarNetConfig(depth=21)
    with pytest.raises(ValueError, match="dims"):
        CifarNetConfig(dims=3)
    with pytest.raises(ValueError, match=r"expects \(B, C, H, W\) with C = 1, got \(2, 3, 8, 8\)"):
        net()(torch.randn(2, 3, 8, 8))
    with pytest.raises(ValueError, match="C = 4"):
        BasicBlock(4, 4)(torch.randn(2, 5, 8, 8))
    with pytest.raises(ValueError, match="option B"):
        ShortcutA(8, 4)
    with pytest.raises(ValueError, match="accepted: 'A', 'B'"):
        make_shortcut(4, 8, 2, option="C")


@pytest.mark.parametrize("skip,shortcut,dims", [("none", "A", 2), ("none", "B", 2),
                                                ("residual", "A", 2), ("residual", "B", 2),
                                                ("residual", "A", 1)])
def test_every_parameter_gets_a_gradient(skip, shortcut, dims):
    model = net(8, skip, dims, shortcut=shortcut)
    x, y = images(dims)
    F.cross_entropy(model(x), y).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_shortcut_a_subsamples_and_appends_zero_channels():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    out = ShortcutA(3, 5, stride=2)(x)
    assert out.shape == (2, 5, 2, 2)
    assert torch.equal(out[:, :3], x[:, :, ::2, ::2])
    assert torch.equal(out[:, 3:], torch.zeros(2, 2, 2, 2))
    out1d = ShortcutA(3, 4, stride=2)(torch.ones(2, 3, 6))
    assert out1d.shape == (2, 4, 3) and out1d[:, 3].abs().sum() == 0


def test_residual_and_plain_block_share_the_branch():
    torch.manual_seed(1)
    plain = PlainBasicBlock(4, 8, 2)
    residual = BasicBlock(4, 8, 2)
    residual.branch.load_state_dict(plain.branch.state_dict())
    x = torch.randn(3, 4, 8, 8)
    expected = torch.relu(plain.branch(x) + ShortcutA(4, 8, 2)(x))
    assert torch.allclose(residual(x), expected)
    assert torch.allclose(plain(x), torch.relu(plain.branch(x)))


def test_zero_init_last_starts_as_the_shortcut():
    block = BasicBlock(4, 8, 2, zero_init_last=True)
    x = torch.relu(torch.randn(3, 4, 8, 8))
    assert torch.equal(block(x), torch.relu(block.shortcut(x)))


def test_deleted_block_keeps_the_shortcut_and_leaves_the_original_alone():
    model = net(14, "residual").eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    lesioned = delete_block(model, 2)  # first block of stage 2: option A shortcut
    assert len(lesioned.blocks()) == len(model.blocks()) - 1
    assert isinstance(lesioned.stages[1][0], ShortcutA)
    x, _ = images()
    assert lesioned(x).shape == (6, 10)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert len(model.blocks()) == 6


def test_deleting_a_block_whose_branch_outputs_zero_changes_nothing():
    model = net(14, "residual").eval()
    last_norm = model.blocks()[4].branch[-1].norm
    nn.init.zeros_(last_norm.weight)
    nn.init.zeros_(last_norm.bias)
    x, _ = images()
    assert torch.allclose(delete_block(model, 4)(x), model(x), atol=1e-6)
    assert not torch.allclose(delete_block(model, 2)(x), model(x), atol=1e-6)


def test_plain_layer_sites_and_deletion():
    model = net(14, "none").eval()
    sites = plain_layer_sites(model)
    assert len(sites) == 12  # 6n convolutions inside the blocks
    not_deletable = [i for i, s in enumerate(sites) if not s.deletable]
    assert not_deletable == [4, 8]  # first conv of stages 2 and 3
    lesioned = delete_layer(model, 1)
    x, _ = images()
    assert lesioned(x).shape == (6, 10)
    assert len(lesioned.weight_layers()) == 13
    with pytest.raises(ValueError, match="changes the shape"):
        delete_layer(model, 4)
    with pytest.raises(ValueError, match="delete_layer"):
        delete_block(model, 0)
    with pytest.raises(IndexError):
        delete_layer(model, 12)


def test_lesion_study_covers_every_block_or_deletable_layer():
    x, y = images(n=20)
    residual = lesion_study(net(14, "residual").eval(), x, y)
    plain = lesion_study(net(14, "none").eval(), x, y)
    assert sorted(residual) == list(range(6))
    assert sorted(plain) == [i for i in range(12) if i not in (4, 8)]
    assert all(0.0 <= a <= 1.0 for a in [*residual.values(), *plain.values()])


def test_fit_identity_scores_the_identity_zero_and_improves_a_block():
    torch.manual_seed(0)
    exact = fit_identity(BasicBlock(4, 4, zero_init_last=True), (4, 6, 6), steps=0)
    assert exact.initial_error == exact.final_error == 0.0
    torch.manual_seed(0)
    fit = fit_identity(BasicBlock(4, 4), (4, 6, 6), steps=30)
    assert fit.final_error < fit.initial_error


def test_skip_variants_and_their_symmetric_pair():
    from skiplab.models import SKIP_VARIANTS, SkipVariantMLP
    from skiplab.probes import clone_unit_, permute_units_

    x = torch.randn(5, 64, dtype=torch.float64)
    for variant in SKIP_VARIANTS:
        torch.manual_seed(0)
        model = SkipVariantMLP(64, 10, 8, variant=variant).double().eval()
        assert model(x).shape == (5, 10)
        before = model(x)
        permute_units_(model.mid, model.out, torch.tensor([1, 0, 2, 3, 4, 5, 6, 7]),
                       offset=model.offset)
        changed = not torch.allclose(model(x), before, atol=1e-9)
        assert changed == (variant == "additive"), variant
        clone_unit_(model.mid, model.out, 0, 1, offset=model.offset)
    with pytest.raises(ValueError, match="accepted"):
        SkipVariantMLP(64, 10, variant="gated")
