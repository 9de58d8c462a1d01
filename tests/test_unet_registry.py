"""The registered U-Nets (family "unet" in skiplab.models.REGISTRY) by the properties every
registered model has, and the U-Net's level block (skiplab.blocks.unet) by its contract:
the short skip's kinds, injectable norm and activation, the long skip's merges."""

import dataclasses

import pytest
import torch
from torch import nn

from skiplab.blocks.skips import SKIPS
from skiplab.blocks.unet import DoubleConv, center_crop, merge_long_skip
from skiplab.models import REGISTRY, count_parameters
from skiplab.models.unet import UNet, UNetConfig, unet_sizes

UNETS = sorted(name for name, spec in REGISTRY.items() if spec.family == "unet")
SMALL = UNetConfig(base_width=4, depth=2, padding="same", norm=True)


def output_side(model: UNet, side: int) -> int:
    c = model.config
    return unet_sizes(side, c.depth, "valid")["decoder"][-1] if c.padding == "valid" else side


def test_the_registry_holds_same_residual_and_valid_unets():
    assert UNETS == ["unet-small", "unet-small-residual", "unet-small-valid"]


# tests/test_architectures.py runs every registered model (these included) through the shared
# properties: output (B, n_classes, ...), finite, a gradient to every parameter and the input.
# Here only what it cannot know: the exact output side of each U-Net.
@pytest.mark.parametrize("name", UNETS)
def test_registered_unet_gives_per_pixel_logits_of_its_exact_side(name):
    spec = REGISTRY[name]
    torch.manual_seed(0)
    model = spec.build().eval()
    with torch.no_grad():
        out = model(torch.randn(2, *spec.example_shape))
    side = output_side(model, spec.example_shape[-1])
    assert out.shape == (2, spec.n_classes, side, side)


@pytest.mark.parametrize("name, expected", [
    # base width 4, depth 2, 1 channel in, 2 classes; by hand: encoder 196 + 896 + 3,520,
    # decoder (2x2 up-conv + level) 2,280 + 580, classifier 10 (BatchNorm, no conv biases)
    ("unet-small", 7_482),
    # + 1x1 projections on the five levels whose channels change: 4 + 32 + 128 + 128 + 32
    ("unet-small-residual", 7_806),
    # no BatchNorm (2 per channel) but conv biases (1 per channel): 80 fewer
    ("unet-small-valid", 7_402)])
def test_registered_unet_parameter_counts(name, expected):
    assert count_parameters(REGISTRY[name].build()) == expected


@pytest.mark.parametrize("name", UNETS)
def test_the_same_seed_builds_the_same_unet(name):
    spec = REGISTRY[name]
    x = torch.randn(2, *spec.example_shape)
    models = []
    for _ in range(2):
        torch.manual_seed(0)
        models.append(spec.build().eval())
    first, second = (m.state_dict() for m in models)
    assert list(first) == list(second)
    assert all(torch.equal(first[k], second[k]) for k in first)
    with torch.no_grad():
        assert torch.equal(models[0](x), models[1](x))


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_rezero_level_starts_as_the_identity_on_its_stream(padding):
    torch.manual_seed(0)
    x = torch.randn(2, 4, 12, 12)
    side = 12 if padding == "same" else 8
    block = DoubleConv(4, 4, padding=padding, norm_layer=nn.BatchNorm2d, skip="rezero",
                       act_layer=nn.Identity)
    assert torch.equal(block(x), center_crop(x, (side, side)))
    projected = DoubleConv(4, 6, padding=padding, skip="rezero")     # ReLU after the sum
    assert torch.equal(projected(x), torch.relu(center_crop(projected.shortcut(x),
                                                            (side, side))))


def test_rezero_unet_first_step_trains_the_gates_not_the_branches():
    torch.manual_seed(0)
    model = UNet(dataclasses.replace(SMALL, skip="rezero")).train()
    model(torch.randn(2, 1, 16, 16)).square().mean().backward()
    levels = [stage.convs for stage in [*model.encoder, *model.decoder]]
    assert all(level.skip.alpha.grad != 0 for level in levels)
    branches = [p for level in levels for part in ("conv1", "norm1", "conv2", "norm2")
                for p in getattr(level, part).parameters()]
    assert branches and all(torch.equal(p.grad, torch.zeros_like(p)) for p in branches)
    assert model.classifier.weight.grad.abs().sum() > 0


def test_residual_level_is_the_projected_cropped_input_plus_the_branch():
    torch.manual_seed(0)
    block = DoubleConv(3, 5, padding="valid", norm_layer=nn.BatchNorm2d, skip="residual").eval()
    x = torch.randn(2, 3, 10, 10)
    with torch.no_grad():
        branch = block.norm2(block.conv2(torch.relu(block.norm1(block.conv1(x)))))
        expected = torch.relu(branch + center_crop(block.shortcut(x), (6, 6)))
        assert torch.equal(block(x), expected)
    assert isinstance(block.shortcut, nn.Conv2d) and block.shortcut.bias is None
    assert isinstance(DoubleConv(5, 5, skip="residual").shortcut, nn.Identity)
    assert isinstance(DoubleConv(3, 5).shortcut, nn.Identity)       # the plain twin: no stream


def test_level_takes_injected_norm_and_activation():
    block = DoubleConv(4, 8, padding="same", norm_layer=lambda c: nn.GroupNorm(2, c),
                       act_layer=nn.GELU)
    assert isinstance(block.norm2, nn.GroupNorm) and isinstance(block.act1, nn.GELU)
    assert block.conv1.bias is None and block(torch.randn(2, 4, 6, 6)).shape == (2, 8, 6, 6)
    paper = DoubleConv(4, 8)                         # valid, no norm: the convs have biases
    assert paper.conv2.bias is not None and isinstance(paper.norm1, nn.Identity)
    assert paper(torch.randn(2, 4, 10, 10)).shape == (2, 8, 6, 6)
    with pytest.raises(ValueError, match="padding='full' is not known"):
        DoubleConv(4, 8, padding="full")


@pytest.mark.parametrize("kind", sorted(k for k in SKIPS if not SKIPS[k].needs_depth))
def test_every_skip_kind_builds_a_unet(kind):
    model = UNet(dataclasses.replace(SMALL, skip=kind))
    assert all(type(stage.convs.skip) is SKIPS[kind]
               for stage in [*model.encoder, *model.decoder])
    assert model(torch.randn(2, 1, 16, 16)).shape == (2, 2, 16, 16)


def test_a_skip_kind_that_needs_the_depth_is_a_clear_error_in_a_unet():
    with pytest.raises(ValueError, match="needs the stack's depth"):
        UNet(dataclasses.replace(SMALL, skip="deepnorm"))


def test_long_skip_merges():
    up, encoder_map = torch.randn(1, 2, 4, 4), torch.randn(1, 2, 6, 6)
    cropped = encoder_map[..., 1:5, 1:5]
    assert torch.equal(merge_long_skip(up, encoder_map, "concat"), torch.cat([cropped, up], 1))
    assert torch.equal(merge_long_skip(up, encoder_map, "add"), up + cropped)
    assert merge_long_skip(up, encoder_map, "none") is up
    with pytest.raises(ValueError, match="long_skip='sum' is not known"):
        merge_long_skip(up, encoder_map, "sum")
