import pytest
import torch
from torch import nn

from skiplab.blocks import PlainLinearBlock, ResidualLinearBlock
from skiplab.models import ARCHITECTURES, DeepMLP, MLPConfig
from skiplab.probes import hidden_grad_norms, layer_grad_norms


def batch(n=16, features=64, classes=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, features, generator=g), torch.randint(0, classes, (n,), generator=g)


# ReZero's branches start switched off (alpha = 0) and get their first gradient one step
# later: tests/test_skips.py checks that instead
@pytest.mark.parametrize("architecture", [a for a in ARCHITECTURES if a != "rezero"])
@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
def test_shapes_and_every_parameter_gets_a_gradient(architecture, activation):
    model = DeepMLP(MLPConfig(64, 10, depth=5, width=12, activation=activation,
                              architecture=architecture))
    x, y = batch()
    logits = model(x)
    assert logits.shape == (16, 10)
    nn.functional.cross_entropy(logits, y).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert len(model.weight_layers()) == 5 and len(model.hidden_modules()) == 4


def test_image_inputs_are_flattened():
    model = DeepMLP(MLPConfig(64, 10, depth=3, width=8))
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_pinned_parameter_counts():
    # stem 64*64+64, 18 blocks of 64*64+64, readout 64*10+10; BatchNorm adds 2*64 per layer
    plain = DeepMLP(MLPConfig(64, 10, depth=20, width=64))
    bn = DeepMLP(MLPConfig(64, 10, depth=20, width=64, architecture="plain_bn"))
    residual = DeepMLP(MLPConfig(64, 10, depth=20, width=64, architecture="residual"))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(plain) == 19 * (64 * 64 + 64) + 650 == 79_690
    assert count(residual) == count(plain)
    assert count(bn) == count(plain) + 19 * 128


def test_residual_jacobian_is_identity_plus_branch():
    torch.manual_seed(0)
    block = ResidualLinearBlock(6, act_layer=nn.Tanh, init="xavier").double()
    x = torch.randn(1, 6, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(block, x).reshape(6, 6)
    branch = torch.autograd.functional.jacobian(block.branch, x).reshape(6, 6)
    torch.testing.assert_close(jac, torch.eye(6, dtype=torch.float64) + branch)


def test_residual_block_with_a_silent_branch_is_the_identity():
    block = ResidualLinearBlock(5, act_layer=nn.ReLU)
    with torch.no_grad():
        block.linear.weight.zero_()
        block.linear.bias.fill_(-1.0)  # relu(-1) = 0: the branch adds nothing
    x = torch.randn(3, 5)
    torch.testing.assert_close(block(x), x)


def test_wrong_shapes_are_clear_errors():
    with pytest.raises(ValueError, match=r"expects \(B, 8\), got \(2, 7\)"):
        ResidualLinearBlock(8)(torch.randn(2, 7))


@pytest.mark.parametrize("field,value,message", [
    ("depth", 2, "depth=2"),
    ("architecture", "dense", "accepted: 'plain', 'plain_bn', 'residual', 'rezero'"),
    ("activation", "gelu", "accepted: 'sigmoid', 'tanh', 'relu'"),
    ("init", "orthogonal", "accepted: 'normal', 'xavier', 'kaiming'"),
])
def test_config_errors_name_the_accepted_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        MLPConfig(64, 10, **{field: value})


@pytest.mark.parametrize("init,expected_std", [("normal", 1.0), ("xavier", (2 / 512) ** 0.5),
                                               ("kaiming", (2 / 256) ** 0.5)])
def test_initialisation_scales(init, expected_std):
    torch.manual_seed(0)
    layer = PlainLinearBlock(256, 256, init=init).linear
    assert abs(layer.weight.std().item() - expected_std) / expected_std < 0.05
    assert torch.count_nonzero(layer.bias) == 0


def test_layer_grad_norms_match_autograd():
    torch.manual_seed(0)
    model = DeepMLP(MLPConfig(64, 10, depth=4, width=8, architecture="residual"))
    x, y = batch()
    norms = layer_grad_norms(model, x, y)
    nn.functional.cross_entropy(model(x), y).backward()
    expected = torch.stack([m.weight.grad.double().norm() for m in model.weight_layers()])
    torch.testing.assert_close(norms, expected)


def test_hidden_grad_norms_match_retained_gradients():
    torch.manual_seed(0)
    model = DeepMLP(MLPConfig(64, 10, depth=5, width=8, activation="tanh"))
    x, y = batch()
    norms = hidden_grad_norms(model, x, y)
    hidden = []
    h = model.stem(x)
    h.retain_grad()
    hidden.append(h)
    for block in model.blocks:
        h = block(h)
        h.retain_grad()
        hidden.append(h)
    nn.functional.cross_entropy(model.readout(h), y).backward()
    torch.testing.assert_close(norms, torch.stack([t.grad.double().norm() for t in hidden]))


def test_identity_path_carries_the_gradient_unchanged_through_silent_branches():
    torch.manual_seed(0)
    model = DeepMLP(MLPConfig(64, 10, depth=6, width=8, activation="relu",
                              architecture="residual"))
    with torch.no_grad():
        for block in model.blocks:
            block.linear.weight.zero_()
            block.linear.bias.fill_(-1.0)
    norms = hidden_grad_norms(model, *batch())
    torch.testing.assert_close(norms, norms[-1].expand_as(norms))
