"""Probes that measure a network: gradients, curvature, symmetry, lesions."""

from .gradients import hidden_grad_norms, layer_grad_norms

__all__ = ["hidden_grad_norms", "layer_grad_norms"]
