"""Whole models built from :mod:`skiplab.blocks`, each configured by one frozen dataclass."""

from .mlp import ARCHITECTURES, DeepMLP, MLPConfig

__all__ = ["ARCHITECTURES", "DeepMLP", "MLPConfig"]
