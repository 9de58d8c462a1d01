"""Dense connectivity (Huang et al. 2017): every layer reads the concatenation of all
earlier feature maps of its block and adds ``growth_rate`` new channels to it.

Dense layer (the "BC" layer, bottleneck + compression)::

    x' = concat([x, grow(reduce(x))], dim=channels)
    reduce = BatchNorm -> ReLU -> 1x1 conv (C_in -> bn_size * k)
    grow   = BatchNorm -> ReLU -> 3x3 conv (bn_size * k -> k)

The input passes through *unchanged* in the first C_in channels of the output: where a
residual block adds its branch to the stream, a dense layer appends it.

Transition between blocks: BatchNorm -> ReLU -> 1x1 conv (C -> floor(theta * C)) -> 2x2
average pool. theta < 1 is the "compression".

Memory: a block of L layers holds feature maps with c_0 + k, c_0 + 2k, ... channels;
concatenating them anew in every layer and keeping each concatenation (and its normalised
copy) for the backward pass costs memory quadratic in L. :class:`DenseBlock` keeps the
list of new feature maps instead, and with ``efficient=True`` each layer recomputes its
concatenation, BatchNorm, ReLU and 1x1 convolution in the backward pass (gradient
checkpointing, as torchvision's ``memory_efficient=True``; Pleiss et al. 2017 share
storage to recompute only the concatenation and BatchNorm) rather than storing them:
linear memory for more compute. Outputs and
gradients are the same either way; the recomputation does not update BatchNorm's running
statistics a second time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .residual import Dims, NormActConv, _check_dims, norm

__all__ = ["DenseBlock", "DenseLayer", "Transition"]


@contextlib.contextmanager
def _no_running_stats_update(module: nn.Module) -> Iterator[None]:
    """BatchNorm layers inside ``module`` compute as usual but leave running stats alone."""
    saved = []
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            count = None if m.num_batches_tracked is None else m.num_batches_tracked.clone()
            saved.append((m, m.momentum, count))
            m.momentum = 0.0   # running = (1 - 0) * running + 0 * batch: unchanged
    try:
        yield
    finally:
        for m, momentum, count in saved:
            m.momentum = momentum
            if count is not None:
                m.num_batches_tracked.copy_(count)


class DenseLayer(nn.Module):
    """BN-ReLU-1x1 conv (to ``bn_size * growth_rate``) then BN-ReLU-3x3 conv (to
    ``growth_rate``), appended to the input.

    Args:
        in_channels: channels of x (all earlier feature maps of the block, concatenated).
        growth_rate: k, the channels this layer adds.
        bn_size: the 1x1 bottleneck has ``bn_size * k`` channels (4 in the paper).
        efficient: recompute the concatenation, BatchNorm, ReLU and 1x1 convolution in the
            backward pass instead of storing them (same outputs and gradients, less memory).
        dims: 1 for signals (B, C, L), 2 for images (B, C, H, W).

    Shapes: forward (B, in_channels, *S) -> (B, in_channels + growth_rate, *S);
    :meth:`new_features` takes the list of feature maps whose channels sum to in_channels
    and returns only the k new channels.
    """

    def __init__(self, in_channels: int, growth_rate: int, *, bn_size: int = 4,
                 efficient: bool = False, dims: Dims = 2):
        super().__init__()
        _check_dims(dims)
        self.in_channels, self.growth_rate, self.dims = in_channels, growth_rate, dims
        self.efficient = efficient
        self.reduce = NormActConv(in_channels, bn_size * growth_rate, kernel_size=1, dims=dims)
        self.grow = NormActConv(bn_size * growth_rate, growth_rate, kernel_size=3, dims=dims)

    def _reduce(self, *features: torch.Tensor) -> torch.Tensor:
        return self.reduce(torch.cat(features, 1))

    def new_features(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """The k channels this layer adds, computed from the earlier ``features``."""
        channels = sum(f.shape[1] for f in features)
        if channels != self.in_channels or any(f.dim() != self.dims + 2 for f in features):
            shape = "(B, C, L)" if self.dims == 1 else "(B, C, H, W)"
            raise ValueError(f"DenseLayer expects {shape} feature maps with {self.in_channels} "
                             f"channels in all, got {[tuple(f.shape) for f in features]}")
        needs_grad = torch.is_grad_enabled() and (
            any(f.requires_grad for f in features)
            or any(p.requires_grad for p in self.reduce.parameters()))
        if self.efficient and needs_grad:
            def contexts():
                return contextlib.nullcontext(), _no_running_stats_update(self.reduce)
            hidden = checkpoint(self._reduce, *features, use_reentrant=False,
                                context_fn=contexts)
        else:
            hidden = self._reduce(*features)
        return self.grow(hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.new_features([x])], 1)

    def extra_repr(self) -> str:
        return (f"{self.in_channels} -> {self.in_channels + self.growth_rate} "
                f"(growth {self.growth_rate}){', efficient' if self.efficient else ''}")


class DenseBlock(nn.Module):
    """``n_layers`` dense layers; layer i reads ``in_channels + i * growth_rate`` channels.

    Equal to ``nn.Sequential(*layers)`` (each layer appends to its input), but keeps the
    list of feature maps and concatenates inside each layer, which is what lets
    ``efficient=True`` save memory.

    Shapes: (B, in_channels, *S) -> (B, in_channels + n_layers * growth_rate, *S).
    """

    def __init__(self, in_channels: int, n_layers: int, growth_rate: int, *, bn_size: int = 4,
                 efficient: bool = False, dims: Dims = 2):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = in_channels + n_layers * growth_rate
        self.layers = nn.ModuleList(
            DenseLayer(in_channels + i * growth_rate, growth_rate, bn_size=bn_size,
                       efficient=efficient, dims=dims)
            for i in range(n_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer.new_features(features))
        return torch.cat(features, 1)

    def set_efficient(self, efficient: bool) -> None:
        """Switch gradient checkpointing on or off for every layer."""
        for layer in self.layers:
            layer.efficient = efficient


class Transition(nn.Module):
    """Between dense blocks: BN -> ReLU -> 1x1 conv (compression) -> 2x2 average pool.

    Shapes: (B, in_channels, *S) -> (B, out_channels, *S / 2).
    """

    def __init__(self, in_channels: int, out_channels: int, *, dims: Dims = 2):
        super().__init__()
        _check_dims(dims)
        self.norm = norm(dims, in_channels)
        self.act = nn.ReLU(inplace=True)
        cls = nn.Conv1d if dims == 1 else nn.Conv2d
        self.conv = cls(in_channels, out_channels, 1, bias=False)
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")
        self.pool = nn.AvgPool1d(2) if dims == 1 else nn.AvgPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv(self.act(self.norm(x))))
