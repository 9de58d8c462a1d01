"""Whole models built from :mod:`skiplab.blocks`, each configured by one frozen dataclass."""

from .cifar import CifarNet, CifarNetConfig, cifar_depths
from .mlp import ARCHITECTURES, DeepMLP, MLPConfig

__all__ = ["ARCHITECTURES", "CifarNet", "CifarNetConfig", "DeepMLP", "MLPConfig", "cifar_depths"]
