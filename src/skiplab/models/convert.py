"""Load torchvision's weights into skiplab's models, by renaming state-dict keys.

The networks are the same; only the names differ. torchvision calls a basic block's
layers ``conv1, bn1, conv2, bn2`` and its projection ``downsample``; skiplab calls them
``branch.0.conv, branch.0.norm, branch.1.conv, branch.1.norm`` and ``shortcut``, because
the book's point is the split into a branch and a skip. Each converter is a short list of
regular-expression rules; a key that no rule matches, or a shape that differs, is an error
that names it (nothing is silently skipped).

>>> import torchvision
>>> reference = torchvision.models.resnet50()            # or weights="IMAGENET1K_V2"
>>> model = resnet50_from_torchvision(reference)          # same outputs, skiplab's modules
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from .densenet import DenseNet, DenseNetConfig
from .resnet import RESNET_LAYERS, ResNet, ResNetConfig

__all__ = [
    "DENSENET_RULES",
    "RESNET_RULES",
    "convert_state_dict",
    "densenet_from_torchvision",
    "load_torchvision_densenet",
    "load_torchvision_resnet",
    "resnet_from_torchvision",
]

Rules = Sequence[tuple[str, str]]


def _shift(match: re.Match, group: int) -> str:
    return str(int(match.group(group)) - 1)


#: torchvision ResNet key -> skiplab ResNet key (layer numbers start at 1 there, 0 here)
RESNET_RULES: Rules = (
    (r"^conv1\.(.*)$", r"stem.conv.\1"),
    (r"^bn1\.(.*)$", r"stem.norm.\1"),
    (r"^layer(\d+)\.(\d+)\.conv(\d+)\.(.*)$", "stages.{L1}.{2}.branch.{C3}.conv.{4}"),
    (r"^layer(\d+)\.(\d+)\.bn(\d+)\.(.*)$", "stages.{L1}.{2}.branch.{C3}.norm.{4}"),
    (r"^layer(\d+)\.(\d+)\.downsample\.(\d+)\.(.*)$", "stages.{L1}.{2}.shortcut.{3}.{4}"),
    (r"^fc\.(.*)$", r"fc.\1"),
)

#: torchvision DenseNet key -> skiplab DenseNet key
DENSENET_RULES: Rules = (
    (r"^features\.conv0\.(.*)$", r"stem.0.conv.\1"),
    (r"^features\.norm0\.(.*)$", r"stem.0.norm.\1"),
    (r"^features\.denseblock(\d+)\.denselayer(\d+)\.norm1\.(.*)$",
     "blocks.{L1}.layers.{L2}.reduce.norm.{3}"),
    (r"^features\.denseblock(\d+)\.denselayer(\d+)\.conv1\.(.*)$",
     "blocks.{L1}.layers.{L2}.reduce.conv.{3}"),
    (r"^features\.denseblock(\d+)\.denselayer(\d+)\.norm2\.(.*)$",
     "blocks.{L1}.layers.{L2}.grow.norm.{3}"),
    (r"^features\.denseblock(\d+)\.denselayer(\d+)\.conv2\.(.*)$",
     "blocks.{L1}.layers.{L2}.grow.conv.{3}"),
    (r"^features\.transition(\d+)\.(norm|conv)\.(.*)$", "transitions.{L1}.{2}.{3}"),
    (r"^features\.norm5\.(.*)$", r"norm.\1"),
    (r"^classifier\.(.*)$", r"fc.\1"),
)


def _apply(rule_out: str, match: re.Match) -> str:
    """Fill a rule's template: {n} is group n, {Ln} is group n minus one (1- to 0-based),
    {Cn} is group n minus one as well (conv1/bn1 -> branch.0); plain regex ``\\1`` also works."""
    if "{" not in rule_out:
        return match.expand(rule_out)

    def field(m: re.Match) -> str:
        spec = m.group(1)
        if spec[0] in "LC":
            return _shift(match, int(spec[1:]))
        return match.group(int(spec))

    return re.sub(r"\{([LC]?\d+)\}", field, rule_out)


def convert_state_dict(state_dict: Mapping[str, torch.Tensor], rules: Rules
                       ) -> dict[str, torch.Tensor]:
    """Rename every key of ``state_dict`` by the first rule that matches it.

    Raises ``KeyError`` listing the keys no rule matches.
    """
    converted, unmatched = {}, []
    for key, value in state_dict.items():
        for pattern, template in rules:
            match = re.match(pattern, key)
            if match:
                converted[_apply(template, match)] = value
                break
        else:
            unmatched.append(key)
    if unmatched:
        raise KeyError(f"{len(unmatched)} key(s) match no conversion rule, e.g. "
                       f"{unmatched[:5]}; is this the right kind of model?")
    return converted


def _load(model: nn.Module, state_dict: Mapping[str, torch.Tensor], rules: Rules) -> nn.Module:
    converted = convert_state_dict(state_dict, rules)
    own = model.state_dict()
    missing = sorted(set(own) - set(converted))
    unexpected = sorted(set(converted) - set(own))
    if missing or unexpected:
        raise KeyError(f"the converted state dict does not fit this model: missing "
                       f"{missing[:5]}{'...' if len(missing) > 5 else ''}, unexpected "
                       f"{unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
    wrong = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in converted.items()
             if v.shape != own[k].shape]
    if wrong:
        raise ValueError(f"shapes differ (key, given, expected): {wrong[:5]}; was the model "
                         "built with the same configuration (depth, classes, width)?")
    model.load_state_dict(converted, strict=True)
    return model


def load_torchvision_resnet(model: ResNet, state_dict: Mapping[str, torch.Tensor]) -> ResNet:
    """Load a torchvision ResNet's ``state_dict()`` into the skiplab ``model`` (in place)."""
    return _load(model, state_dict, RESNET_RULES)


def load_torchvision_densenet(model: DenseNet, state_dict: Mapping[str, torch.Tensor]
                              ) -> DenseNet:
    """Load a torchvision DenseNet's ``state_dict()`` into the skiplab ``model`` (in place)."""
    return _load(model, state_dict, DENSENET_RULES)


def resnet_from_torchvision(reference: nn.Module) -> ResNet:
    """A skiplab ResNet with the architecture and weights of a torchvision ResNet-18/34/50,
    -101 or -152 (read from the module itself: block type and blocks per stage).

    Both are "ResNet v1.5": a bottleneck's stride sits on its 3x3 convolution. Weights of
    the original v1 layout (stride on the first 1x1) have the same names and shapes, so no
    converter could tell them apart; they would load and compute a different function.
    """
    stages = [getattr(reference, f"layer{i}") for i in range(1, 5)]
    layers = tuple(len(stage) for stage in stages)
    kind = "bottleneck" if hasattr(stages[0][0], "conv3") else "basic"
    if (kind, layers) not in RESNET_LAYERS.values():
        raise ValueError(f"not a published torchvision ResNet: {kind} blocks {layers}")
    n_classes, in_channels = reference.fc.out_features, reference.conv1.in_channels
    model = ResNet(ResNetConfig(block=kind, layers=layers, n_classes=n_classes,
                                in_channels=in_channels))
    return load_torchvision_resnet(model, reference.state_dict())


def densenet_from_torchvision(reference: nn.Module) -> DenseNet:
    """A skiplab DenseNet with the architecture and weights of a torchvision DenseNet."""
    # torchvision's DenseNets all use the ImageNet stem and compression 0.5 (the defaults of
    # DenseNetConfig); the rest is read from the module
    features = reference.features
    blocks = [m for name, m in features.named_children() if name.startswith("denseblock")]
    first = blocks[0].denselayer1
    growth = first.conv2.out_channels
    config = DenseNetConfig(
        growth_rate=growth,
        block_layers=tuple(len(b) for b in blocks),
        init_channels=features.conv0.out_channels,
        bn_size=first.conv1.out_channels // growth,
        n_classes=reference.classifier.out_features,
        in_channels=features.conv0.in_channels,
    )
    return load_torchvision_densenet(DenseNet(config), reference.state_dict())
