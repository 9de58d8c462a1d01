"""The architecture checkers: reference solutions and valid variants pass; each plausible
mistake is rejected with the property and the hint meant for it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from torch import nn

from checkhelp import rejects

from skiplab.blocks.dense import DenseLayer
from skiplab.blocks.residual import BasicBlock
from skiplab.checks import (CheckFailed, check_basic_block, check_crop_and_concat,
                            check_dense_layer)
from skiplab.models.unet import center_crop

# ---------------------------------------------------------------------------------------------
# ResNet basic block


def conv3x3(c_in: int, c_out: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=bias)


class RefBlock(nn.Module):
    """The reference solution (torchvision's layout): (B, C_in, H, W) -> (B, C_out, H/s, W/s)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels))

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.branch(x) + self.shortcut(x))


class BiasStrideSecondBlock(nn.Module):
    """Valid: conv biases, stride on the second conv, projection = 1x1 conv alone, the identity
    as a lambda, layers registered shortcut first, in-place ReLU and +=."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.down = (nn.Conv2d(in_channels, out_channels, 1, stride=stride)
                     if stride != 1 or in_channels != out_channels else None)
        self.skip: Callable[[torch.Tensor], torch.Tensor] = self.down or (lambda t: t)
        self.c1, self.n1 = conv3x3(in_channels, out_channels, bias=True), \
            nn.BatchNorm2d(out_channels)
        self.c2, self.n2 = conv3x3(out_channels, out_channels, stride, bias=True), \
            nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.n2(self.c2(self.relu(self.n1(self.c1(x)))))
        out += self.skip(x)
        return self.relu(out)


class ZeroInitBlock(RefBlock):
    """Valid: the last BatchNorm starts at zero (Goyal et al.), shortcut `x` written inline."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__(in_channels, out_channels, stride)
        self.same = stride == 1 and in_channels == out_channels
        nn.init.zeros_(self.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.branch(x) + (x if self.same else self.shortcut(x)))


@pytest.mark.parametrize("block_cls", [
    RefBlock, BiasStrideSecondBlock, ZeroInitBlock,
    lambda i, o, s: BasicBlock(i, o, s, shortcut="A"),
    lambda i, o, s: BasicBlock(i, o, s, shortcut="B"),
], ids=["reference", "bias-stride-second", "zero-init", "book-option-A", "book-option-B"])
def test_basic_block_valid(block_cls):
    report = check_basic_block(block_cls)
    assert "all" in report and "addition before the final ReLU" in report


class ReluBeforeAdd(RefBlock):
    def forward(self, x):
        return F.relu(self.branch(x)) + self.shortcut(x)


class NoFinalRelu(RefBlock):
    def forward(self, x):
        return self.branch(x) + self.shortcut(x)


class PlainBlock(RefBlock):
    def forward(self, x):
        return F.relu(self.branch(x))


class AlwaysProject(RefBlock):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__(in_channels, out_channels, stride)
        self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride,
                                                bias=False), nn.BatchNorm2d(out_channels))


class NoDownsample(RefBlock):
    """The shortcut is always the identity: crashes at the addition when the shape changes."""

    def forward(self, x):
        return F.relu(self.branch(x) + x)


class ProjectionWithoutStride(RefBlock):
    """Projects only when the channels change, and forgets the stride."""

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__(in_channels, out_channels, stride)
        self.shortcut = (nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels
                         else nn.Identity())


class ProjectsOnlyOnChannelChange(RefBlock):
    """Projects when the channels change, forgetting blocks that only down-sample."""

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__(in_channels, out_channels, stride)
        if in_channels == out_channels:
            self.shortcut = nn.Identity()


class SkipFromMiddle(RefBlock):
    """Adds the first layer's output instead of x."""

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(h)) + h)


class ReluOnBothSides(RefBlock):
    def forward(self, x):
        return F.relu(F.relu(self.branch(x)) + self.shortcut(x))


class UnusedNorm(RefBlock):
    def branch(self, x):
        return self.conv2(F.relu(self.bn1(self.conv1(x))))


class InPlaceShortcutAdd(RefBlock):
    """identity = shortcut(x) is x itself where the shapes agree: += changes the input."""

    def forward(self, x):
        identity = self.shortcut(x)
        identity += self.branch(x)
        return F.relu(identity)


@pytest.mark.parametrize("block_cls, prop, hint", [
    (ReluBeforeAdd, "addition before the final ReLU", "after adding the shortcut"),
    (InPlaceShortcutAdd, "forward runs", "the block must leave its input alone"),
    (NoFinalRelu, "output non-negative", "apply a ReLU to the sum"),
    (PlainBlock, "skip connection exists", "add the shortcut"),
    (AlwaysProject, "parameter-free identity shortcut", "1x1 projection"),
    (NoDownsample, "forward runs", r"passes x on unchanged, \(2, 8, 6, 8\)"),
    (ProjectionWithoutStride, "forward runs", "give the projection's 1x1 conv stride=2"),
    (ProjectsOnlyOnChannelChange, "forward runs", r"passes x on unchanged, \(2, 6, 7, 5\)"),
    (SkipFromMiddle, "shortcut carries the input", "not an intermediate result"),
    (ReluOnBothSides, "no ReLU before the addition", "branch ends with BatchNorm"),
    (UnusedNorm, "gradients reach every parameter", "never used in forward"),
], ids=lambda v: v.__name__ if isinstance(v, type) else None)
def test_basic_block_mistakes(block_cls, prop, hint):
    with pytest.raises(CheckFailed, match=rf"(?s)property '{prop}.*hint: .*{hint}") as info:
        check_basic_block(block_cls)
    assert "Traceback" not in str(info.value)


def test_basic_block_wrong_signature():
    with pytest.raises(CheckFailed, match=r"construction.*\n.*\n.*\n.*in_channels, out_ch"):
        check_basic_block(lambda c_in, c_out: RefBlock(c_in, c_out))


# the teacher's report: wrong blocks that used to pass, valid ones that used to crash


class SequentialBlock(nn.Module):
    """Valid: the branch as one nn.Sequential with in-place ReLU, the stride on conv1."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.branch = nn.Sequential(
            conv3x3(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True), conv3x3(out_channels, out_channels),
            nn.BatchNorm2d(out_channels))
        self.shortcut = (nn.Identity() if stride == 1 and in_channels == out_channels else
                         nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride),
                                       nn.BatchNorm2d(out_channels)))

    def forward(self, x):
        return F.relu(self.branch(x) + self.shortcut(x))


class LazyBlock(nn.Module):
    """Valid: lazy layers (shapes set by the first forward pass)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        o = out_channels
        self.conv1, self.bn1 = nn.LazyConv2d(o, 3, stride, padding=1), nn.LazyBatchNorm2d()
        self.conv2, self.bn2 = nn.LazyConv2d(o, 3, padding=1), nn.LazyBatchNorm2d()
        self.shortcut = (nn.Identity() if stride == 1 and in_channels == o else
                         nn.Sequential(nn.LazyConv2d(o, 1, stride), nn.LazyBatchNorm2d()))
        nn.init.zeros_  # the zero-init of the last BatchNorm happens after materialising

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(h)) + self.shortcut(x))


class FunctionalBlock(nn.Module):
    """Valid: F.conv2d and F.batch_norm on the block's own parameters and buffers."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        o, self.stride = out_channels, stride
        self.w1 = nn.Parameter(torch.randn(o, in_channels, 3, 3) * 0.2)
        self.w2 = nn.Parameter(torch.randn(o, o, 3, 3) * 0.2)
        self.project = stride != 1 or in_channels != o
        names = ("1", "2", "p") if self.project else ("1", "2")
        if self.project:
            self.wp = nn.Parameter(torch.randn(o, in_channels, 1, 1) * 0.3)
        for n in names:
            setattr(self, "g" + n, nn.Parameter(torch.ones(o)))
            setattr(self, "b" + n, nn.Parameter(torch.zeros(o)))
            self.register_buffer("mean" + n, torch.zeros(o))
            self.register_buffer("var" + n, torch.ones(o))

    def norm(self, t, n):
        return F.batch_norm(t, getattr(self, "mean" + n), getattr(self, "var" + n),
                            getattr(self, "g" + n), getattr(self, "b" + n), self.training)

    def forward(self, x):
        h = F.relu(self.norm(F.conv2d(x, self.w1, stride=self.stride, padding=1), "1"))
        branch = self.norm(F.conv2d(h, self.w2, padding=1), "2")
        shortcut = self.norm(F.conv2d(x, self.wp, stride=self.stride), "p") if self.project else x
        return torch.relu(branch + shortcut)


@pytest.mark.parametrize("block_cls", [SequentialBlock, LazyBlock, FunctionalBlock],
                         ids=["sequential", "lazy", "functional"])
def test_basic_block_valid_styles(block_cls):
    assert "gradient flows through the shortcut and the branch" in check_basic_block(block_cls)
    assert "all" in check_basic_block(block_cls, hidden=True)


class DetachedShortcut(RefBlock):
    def forward(self, x):
        return F.relu(self.branch(x) + self.shortcut(x.detach()))


class DataShortcut(RefBlock):
    def forward(self, x):
        return F.relu(self.branch(x) + (self.shortcut(x) if self.shortcut is not None and not
                                        isinstance(self.shortcut, nn.Identity) else x.data))


class NoMiddleRelu(RefBlock):
    def branch(self, x):
        return self.bn2(self.conv2(self.bn1(self.conv1(x))))


class ConvReluBn(RefBlock):
    def branch(self, x):
        return self.bn2(self.conv2(self.bn1(F.relu(self.conv1(x)))))


class ReluInsideProjection(RefBlock):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__(in_channels, out_channels, stride)
        if not isinstance(self.shortcut, nn.Identity):
            self.shortcut = nn.Sequential(*self.shortcut, nn.ReLU())


class ReluOnShortcut(RefBlock):
    def forward(self, x):
        return F.relu(self.branch(x) + F.relu(self.shortcut(x)))


class NormBeforeConv(RefBlock):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(in_channels)

    def branch(self, x):
        return self.bn2(self.conv2(F.relu(self.conv1(self.bn1(x)))))


class Projection3x3(RefBlock):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__(in_channels, out_channels, stride)
        if not isinstance(self.shortcut, nn.Identity):
            self.shortcut = nn.Sequential(conv3x3(in_channels, out_channels, stride),
                                          nn.BatchNorm2d(out_channels))


class NoPadding(RefBlock):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__(in_channels, out_channels, stride)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, bias=False)


class StrideOnBoth(RefBlock):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__(in_channels, out_channels, stride)
        self.conv2 = conv3x3(out_channels, out_channels, stride)


class IgnoresStride(RefBlock):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__(in_channels, out_channels, stride)
        self.conv1 = conv3x3(in_channels, out_channels, 1)


class NormAfterAddition(RefBlock):
    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(h) + self.shortcut(x)))


@pytest.mark.parametrize("block_cls, prop, hint", [
    (DetachedShortcut, "gradient flows through the shortcut and the branch",
     "the shortcut carries no gradient"),
    (DataShortcut, "gradient flows through the shortcut and the branch",
     "not x.detach() or x.data"),
    (NoMiddleRelu, "ReLU between the two convolutions", "the middle ReLU is missing"),
    (ConvReluBn, "conv -> BatchNorm -> ReLU order", "conv -> ReLU -> BN"),
    (ReluInsideProjection, "no ReLU on the shortcut", "a ReLU inside the projection"),
    (ReluOnShortcut, "no ReLU on the shortcut", "a ReLU on the shortcut before the sum"),
    (NormBeforeConv, "conv -> BatchNorm -> ReLU order", "BatchNorm placed before its conv"),
    (Projection3x3, "layer types: two 3x3 convs, their BatchNorms, a 1x1 projection",
     "a 3x3 projection"),
], ids=lambda v: v.__name__ if isinstance(v, type) else None)
def test_basic_block_mistakes_that_used_to_pass(block_cls, prop, hint):
    rejects(check_basic_block, block_cls, prop, hint)


@pytest.mark.parametrize("block_cls, prop, hint, avoid", [
    (NoPadding, "forward runs", "padding=1", "projection"),
    (StrideOnBoth, "forward runs", "only one of them (the first) takes the stride",
     "projection"),
    (IgnoresStride, "forward runs", "ignores the stride argument", "padding"),
    (NormAfterAddition, "BatchNorm before the addition", "bn2 comes after the addition",
     "add the shortcut:"),
], ids=lambda v: v.__name__ if isinstance(v, type) else None)
def test_basic_block_hint_names_the_cause(block_cls, prop, hint, avoid):
    """These used to get a hint for another mistake (give the projection stride=1, padding,
    add the shortcut): the hint must name what is wrong, and not the other thing."""
    rejects(check_basic_block, block_cls, prop, hint, avoid=avoid)


class HalfBlock(RefBlock):
    def forward(self, x):
        return super().forward(x).half()


class IntBlock(RefBlock):
    def forward(self, x):
        return super().forward(x).int()


@pytest.mark.parametrize("block_cls", [HalfBlock, IntBlock])
def test_basic_block_output_dtype_is_compared(block_cls):
    error = rejects(check_basic_block, block_cls, "output dtype", "keep the input's dtype")
    assert "torch.float32" in error.expected


def test_basic_block_hidden_sizes_catch_a_block_written_for_the_public_ones():
    class PublicSizesOnly(RefBlock):
        def forward(self, x):
            if x.shape[-2] in (5, 6, 7):        # the public check's heights
                return super().forward(x)
            return F.relu(self.branch(x))

    assert "all" in check_basic_block(PublicSizesOnly)
    rejects(check_basic_block, PublicSizesOnly, "skip connection exists", "add the shortcut",
            hidden=True)


# ---------------------------------------------------------------------------------------------
# DenseNet layer


class RefDense(nn.Module):
    """The reference (DenseNet-BC layer): (B, C, H, W) -> (B, C + k, H, W)."""

    def __init__(self, in_channels: int, growth_rate: int):
        super().__init__()
        self.new = nn.Sequential(
            nn.BatchNorm2d(in_channels), nn.ReLU(),
            nn.Conv2d(in_channels, 4 * growth_rate, 1, bias=False),
            nn.BatchNorm2d(4 * growth_rate), nn.ReLU(),
            nn.Conv2d(4 * growth_rate, growth_rate, 3, padding=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.new(x)], dim=1)


class PlainDense(nn.Module):
    """Valid: no bottleneck, conv bias, functional ReLU."""

    def __init__(self, in_channels: int, growth_rate: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(in_channels)
        self.conv = nn.Conv2d(in_channels, growth_rate, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((x, self.conv(F.relu(self.bn(x)))), 1)


@pytest.mark.parametrize("layer_cls", [RefDense, PlainDense, DenseLayer],
                         ids=["reference", "no-bottleneck", "book"])
def test_dense_layer_valid(layer_cls):
    assert "first C channels are the input" in check_dense_layer(layer_cls)


class CatBatch(RefDense):
    def forward(self, x):
        return torch.cat([x, self.new(x)], dim=0)


class CatWidth(RefDense):
    def forward(self, x):
        return torch.cat([x, self.new(x)], dim=-1)


class OnlyNew(RefDense):
    def forward(self, x):
        return self.new(x)


class NewFirst(RefDense):
    def forward(self, x):
        return torch.cat([self.new(x), x], dim=1)


class Adds(RefDense):
    def forward(self, x):
        return x + self.new(x)


class GrowsTwice(RefDense):
    def __init__(self, in_channels, growth_rate):
        super().__init__(in_channels, 2 * growth_rate)


class CatsNormalised(PlainDense):
    def forward(self, x):
        h = F.relu(self.bn(x))
        return torch.cat([h, self.conv(h)], 1)


class PostActivation(PlainDense):
    def __init__(self, in_channels, growth_rate):
        super().__init__(in_channels, growth_rate)
        self.bn = nn.BatchNorm2d(growth_rate)

    def forward(self, x):
        return torch.cat([x, F.relu(self.bn(self.conv(x)))], 1)


@pytest.mark.parametrize("layer_cls, prop, hint", [
    (CatBatch, "output shape", "batch axis"),
    (CatWidth, "output shape", "spatial axis"),
    (OnlyNew, "adds k new channels", "only the new features"),
    (NewFirst, "first C channels are the input", "new features come first"),
    (Adds, "adds k new channels", "added to x"),
    (GrowsTwice, "adds k new channels", "adds 2k channels"),
    (CatsNormalised, "first C channels are the input", r"not relu\(bn\(x\)\)"),
    (PostActivation, "BN-ReLU-conv order", "convolution comes last"),
], ids=lambda v: v.__name__ if isinstance(v, type) else None)
def test_dense_layer_mistakes(layer_cls, prop, hint):
    with pytest.raises(CheckFailed, match=rf"(?s)property '{prop}.*hint: .*{hint}"):
        check_dense_layer(layer_cls)


def test_dense_layer_crash_on_cat_axis_is_explained():
    """With C != k the wrong axis crashes inside torch.cat: read as a failed property."""
    class CatHeight(RefDense):
        def forward(self, x):
            return torch.cat([x, self.new(x)], dim=2)

    def make(c, k):
        return CatHeight(c, k) if c != k else RefDense(c, k)

    with pytest.raises(CheckFailed, match=r"(?s)'forward runs'.*spatial axis \(dim 2\)"):
        check_dense_layer(make)


# the teacher's report: wrong layers that used to pass, valid ones


class SequentialDense(nn.Sequential):
    """Valid: the layer as an nn.Sequential subclass whose forward concatenates."""

    def __init__(self, in_channels: int, growth_rate: int):
        super().__init__(nn.BatchNorm2d(in_channels), nn.ReLU(inplace=False),
                         nn.Conv2d(in_channels, growth_rate, 3, padding=1))

    def forward(self, x):
        return torch.cat([x, super().forward(x)], 1)


class LazyDense(nn.Module):
    """Valid: lazy layers and a bottleneck."""

    def __init__(self, in_channels: int, growth_rate: int):
        super().__init__()
        self.bn1, self.conv1 = nn.LazyBatchNorm2d(), nn.LazyConv2d(4 * growth_rate, 1)
        self.bn2, self.conv2 = nn.LazyBatchNorm2d(), nn.LazyConv2d(growth_rate, 3, padding=1)

    def forward(self, x):
        return torch.cat([x, self.conv2(F.relu(self.bn2(self.conv1(F.relu(self.bn1(x))))))], 1)


class FunctionalDense(nn.Module):
    """Valid: F.batch_norm (batch statistics) and F.conv2d on its own parameters."""

    def __init__(self, in_channels: int, growth_rate: int):
        super().__init__()
        self.gamma, self.beta = nn.Parameter(torch.ones(in_channels)), nn.Parameter(
            torch.zeros(in_channels))
        self.weight = nn.Parameter(torch.randn(growth_rate, in_channels, 3, 3) * 0.2)

    def forward(self, x):
        h = F.batch_norm(x, None, None, self.gamma, self.beta, training=True)
        return torch.cat([x, F.conv2d(F.relu(h), self.weight, padding=1)], 1)


@pytest.mark.parametrize("layer_cls", [SequentialDense, LazyDense, FunctionalDense],
                         ids=["sequential", "lazy", "functional"])
def test_dense_layer_valid_styles(layer_cls):
    assert "gradient flows through x and the new features" in check_dense_layer(layer_cls)
    assert "all" in check_dense_layer(layer_cls, hidden=True)


class DetachedInput(PlainDense):
    def forward(self, x):
        return torch.cat([x.detach(), self.conv(F.relu(self.bn(x)))], 1)


class NoReluDense(PlainDense):
    def forward(self, x):
        return torch.cat([x, self.conv(self.bn(x))], 1)


class NoNormDense(nn.Module):
    def __init__(self, in_channels, growth_rate):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, growth_rate, 3, padding=1)

    def forward(self, x):
        return torch.cat([x, self.conv(F.relu(x))], 1)


class OneByOneDense(PlainDense):
    def __init__(self, in_channels, growth_rate):
        super().__init__(in_channels, growth_rate)
        self.conv = nn.Conv2d(in_channels, growth_rate, 1)


class ExtraNormDense(PlainDense):
    def __init__(self, in_channels, growth_rate):
        super().__init__(in_channels, growth_rate)
        self.after = nn.BatchNorm2d(growth_rate)

    def forward(self, x):
        return torch.cat([x, self.after(self.conv(F.relu(self.bn(x))))], 1)


class NoPaddingDense(PlainDense):
    def __init__(self, in_channels, growth_rate):
        super().__init__(in_channels, growth_rate)
        self.conv = nn.Conv2d(in_channels, growth_rate, 3)


@pytest.mark.parametrize("layer_cls, prop, hint", [
    (DetachedInput, "gradient flows through x and the new features",
     "the input's copy in the output carries no gradient"),
    (NoReluDense, "BN-ReLU-conv order", "the ReLU is missing"),
    (NoNormDense, "layer types: BatchNorm, 3x3 conv (optional 1x1 bottleneck)",
     "no BatchNorm before a convolution"),
    (OneByOneDense, "layer types: BatchNorm, 3x3 conv (optional 1x1 bottleneck)",
     "here a 1x1 convolution makes them"),
    (ExtraNormDense, "layer types: BatchNorm, 3x3 conv (optional 1x1 bottleneck)",
     "an extra BatchNorm"),
], ids=lambda v: v.__name__ if isinstance(v, type) else None)
def test_dense_layer_mistakes_that_used_to_pass(layer_cls, prop, hint):
    rejects(check_dense_layer, layer_cls, prop, hint)


def test_dense_layer_without_padding_is_not_blamed_on_a_spatial_axis():
    """torch.cat on dim 1 fails because H x W differ: the hint names the padding."""
    error = rejects(check_dense_layer, NoPaddingDense, "forward runs", "padding=1",
                    avoid="spatial axis")
    assert "dimension 1" in error.measured


def test_dense_layer_output_dtype_is_compared():
    class HalfDense(RefDense):
        def forward(self, x):
            return super().forward(x).half()

    rejects(check_dense_layer, HalfDense, "output dtype", "keep the input's dtype")


# ---------------------------------------------------------------------------------------------
# U-Net crop and concatenate


def ref_crop_concat(encoder_map: torch.Tensor, decoder_map: torch.Tensor) -> torch.Tensor:
    """The reference: (B, C1, H1, W1), (B, C2, H2, W2) -> (B, C1 + C2, H2, W2)."""
    h1, w1 = encoder_map.shape[-2:]
    h2, w2 = decoder_map.shape[-2:]
    top, left = (h1 - h2) // 2, (w1 - w2) // 2
    return torch.cat([encoder_map[..., top:top + h2, left:left + w2], decoder_map], dim=1)


def narrow_decoder_first(enc, dec):
    (h1, w1), (h2, w2) = enc.shape[-2:], dec.shape[-2:]
    cropped = enc.narrow(2, (h1 - h2) // 2, h2).narrow(3, (w1 - w2) // 2, w2)
    return torch.cat([dec, cropped], 1)


def book_helper(enc, dec):
    return torch.cat([center_crop(enc, dec.shape[-2:]), dec], dim=-3)


@pytest.mark.parametrize("fn, order", [
    (ref_crop_concat, "encoder map (cropped) first"),
    (narrow_decoder_first, "decoder map first"),
    (book_helper, "encoder map (cropped) first"),
])
def test_crop_and_concat_valid(fn, order):
    report = check_crop_and_concat(fn)
    assert "centre crop" in report and f"order: {order}" in report


def shifted(by):
    def fn(enc, dec):
        (h1, w1), (h2, w2) = enc.shape[-2:], dec.shape[-2:]
        top, left = (h1 - h2) // 2 + by, (w1 - w2) // 2 + by
        return torch.cat([enc[..., top:top + h2, left:left + w2], dec], 1)
    return fn


def top_left(enc, dec):
    h2, w2 = dec.shape[-2:]
    return torch.cat([enc[..., :h2, :w2], dec], 1)


def rounds_up(enc, dec):
    (h1, w1), (h2, w2) = enc.shape[-2:], dec.shape[-2:]
    top, left = (h1 - h2 + 1) // 2, (w1 - w2 + 1) // 2
    return torch.cat([enc[..., top:top + h2, left:left + w2], dec], 1)


def torchvision_crop(enc, dec):
    return torch.cat([TF.center_crop(enc, list(dec.shape[-2:])), dec], 1)


def crops_decoder(enc, dec):
    """Crops (torchvision pads) the decoder map to the encoder's size instead."""
    return torch.cat([enc, TF.center_crop(dec, list(enc.shape[-2:]))], 1)


def cat_batch(enc, dec):
    return torch.cat([center_crop(enc, dec.shape[-2:]), dec], 0)


def cat_width(enc, dec):
    return torch.cat([center_crop(enc, dec.shape[-2:]), dec], 3)


def interpolates(enc, dec):
    return torch.cat([F.interpolate(enc, size=dec.shape[-2:], mode="bilinear"), dec], 1)


def nearest(enc, dec):
    return torch.cat([F.interpolate(enc, size=dec.shape[-2:], mode="nearest"), dec], 1)


@pytest.mark.parametrize("fn", [rounds_up, torchvision_crop], ids=lambda f: f.__name__)
def test_crop_with_the_extra_pixel_on_the_other_side_is_also_centred(fn):
    # odd margins have two centres; a valid U-Net's margins are even anyway
    assert "all" in check_crop_and_concat(fn)


@pytest.mark.parametrize("fn, prop, hint", [
    (shifted(1), "centre crop", "off by one: the window is one row down and one column right"),
    (shifted(-1), "centre crop", "off by one: the window is one row up and one column left"),
    (top_left, "centre crop", "top-left corner"),
    (crops_decoder, "output shape", "do not pad or crop the decoder map"),
    (cat_batch, "output shape", "batch axis"),
    (cat_width, "output shape", "spatial axis"),
    (interpolates, "encoder map cropped, not resized", "not copied from the encoder map"),
    (nearest, "encoder map cropped, not resized", "not one contiguous window"),
], ids=lambda v: getattr(v, "__name__", None))
def test_crop_and_concat_mistakes(fn, prop, hint):
    with pytest.raises(CheckFailed, match=rf"(?s)property '{prop}.*hint: .*{hint}"):
        check_crop_and_concat(fn)


def test_crop_and_concat_crash_is_explained():
    """Cropping the decoder map by slicing with a negative start crashes inside torch.cat."""
    def crop_wrong_map(enc, dec):
        (h1, w1), (h2, w2) = enc.shape[-2:], dec.shape[-2:]
        top, left = (h2 - h1) // 2, (w2 - w1) // 2
        return torch.cat([enc, dec[..., top:top + h1, left:left + w1]], 1)

    with pytest.raises(CheckFailed, match=r"(?s)'runs'.*crop the encoder map") as info:
        check_crop_and_concat(crop_wrong_map)
    assert info.value.property == "runs"


@pytest.mark.parametrize("cast", ["long", "int", "half", "double"])
def test_crop_and_concat_keeps_the_dtype(cast):
    """A cast used to pass: the maps hold whole numbers and torch.equal ignores the dtype."""
    def casts(enc, dec):
        return getattr(ref_crop_concat(enc, dec), cast)()

    error = rejects(check_crop_and_concat, casts, "output dtype", "keep the input's dtype")
    assert "float" in error.expected


def test_crop_and_concat_hidden_cases():
    assert "all" in check_crop_and_concat(ref_crop_concat, hidden=True)
    assert "all" in check_crop_and_concat(book_helper, hidden=True)

    def public_margins_only(enc, dec):
        if enc.shape[-1] - dec.shape[-1] in (8, 32, 3, 5):     # the public check's margins
            return ref_crop_concat(enc, dec)
        return torch.cat([enc[..., :dec.shape[-2], :dec.shape[-1]], dec], 1)

    assert "all" in check_crop_and_concat(public_margins_only)
    rejects(check_crop_and_concat, public_margins_only, "centre crop", "(H1 - H2) // 2",
            hidden=True)


def test_checkers_leave_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    check_dense_layer(PlainDense)
    assert torch.equal(torch.rand(3), expected)
