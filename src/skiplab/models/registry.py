"""A small registry of the book's convolutional models: name -> builder and input shape.

Used by the tests (every model is checked by the same properties) and by the chapters'
tables. Sizes are the published ones; ``example_shape`` is a small input the model takes
(one example, without the batch dimension).

>>> spec = REGISTRY["resnet-20"]
>>> spec.build()(torch.randn(2, *spec.example_shape)).shape
torch.Size([2, 10])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from .cifar import CifarNet, CifarNetConfig
from .densenet import densenet121, densenet_bc
from .resnet import resnet18, resnet34, resnet50
from .unet import UNet, UNetConfig

__all__ = ["REGISTRY", "ModelSpec", "build_model", "count_parameters"]


@dataclass(frozen=True)
class ModelSpec:
    """How to build one model and what it takes: (C, H, W) or (C, L)."""

    name: str
    build: Callable[[], nn.Module]
    example_shape: tuple[int, ...]
    n_classes: int
    family: str


def _cifar(depth: int, **kw) -> Callable[[], nn.Module]:
    return lambda: CifarNet(CifarNetConfig(depth=depth, **kw))


def _unet(**kw) -> Callable[[], nn.Module]:
    return lambda: UNet(UNetConfig(in_channels=1, n_classes=2, base_width=4, depth=2, **kw))


def _specs() -> list[ModelSpec]:
    specs = []
    for depth in (20, 32, 44, 56, 110):
        specs.append(ModelSpec(f"resnet-{depth}", _cifar(depth), (3, 32, 32), 10, "cifar"))
        specs.append(ModelSpec(f"plain-{depth}", _cifar(depth, skip="none"), (3, 32, 32),
                               10, "cifar"))
        specs.append(ModelSpec(f"preact-resnet-{depth}", _cifar(depth, norm="pre"),
                               (3, 32, 32), 10, "cifar"))
    specs.append(ModelSpec("resnet-20-1d", _cifar(20, dims=1, in_channels=1), (1, 40), 10,
                           "cifar"))
    for name, build in (("resnet18", resnet18), ("resnet34", resnet34),
                        ("resnet50", resnet50)):
        specs.append(ModelSpec(name, build, (3, 64, 64), 1000, "imagenet"))
    specs.append(ModelSpec("densenet121", densenet121, (3, 64, 64), 1000, "imagenet"))
    specs.append(ModelSpec("densenet-bc-100", lambda: densenet_bc(100, 12), (3, 32, 32), 10,
                           "cifar"))
    specs.append(ModelSpec("densenet-bc-40", lambda: densenet_bc(40, 12), (3, 32, 32), 10,
                           "cifar"))
    # U-Nets at toy width: per-pixel logits (B, n_classes, H', W'), H' = H when same-padded
    # and 60 -> 20 for the valid one (unet_sizes(60, depth=2))
    specs.append(ModelSpec("unet-small", _unet(padding="same", norm=True), (1, 16, 16), 2,
                           "unet"))
    specs.append(ModelSpec("unet-small-residual", _unet(padding="same", norm=True,
                                                        skip="residual"), (1, 16, 16), 2, "unet"))
    specs.append(ModelSpec("unet-small-valid", _unet(padding="valid"), (1, 60, 60), 2, "unet"))
    return specs


REGISTRY: dict[str, ModelSpec] = {spec.name: spec for spec in _specs()}


def build_model(name: str) -> nn.Module:
    """Build a registered model by name; an unknown name lists the known ones."""
    if name not in REGISTRY:
        raise KeyError(f"no model called {name!r}; known: {', '.join(REGISTRY)}")
    return REGISTRY[name].build()


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
