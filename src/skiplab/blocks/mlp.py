"""Fully connected blocks: a plain layer and its residual twin.

Plain:    h' = act(norm(W h + b))
Residual: h' = h + act(norm(W h + b))      (the skip path is ``self.shortcut``, an identity)

The residual block's Jacobian is I + dF/dh, so the gradient reaching h is the gradient of h'
plus what the branch passes back: dL/dh = dL/dh' (dF/dh + I). Even when dF/dh is tiny
(a saturated sigmoid) the identity term carries the gradient through unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

__all__ = [
    "ACTIVATIONS",
    "INITS",
    "Activation",
    "Init",
    "PlainLinearBlock",
    "ResidualLinearBlock",
    "init_linear_",
    "make_activation",
]

Activation = Literal["sigmoid", "tanh", "relu"]
Init = Literal["normal", "xavier", "kaiming"]

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
}
INITS: tuple[str, ...] = ("normal", "xavier", "kaiming")


def make_activation(name: str) -> nn.Module:
    """A fresh activation module by name; a clear error for unknown names."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation={name!r} is not known; accepted: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def init_linear_(layer: nn.Linear, scheme: str) -> nn.Linear:
    """Initialise a linear layer's weight in place; the bias starts at zero.

    - ``normal``: N(0, 1), the naive unit-variance choice (activations and gradients
      scale by about sqrt(fan_in) per layer).
    - ``xavier``: Glorot & Bengio (2010), Var = 2 / (fan_in + fan_out), which keeps the
      variance of a *linear* (or tanh-near-zero) layer's signal in both directions.
    - ``kaiming``: He et al. (2015), Var = 2 / fan_in, which compensates for ReLU zeroing
      half its inputs.
    """
    if scheme == "normal":
        nn.init.normal_(layer.weight, mean=0.0, std=1.0)
    elif scheme == "xavier":
        nn.init.xavier_normal_(layer.weight)
    elif scheme == "kaiming":
        nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
    else:
        raise ValueError(f"init={scheme!r} is not known; accepted: {', '.join(INITS)}")
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


class PlainLinearBlock(nn.Module):
    """h' = act(norm(W h + b)).

    Args:
        in_features, out_features: widths of h and h'.
        activation: ``sigmoid``, ``tanh`` or ``relu``.
        init: weight initialisation, see :func:`init_linear_`.
        norm: add BatchNorm1d between the linear map and the activation.

    Shapes: (B, in_features) -> (B, out_features).
    """

    def __init__(self, in_features: int, out_features: int, *, activation: Activation = "relu",
                 init: Init = "kaiming", norm: bool = False):
        super().__init__()
        self.linear = init_linear_(nn.Linear(in_features, out_features), init)
        self.norm = nn.BatchNorm1d(out_features) if norm else nn.Identity()
        self.act = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.linear(x)))


class ResidualLinearBlock(nn.Module):
    """h' = h + act(norm(W h + b)): the plain block with an identity skip around it.

    Shapes: (B, features) -> (B, features).
    """

    def __init__(self, features: int, *, activation: Activation = "relu",
                 init: Init = "kaiming", norm: bool = False):
        super().__init__()
        self.branch = PlainLinearBlock(features, features, activation=activation, init=init,
                                       norm=norm)
        self.shortcut = nn.Identity()

    @property
    def linear(self) -> nn.Linear:
        return self.branch.linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return self.shortcut(x) + self.branch(x)

    def _check_input(self, x: torch.Tensor) -> None:
        # the sum needs x and the branch's output to have the same shape: say so clearly
        if x.dim() != 2 or x.shape[1] != self.linear.in_features:
            raise ValueError(f"{type(self).__name__} expects (B, {self.linear.in_features}), "
                             f"got {tuple(x.shape)}")
