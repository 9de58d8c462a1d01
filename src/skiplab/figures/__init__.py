"""Plotly figure builders. Each returns a ``go.Figure`` and never shows it.

Every control lives in the figure itself (sliders, dropdowns, hover), so the figures stay
interactive in the book's static HTML, with no kernel behind them. One module per chapter's
family of figures; the common names are re-exported here.
"""

from .architectures import (
    accuracy_per_parameter_figure,
    block_anatomy_figure,
    block_profile_figure,
    reuse_heatmap_figure,
    width_profile_figure,
)
from .base import LABELS, PALETTE
from .degradation import (
    depth_curves_figure,
    final_loss_figure,
    gradient_heatmap_figure,
    lesion_figure,
    path_length_figure,
)
from .finetune import embedding_scatter_figure, forgetting_figure, retrieval_curves_figure
from .symmetry import (
    landscape_contour_figure,
    landscape_surface_figure,
    series_figure,
    symmetry_order_figure,
)
from .landscape import slices_figure, surfaces_figure
from .training import history_figure, layer_profile_figure, layer_series_figure
from .unet import level_profile_figure, segmentation_grid_figure

__all__ = [
    "LABELS",
    "PALETTE",
    "accuracy_per_parameter_figure",
    "block_anatomy_figure",
    "block_profile_figure",
    "retrieval_curves_figure",
    "reuse_heatmap_figure",
    "segmentation_grid_figure",
    "depth_curves_figure",
    "embedding_scatter_figure",
    "forgetting_figure",
    "final_loss_figure",
    "gradient_heatmap_figure",
    "history_figure",
    "landscape_contour_figure",
    "landscape_surface_figure",
    "layer_profile_figure",
    "layer_series_figure",
    "slices_figure",
    "surfaces_figure",
    "level_profile_figure",
    "lesion_figure",
    "path_length_figure",
    "series_figure",
    "symmetry_order_figure",
    "width_profile_figure",
]
