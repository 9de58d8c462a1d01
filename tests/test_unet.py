"""U-Net anatomy and long-skip merges, procedural segmentation data, metrics, upsampling
probes. The registered U-Nets' properties are in test_unet_registry.py."""

import dataclasses

import pytest
import torch
from torch import nn

from skiplab.data import load_shapes, make_shapes
from skiplab.models.unet import (UNet, UNetConfig, center_crop, local_net, match_decoder_scale,
                                 unet_sizes, unet_valid_sizes)
from skiplab.probes import checkerboard_share, conv_matrix
from skiplab.segmentation import boundary_f1, mean_iou, thin_iou, train_segmentation

SMALL = UNetConfig(base_width=4, depth=2, padding="same", norm=True)


def count(m):
    return sum(p.numel() for p in m.parameters())


def test_the_papers_configuration_maps_572_to_388_with_the_figures_sizes():
    model = UNet(UNetConfig())             # valid, depth 4, base 64, 1 channel, 2 classes
    # Ronneberger et al. figure 1: every map's side after each conv, pool and up-conv
    sizes = unet_sizes(572)
    assert sizes["encoder"] == [570, 568, 284, 282, 280, 140, 138, 136, 68, 66, 64, 32, 30, 28]
    assert sizes["decoder"] == [56, 54, 52, 104, 102, 100, 200, 198, 196, 392, 390, 388]
    # 23 convolutions (18 3x3, 4 up-convs 2x2, one 1x1) with biases, no normalisation:
    # computed once from this model and by hand per layer, pinned here
    assert count(model) == 31_030_658
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert len(convs) == 23
    with torch.no_grad():
        out = model(torch.randn(1, 1, 572, 572))
    assert out.shape == (1, 2, 388, 388)


def test_an_input_the_valid_network_cannot_take_names_the_nearest_sizes():
    model = UNet(dataclasses.replace(SMALL, padding="valid", norm=False))
    with pytest.raises(ValueError, match=r"nearest valid sizes: \["):
        model(torch.randn(1, 1, 50, 50))
    near = unet_valid_sizes(2, "valid", near=50)
    assert all(unet_sizes(n, 2, "valid") for n in near)
    assert unet_valid_sizes(4, "valid", near=570) == [540, 556, 572, 588]


@pytest.mark.parametrize("long_skip", ["concat", "add", "none"])
@pytest.mark.parametrize("upsample", ["transpose", "interpolate"])
def test_same_padding_keeps_the_size_and_every_parameter_learns(long_skip, upsample):
    torch.manual_seed(0)
    model = UNet(dataclasses.replace(SMALL, long_skip=long_skip, upsample=upsample,
                                     skip="residual"))
    x = torch.randn(2, 1, 16, 16)
    out = model(x)
    assert out.shape == (2, 2, 16, 16)
    out.square().mean().backward()
    silent = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not silent


def test_same_padding_refuses_sizes_not_divisible():
    with pytest.raises(ValueError, match="divisible by 4"):
        UNet(SMALL)(torch.randn(1, 1, 18, 18))


def test_without_long_skips_the_first_level_reaches_the_output_only_through_the_bottleneck():
    torch.manual_seed(0)
    x = torch.randn(2, 1, 16, 16)
    for long_skip, changes in (("none", False), ("concat", True), ("add", True)):
        model = UNet(dataclasses.replace(SMALL, long_skip=long_skip)).eval()
        with torch.no_grad():
            intact = model(x)
            # zero the first level's features *in the skip only*: the encoder keeps them
            first = model.decoder[-1]
            original = first.merge
            first.merge = lambda up, s, original=original: original(up, torch.zeros_like(s))
            zeroed = model(x)
            first.merge = original
        assert (not torch.allclose(intact, zeroed)) == changes, long_skip


def test_center_crop_and_its_error():
    x = torch.arange(36.0).view(1, 1, 6, 6)
    assert center_crop(x, (2, 2)).flatten().tolist() == [14.0, 15.0, 20.0, 21.0]
    with pytest.raises(ValueError, match="larger"):
        center_crop(x, (7, 6))


def test_matching_parameter_counts_across_long_skip_merges():
    reference = count(UNet(dataclasses.replace(SMALL, base_width=8, depth=3)))
    for long_skip in ("add", "none"):
        matched = match_decoder_scale(dataclasses.replace(SMALL, base_width=8, depth=3,
                                                          long_skip=long_skip), reference)
        assert abs(count(UNet(matched)) - reference) <= 0.01 * reference


def test_config_errors_name_the_choices():
    with pytest.raises(ValueError, match="long_skip='sum' is not known; accepted: 'concat', "
                                         "'add', 'none'"):
        UNetConfig(long_skip="sum")
    with pytest.raises(ValueError, match="skip='gated' is not known; accepted: 'none', "
                                         "'residual', 'rezero'"):
        UNetConfig(skip="gated")
    with pytest.raises(ValueError, match="pass long_skip='concat'"):   # the old name's use
        UNetConfig(skip="concat")
    with pytest.raises(ValueError, match="expects \\(B, 1, H, W\\)"):
        UNet(SMALL)(torch.randn(1, 3, 16, 16))


def test_local_net_sees_a_five_by_five_window():
    torch.manual_seed(0)
    net = local_net(width=4).eval()
    x = torch.randn(1, 1, 15, 15, requires_grad=True)
    net(x)[0, 1, 7, 7].backward()
    rows, cols = torch.nonzero(x.grad[0, 0], as_tuple=True)
    assert rows.min() == 5 and rows.max() == 9 and cols.min() == 5 and cols.max() == 9


def test_shapes_data_is_deterministic_and_has_thin_structures():
    a, b = make_shapes(4, 32, seed=3), make_shapes(4, 32, seed=3)
    assert a[3].any() and not (a[3] & (a[1] == 1)).any()      # decoys are background
    assert all((u == v).all() for u, v in zip(a, b))
    images, masks, thin, _ = a
    assert images.shape == (4, 32, 32) and set(masks.ravel().tolist()) <= {0, 1}
    assert thin.any() and (masks[thin] == 1).all()
    split = load_shapes(n_train=8, n_test=4, size=24, device="cpu")
    assert split.x_train.shape == (8, 1, 24, 24) and split.y_test.shape == (4, 24, 24)
    assert not torch.equal(split.x_train[:4], split.x_test)


def test_metrics_on_hand_examples():
    target = torch.zeros(1, 8, 8, dtype=torch.long)
    target[0, 4, :] = 1                                  # a one-pixel line
    thin = target.bool()
    assert thin_iou(target, target, thin) == 1.0
    from skiplab.segmentation import decoy_rate
    assert decoy_rate(target, torch.zeros_like(thin)) != decoy_rate(target, torch.zeros_like(thin))  # NaN
    assert thin_iou(torch.zeros_like(target), target, thin) == 0.0
    shifted = torch.roll(target, 1, dims=1)              # off by one pixel
    assert thin_iou(shifted, target, thin) == 0.0
    assert boundary_f1(shifted, target, tolerance=1) == 1.0
    assert boundary_f1(shifted, target, tolerance=0) == 0.0
    assert mean_iou(target, target) == 1.0


def test_training_improves_the_thin_structure_metric():
    torch.manual_seed(0)
    data = load_shapes(n_train=64, n_test=16, size=32, seed=0, device="cpu")
    model = UNet(dataclasses.replace(SMALL, base_width=8))
    history = train_segmentation(model, data, steps=40, record_every=20, seed=0,
                                 show_progress=False)
    assert history.step == [0, 20, 40]
    assert history.final("loss") < history.metrics["loss"][0]


def test_transposed_convolution_is_the_transpose():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, stride=2, padding=1, bias=False).double()
    matrix = conv_matrix(conv, (2, 6, 6))
    x = torch.randn(2, 6, 6, dtype=torch.float64)
    y = torch.randn(3, 3, 3, dtype=torch.float64)
    transpose = nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1, output_padding=1,
                                   bias=False).double()
    transpose.weight.data.copy_(conv.weight)
    with torch.no_grad():
        torch.testing.assert_close(matrix @ x.flatten(), conv(x[None]).flatten())
        torch.testing.assert_close(matrix.T @ y.flatten(), transpose(y[None]).flatten())


def test_checkerboard_share_separates_strided_transpose_from_interpolation():
    torch.manual_seed(0)
    assert checkerboard_share(nn.ConvTranspose2d(4, 4, 2, stride=2), 4) > 0.99
    smooth = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(4, 4, 3, padding=1))
    assert checkerboard_share(smooth, 4) < 1e-6


def test_unet_figures():
    import numpy as np

    from skiplab.figures import level_profile_figure, segmentation_grid_figure

    grid = segmentation_grid_figure(np.zeros((3, 4, 4)), {"truth": np.ones((3, 4, 4))})
    (slider,) = grid.layout.sliders
    assert len(slider.steps) == 3 and len(slider.steps[2].args[0]["z"]) == 2
    lines = level_profile_figure({"a": [1e-9, 1e-3], "no long skips": [1.0, 2.0]})
    assert lines.layout.yaxis.type == "log" and lines.data[1].line.dash == "dash"


def test_he_initialisation_option():
    model = UNet(dataclasses.replace(SMALL, norm=False, init="he"))
    conv = model.encoder[1].convs.conv1
    assert conv.bias.abs().max() == 0
    fan_in = conv.weight[0].numel()
    assert abs(conv.weight.std().item() - (2 / fan_in) ** 0.5) < 0.3 * (2 / fan_in) ** 0.5
    with pytest.raises(ValueError, match="'pytorch', 'he'"):
        UNetConfig(init="xavier")
