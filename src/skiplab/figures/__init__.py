"""Plotly figure builders. Each returns a ``go.Figure`` and never shows it.

Every control lives in the figure itself (sliders, dropdowns, hover), so the figures stay
interactive in the book's static HTML, with no kernel behind them. Generic line charts live
in :mod:`~skiplab.figures.series`, the rest in one module per chapter's family of figures;
the common names are re-exported here.

Colours: every builder that colours traces by name takes ``colors={name: colour}`` (explicit
colours win); the book-wide names (architectures, skip kinds) have one colour in every
chapter (:data:`PALETTE`), and other names get a stable colour by order of appearance. A
chapter's own legends keep their colours beside its builders (:data:`TRANSFORMER_PALETTE`).
"""

from .architectures import (
    TRANSFORMER_PALETTE,
    accuracy_per_parameter_figure,
    block_anatomy_figure,
    block_profile_figure,
    branch_ratio_figure,
    reuse_heatmap_figure,
    width_profile_figure,
)
from .base import FALLBACK, LABELS, PALETTE, trace_colours
from .degradation import (
    depth_curves_figure,
    final_loss_figure,
    gradient_heatmap_figure,
    lesion_figure,
    path_length_figure,
    shattering_figure,
)
from .finetune import embedding_scatter_figure, forgetting_figure
from .landscape import slices_figure, surfaces_figure
from .series import (
    depth_law_figure,
    history_figure,
    layer_series_figure,
    retrieval_curves_figure,
    series_figure,
)
from .symmetry import (
    landscape_contour_figure,
    landscape_surface_figure,
    replicate_figure,
    symmetry_order_figure,
)
from .training import layer_profile_figure
from .unet import level_profile_figure, segmentation_grid_figure

__all__ = [
    "branch_ratio_figure",
    "replicate_figure",
    "shattering_figure",
    "FALLBACK",
    "LABELS",
    "PALETTE",
    "TRANSFORMER_PALETTE",
    "accuracy_per_parameter_figure",
    "block_anatomy_figure",
    "block_profile_figure",
    "depth_curves_figure",
    "embedding_scatter_figure",
    "final_loss_figure",
    "forgetting_figure",
    "gradient_heatmap_figure",
    "history_figure",
    "landscape_contour_figure",
    "landscape_surface_figure",
    "layer_profile_figure",
    "depth_law_figure",
    "layer_series_figure",
    "lesion_figure",
    "level_profile_figure",
    "path_length_figure",
    "retrieval_curves_figure",
    "reuse_heatmap_figure",
    "segmentation_grid_figure",
    "series_figure",
    "slices_figure",
    "surfaces_figure",
    "symmetry_order_figure",
    "trace_colours",
    "width_profile_figure",
]
