"""Whole models built from :mod:`skiplab.blocks`, each configured by one frozen dataclass."""

from .cifar import CifarNet, CifarNetConfig, cifar_depths
from .convert import (
    DENSENET_RULES,
    RESNET_RULES,
    convert_state_dict,
    densenet_from_torchvision,
    load_torchvision_densenet,
    load_torchvision_resnet,
    resnet_from_torchvision,
)
from .densenet import DenseNet, DenseNetConfig, densenet121, densenet_bc
from .mlp import ARCHITECTURES, DeepMLP, MLPConfig, architectures
from .registry import REGISTRY, ModelSpec, build_model, count_parameters
from .resnet import RESNET_LAYERS, ResNet, ResNetConfig, resnet18, resnet34, resnet50
from .transformer import (
    TRANSFORMER_ACTIVATIONS,
    TRANSFORMER_INITS,
    EncoderDecoder,
    SequenceModel,
    TransformerConfig,
    decoder_block_from_torch,
    encoder_block_from_torch,
    deepnorm_init_,
    init_transformer_,
)
from .unet import (
    UNet,
    UNetConfig,
    local_net,
    match_decoder_scale,
    unet_sizes,
    unet_valid_sizes,
)
from .symmetry_breaking import (
    FrozenEntryLinear,
    OrthogonalShortcut,
    break_unit_symmetry,
    orthogonal_shortcuts,
    random_orthogonal,
)
from .tower import ResidualTower, TowerConfig
from .variants import SKIP_VARIANTS, SkipVariantMLP

__all__ = [
    "TRANSFORMER_ACTIVATIONS",
    "TRANSFORMER_INITS",
    "EncoderDecoder",
    "SequenceModel",
    "TransformerConfig",
    "decoder_block_from_torch",
    "encoder_block_from_torch",
    "deepnorm_init_",
    "init_transformer_",
    "ARCHITECTURES",
    "DENSENET_RULES",
    "RESNET_RULES",
    "REGISTRY",
    "RESNET_LAYERS",
    "DenseNet",
    "DenseNetConfig",
    "ModelSpec",
    "ResNet",
    "ResNetConfig",
    "build_model",
    "convert_state_dict",
    "count_parameters",
    "densenet121",
    "densenet_bc",
    "densenet_from_torchvision",
    "load_torchvision_densenet",
    "load_torchvision_resnet",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet_from_torchvision",
    "SKIP_VARIANTS",
    "CifarNet",
    "CifarNetConfig",
    "DeepMLP",
    "MLPConfig",
    "SkipVariantMLP",
    "ResidualTower",
    "TowerConfig",
    "architectures",
    "cifar_depths",
    "UNet",
    "UNetConfig",
    "local_net",
    "match_decoder_scale",
    "unet_sizes",
    "unet_valid_sizes",
    "FrozenEntryLinear",
    "OrthogonalShortcut",
    "break_unit_symmetry",
    "orthogonal_shortcuts",
    "random_orthogonal",
]
