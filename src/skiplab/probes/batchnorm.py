"""BatchNorm statistics from data: the one place the book re-estimates them.

Used by the loss-landscape chapter (each point of a path between two solutions gets the
statistics of its own weights) and by the shattered-gradients probe (a freshly initialised
network normalises as its first training step would).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["reestimate_bn_"]


@torch.no_grad()
def reestimate_bn_(model: nn.Module, x: torch.Tensor, batch_size: int | None = None
                   ) -> nn.Module:
    """Replace every BatchNorm's running statistics by the statistics of the data x.

    After a reset, forward passes in train mode with ``momentum=None`` (a plain average over
    the passes) over x, in one batch or in batches of ``batch_size``: with one batch the
    running mean and variance become exactly those the layer sees on x. Each layer's own
    momentum is restored and the model is left in eval mode. Changes ``model`` in place and
    returns it.

    Args:
        x: (N, *F) inputs on the model's device.
        batch_size: examples per forward pass (default: all of x at once).
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    step = batch_size or x.shape[0]
    for i in range(0, x.shape[0], step):
        model(x[i:i + step])
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    return model.eval()
