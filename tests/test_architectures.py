"""ResNet and DenseNet families: properties over the model registry, and parity with
torchvision (random weights, nothing downloaded)."""

import pytest
import torch
import torchvision
from torch import nn

from skiplab.blocks import (BasicBlock, Bottleneck, DenseBlock, DenseLayer, PreActBlock,
                            ShortcutA, Transition)
from skiplab.models import (REGISTRY, CifarNet, CifarNetConfig, DenseNetConfig, ResNetConfig,
                            build_model, count_parameters, densenet121, densenet_bc,
                            densenet_from_torchvision, load_torchvision_resnet,
                            resnet18, resnet34, resnet50, resnet_from_torchvision)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_registered_model_maps_its_input_to_logits_and_trains_every_parameter(name):
    spec = REGISTRY[name]
    torch.manual_seed(0)
    model = spec.build().train()
    x = torch.randn(2, *spec.example_shape, requires_grad=True)
    out = model(x)
    # classifiers give (B, n_classes); segmenters (family "unet") per-pixel logits
    # (B, n_classes, H', W'), their exact sides checked in tests/test_unet_registry.py
    assert out.shape[:2] == (2, spec.n_classes)
    assert out.dim() == (4 if spec.family == "unet" else 2)
    assert torch.isfinite(out).all()
    out.square().sum().backward()
    silent = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not silent, f"parameters with no gradient: {silent[:5]}"
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_unknown_model_name_lists_the_known_ones():
    with pytest.raises(KeyError, match="resnet-20"):
        build_model("resnet-21")


@pytest.mark.parametrize("name, expected", [
    ("resnet18", 11_689_512), ("resnet34", 21_797_672), ("resnet50", 25_557_032),
    ("densenet121", 7_978_856)])
def test_parameter_counts_equal_torchvision(name, expected):
    ours = count_parameters(build_model(name))
    theirs = count_parameters(getattr(torchvision.models, name)())
    assert ours == theirs == expected


@pytest.mark.parametrize("name, expected", [
    # He et al. 2016 table 6 gives 0.27M, 0.46M, 0.66M, 0.85M, 1.7M for these depths
    ("resnet-20", 269_722), ("resnet-32", 464_154), ("resnet-44", 658_586),
    ("resnet-56", 853_018), ("resnet-110", 1_727_962),
    # Huang et al. 2017 table 2: DenseNet-BC (L=100, k=12) has 0.8M
    ("densenet-bc-100", 769_162)])
def test_cifar_parameter_counts_are_the_published_ones(name, expected):
    assert count_parameters(build_model(name)) == expected


@pytest.mark.parametrize("depth", [20, 56, 110])
def test_option_a_twins_have_identical_parameter_counts(depth):
    counts = {kind: count_parameters(build_model(f"{kind}-{depth}"))
              for kind in ("plain", "resnet", "preact-resnet")}
    assert len(set(counts.values())) == 1, counts
    shortcuts = [m for m in build_model(f"resnet-{depth}").modules()
                 if isinstance(m, ShortcutA)]
    assert len(shortcuts) == 2 and all(count_parameters(s) == 0 for s in shortcuts)


def _randomise_batchnorm(model: nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial statistics and affine parameters, so parity is
    not a coincidence of weight 1, bias 0, mean 0, variance 1."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50", "densenet121"])
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_converted_torchvision_models_give_the_same_outputs(name, mode):
    torch.manual_seed(0)
    reference = getattr(torchvision.models, name)()
    _randomise_batchnorm(reference)
    convert = densenet_from_torchvision if name.startswith("densenet") else resnet_from_torchvision
    ours = convert(reference)
    reference.train(mode == "train")
    ours.train(mode == "train")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected, got = reference(x), ours(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert expected.abs().max() > 1e-2     # not trivially equal because both are ~zero


def test_converter_names_what_does_not_fit():
    with pytest.raises(ValueError, match="shapes differ"):
        load_torchvision_resnet(resnet18(n_classes=10), torchvision.models.resnet18().state_dict())
    with pytest.raises(KeyError, match="match no conversion rule"):
        load_torchvision_resnet(resnet18(), torchvision.models.densenet121().state_dict())
    with pytest.raises(KeyError, match="missing"):
        load_torchvision_resnet(resnet50(), torchvision.models.resnet18().state_dict())


def test_resnet_embedding_sizes_and_bad_input():
    assert resnet18().embedding_dim == resnet34().embedding_dim == 512
    assert resnet50().embedding_dim == 2048
    with pytest.raises(ValueError, match=r"expects \(B, 3, H, W\)"):
        resnet18()(torch.randn(2, 1, 64, 64))
    with pytest.raises(ValueError, match="block="):
        ResNetConfig(block="dense")


@pytest.mark.parametrize("stride, c_in, c_out", [(1, 8, 8), (2, 8, 16), (1, 8, 16)])
@pytest.mark.parametrize("option", ["A", "B"])
def test_block_shapes(stride, c_in, c_out, option):
    x = torch.randn(2, c_in, 8, 8)
    for block in (BasicBlock(c_in, c_out, stride, shortcut=option),
                  PreActBlock(c_in, c_out, stride, shortcut=option)):
        assert block(x).shape == (2, c_out, 8 // stride, 8 // stride)
    bottleneck = Bottleneck(c_in, c_out // 4 or 1, stride, shortcut="B")
    assert bottleneck(x).shape == (2, bottleneck.out_channels, 8 // stride, 8 // stride)


def test_zero_initialised_blocks_start_as_their_shortcut():
    torch.manual_seed(0)
    x = torch.randn(4, 8, 6, 6)
    pre = PreActBlock(8, 8, zero_init_last=True).train()
    assert torch.equal(pre(x), x)                      # exactly the identity, negatives kept
    bottleneck = Bottleneck(8, 2, zero_init_last=True).train()
    assert torch.equal(bottleneck(x), torch.relu(x))   # relu(0 + x)


def test_preact_stream_carries_no_activation_between_blocks():
    torch.manual_seed(0)
    net = CifarNet(CifarNetConfig(depth=8, norm="pre", widths=(4, 8, 16), in_channels=1))
    stream = net.stages[0](net.stem(torch.randn(4, 1, 8, 8)))
    assert (stream < 0).any()      # a post-activation block would end in ReLU: never negative
    with pytest.raises(ValueError, match="norm='pre' needs a skip, not skip='none'"):
        CifarNetConfig(norm="pre", skip="none")


def test_dense_layer_passes_its_input_through_unchanged():
    torch.manual_seed(0)
    layer = DenseLayer(10, growth_rate=4)
    x = torch.randn(3, 10, 5, 5)
    y = layer(x)
    assert y.shape == (3, 14, 5, 5)
    assert torch.equal(y[:, :10], x)
    with pytest.raises(ValueError, match="10 channels in all"):
        layer(torch.randn(3, 9, 5, 5))


def test_dense_block_equals_its_layers_applied_in_sequence():
    torch.manual_seed(0)
    block = DenseBlock(6, n_layers=3, growth_rate=4).eval()
    x = torch.randn(2, 6, 7, 7)
    sequential = x
    for layer in block.layers:
        sequential = layer(sequential)
    torch.testing.assert_close(block(x), sequential)
    assert block(x).shape[1] == block.out_channels == 6 + 3 * 4


def test_transition_compresses_and_halves():
    assert Transition(20, 10)(torch.randn(2, 20, 8, 8)).shape == (2, 10, 4, 4)


@pytest.mark.parametrize("dims", [1, 2])
def test_checkpointed_dense_block_equals_the_plain_one(dims):
    torch.manual_seed(0)
    plain = DenseBlock(6, n_layers=4, growth_rate=3, dims=dims).train()
    efficient = DenseBlock(6, n_layers=4, growth_rate=3, dims=dims, efficient=True).train()
    efficient.load_state_dict(plain.state_dict())
    shape = (5, 6, 9, 9) if dims == 2 else (5, 6, 30)
    x1 = torch.randn(shape, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    y1, y2 = plain(x1), efficient(x2)
    torch.testing.assert_close(y2, y1)
    weights = torch.randn_like(y1)
    (y1 * weights).sum().backward()
    (y2 * weights).sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad)
    for (name, p1), (_, p2) in zip(plain.named_parameters(), efficient.named_parameters()):
        torch.testing.assert_close(p2.grad, p1.grad, msg=name)
    # the recomputation in backward must not move BatchNorm's running statistics twice
    for (name, b1), (_, b2) in zip(plain.named_buffers(), efficient.named_buffers()):
        torch.testing.assert_close(b2, b1, msg=name)


def test_efficient_densenet_switch_keeps_outputs():
    torch.manual_seed(0)
    model = densenet_bc(40, 4).eval()
    x = torch.randn(2, 3, 16, 16)
    before = model(x)
    model.set_efficient(True)
    torch.testing.assert_close(model(x), before)
    assert all(layer.efficient for block in model.blocks for layer in block.layers)


def test_densenet_configuration_errors():
    with pytest.raises(ValueError, match="6m \\+ 4"):
        densenet_bc(depth=99)
    with pytest.raises(ValueError, match="compression"):
        DenseNetConfig(compression=0)
    assert densenet121().embedding_dim == 1024
