"""Whole models built from :mod:`skiplab.blocks`, each configured by one frozen dataclass."""

from .cifar import CifarNet, CifarNetConfig, cifar_depths
from .mlp import ARCHITECTURES, DeepMLP, MLPConfig
from .variants import SKIP_VARIANTS, SkipVariantMLP

__all__ = [
    "ARCHITECTURES",
    "SKIP_VARIANTS",
    "CifarNet",
    "CifarNetConfig",
    "DeepMLP",
    "MLPConfig",
    "SkipVariantMLP",
    "cifar_depths",
]
