"""Probes that measure a network: gradients, curvature, symmetry, lesions."""

from .attention import collapse_profile, stream_grad_norms, token_uniformity
from .cost import MemoryPeak, count_macs, peak_memory
from .gradients import GradientRecorder, hidden_grad_norms, layer_grad_norms
from .hessian import (
    chunked_loss_fns,
    hessian_matrix,
    hvp,
    lanczos_eigenvalues,
    model_loss_fn,
    near_zero_fraction,
)
from .identity import IdentityFit, fit_identity
from .lesion import LayerSite, delete_block, delete_layer, lesion_study, plain_layer_sites
from .reuse import normalised_rows, reuse_ablation_map, reuse_map
from .upsampling import checkerboard_share, conv_matrix
from .shattered import (
    gradient_autocorrelation,
    input_gradients,
    line_inputs,
    shattering_profile,
    with_batch_statistics,
)
from .signal import SignalProfile, signal_propagation
from .stream import branch_stream_ratios, loglog_slope
from .symmetry import (
    clone_unit_,
    log10_factorial,
    log10_symmetry_order,
    node_overlap,
    permute_depthwise_channels_,
    permute_stream_,
    permute_units_,
    unit_distance,
)

__all__ = [
    "SignalProfile",
    "signal_propagation",
    "branch_stream_ratios",
    "gradient_autocorrelation",
    "input_gradients",
    "line_inputs",
    "loglog_slope",
    "permute_depthwise_channels_",
    "shattering_profile",
    "with_batch_statistics",
    "collapse_profile",
    "stream_grad_norms",
    "token_uniformity",
    "MemoryPeak",
    "count_macs",
    "peak_memory",
    "GradientRecorder",
    "IdentityFit",
    "LayerSite",
    "checkerboard_share",
    "chunked_loss_fns",
    "clone_unit_",
    "conv_matrix",
    "delete_block",
    "delete_layer",
    "fit_identity",
    "hessian_matrix",
    "hidden_grad_norms",
    "hvp",
    "lanczos_eigenvalues",
    "layer_grad_norms",
    "lesion_study",
    "log10_factorial",
    "log10_symmetry_order",
    "model_loss_fn",
    "near_zero_fraction",
    "node_overlap",
    "normalised_rows",
    "permute_stream_",
    "permute_units_",
    "plain_layer_sites",
    "reuse_ablation_map",
    "reuse_map",
    "unit_distance",
]
