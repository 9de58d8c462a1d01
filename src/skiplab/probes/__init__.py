"""Probes that measure a network: gradients, curvature, symmetry, lesions."""

from .gradients import GradientRecorder, hidden_grad_norms, layer_grad_norms
from .identity import IdentityFit, fit_identity
from .lesion import LayerSite, delete_block, delete_layer, lesion_study, plain_layer_sites

__all__ = [
    "GradientRecorder",
    "IdentityFit",
    "LayerSite",
    "delete_block",
    "delete_layer",
    "fit_identity",
    "hidden_grad_norms",
    "layer_grad_norms",
    "lesion_study",
    "plain_layer_sites",
]
