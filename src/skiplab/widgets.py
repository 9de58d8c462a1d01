"""ipywidgets explorers for a live kernel: controls that recompute, not just re-draw.

In the static book the controls show their saved state only; every figure a reader can
explore without a kernel has a plotly form in :mod:`skiplab.figures`.
"""

from __future__ import annotations

import ipywidgets as widgets
import plotly.graph_objects as go
import torch
from IPython.display import display

from .blocks.mlp import ACTIVATIONS, INITS
from .figures.base import _label, trace_colours
from .models.mlp import DeepMLP, MLPConfig
from .probes.gradients import hidden_grad_norms
from .runtime import seed_everything

__all__ = ["gradient_flow_explorer"]

# the three nets the gradient-flow chapter compares (not every skip kind of the library)
_ARCHITECTURES = ("plain", "plain_bn", "residual")


def gradient_flow_explorer(x: torch.Tensor, y: torch.Tensor, *, n_classes: int,
                           max_depth: int = 100, seed: int = 0):
    """Pick activation, initialisation, depth and width; see ||dL/dh|| per layer at init.

    Builds fresh plain, plain + BatchNorm and residual MLPs on every change and measures
    the backward signal on the batch (x, y) in float64.

    Args:
        x: (B, F) inputs; y: (B,) class indices.
        n_classes: number of classes of y.
        max_depth: largest depth the slider offers.
        seed: initialisation seed, the same for every architecture.

    Returns:
        An ``ipywidgets.VBox`` to display.
    """
    activation = widgets.Dropdown(options=list(ACTIVATIONS), value="sigmoid",
                                  description="activation")
    init = widgets.Dropdown(options=[(_label(i), i) for i in INITS], value="xavier",
                            description="init")
    depth = widgets.IntSlider(value=30, min=3, max=max_depth, step=1, description="depth",
                              continuous_update=False)
    width = widgets.IntSlider(value=64, min=8, max=512, step=8, description="width",
                              continuous_update=False)
    out = widgets.Output()
    xs, ys = x.double().flatten(1), y

    colours = trace_colours(_ARCHITECTURES)

    def redraw(*_):
        fig = go.Figure()
        for arch in _ARCHITECTURES:
            seed_everything(seed)
            config = MLPConfig(xs.shape[1], n_classes, depth=depth.value, width=width.value,
                               activation=activation.value, init=init.value,
                               architecture=arch)
            model = DeepMLP(config).to(xs.device).double()
            norms = hidden_grad_norms(model, xs, ys).numpy()
            fig.add_trace(go.Scatter(y=norms, x=list(range(1, len(norms) + 1)),
                                     name=_label(arch), line={"color": colours[arch]}))
        fig.update_layout(yaxis_type="log", height=380, xaxis_title="hidden layer",
                          yaxis_title="||dL/dh||", margin={"t": 30})
        out.clear_output(wait=True)
        with out:
            display(fig)

    for control in (activation, init, depth, width):
        control.observe(redraw, names="value")
    redraw()
    return widgets.VBox([widgets.HBox([activation, init]), widgets.HBox([depth, width]), out])
