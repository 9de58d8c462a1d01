"""Fully connected blocks: a plain layer and its twin with a skip.

Plain:    h' = act(norm(W h + b))
Residual: h' = skip(h, act(norm(W h + b)))     ``skip="residual"``: h + act(norm(W h + b))

The skip path is ``self.shortcut`` (an identity) and ``self.skip`` combines it with the
branch, one of the kinds of :data:`~skiplab.blocks.skips.SKIPS`. The residual block's
Jacobian is I + dF/dh, so the gradient reaching h is the gradient of h' plus what the
branch passes back: dL/dh = dL/dh' (dF/dh + I). Even when dF/dh is tiny (a saturated
sigmoid) the identity term carries the gradient through unchanged.

The blocks take the norm and the activation as callables (``norm_layer=nn.BatchNorm1d``,
``act_layer=nn.Tanh``), as torchvision's blocks do; configurations name them instead
(``activation="tanh"``), and :data:`ACTIVATIONS` maps the names to the callables.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from ..validation import check_choice
from .skips import make_skip

__all__ = [
    "ACTIVATIONS",
    "BRANCH_INITS",
    "INITS",
    "Activation",
    "Init",
    "PlainLinearBlock",
    "ResidualLinearBlock",
    "ResidualMLPBlock",
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
    return ACTIVATIONS[check_choice("activation", name, ACTIVATIONS)]()


def init_linear_(layer: nn.Linear, scheme: str) -> nn.Linear:
    """Initialise a linear layer's weight in place; the bias starts at zero.

    - ``normal``: N(0, 1), the naive unit-variance choice (activations and gradients
      scale by about sqrt(fan_in) per layer).
    - ``xavier``: Glorot & Bengio (2010), Var = 2 / (fan_in + fan_out), which keeps the
      variance of a *linear* (or tanh-near-zero) layer's signal in both directions.
    - ``kaiming``: He et al. (2015), Var = 2 / fan_in, which compensates for ReLU zeroing
      half its inputs.
    """
    check_choice("init", scheme, INITS)
    if scheme == "normal":
        nn.init.normal_(layer.weight, mean=0.0, std=1.0)
    elif scheme == "xavier":
        nn.init.xavier_normal_(layer.weight)
    else:
        nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


class PlainLinearBlock(nn.Module):
    """h' = act(norm(W h + b)).

    Args:
        in_features, out_features: widths of h and h'.
        init: weight initialisation, see :func:`init_linear_`.
        norm_layer: builds the norm from the width, e.g. ``nn.BatchNorm1d``; None for no
            norm.
        act_layer: builds the activation, e.g. ``nn.Tanh``.

    Shapes: (B, in_features) -> (B, out_features).
    """

    def __init__(self, in_features: int, out_features: int, *, init: Init = "kaiming",
                 norm_layer: Callable[[int], nn.Module] | None = None,
                 act_layer: Callable[[], nn.Module] = nn.ReLU):
        super().__init__()
        self.linear = init_linear_(nn.Linear(in_features, out_features), init)
        self.norm = norm_layer(out_features) if norm_layer is not None else nn.Identity()
        self.act = act_layer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.linear(x)))


class ResidualLinearBlock(nn.Module):
    """h' = skip(h, act(norm(W h + b))): the plain block with a skip around it.

    Args:
        features: width of h and h'.
        skip: how the branch meets the stream, a key of
            :data:`~skiplab.blocks.skips.SKIPS` (``"residual"``: h + F(h)).
        init, norm_layer, act_layer: as :class:`PlainLinearBlock`.
        depth: the number of blocks in the stack, for skip kinds that need it
            (``"deepnorm"``).

    Shapes: (B, features) -> (B, features).
    """

    def __init__(self, features: int, *, skip: str = "residual", init: Init = "kaiming",
                 norm_layer: Callable[[int], nn.Module] | None = None,
                 act_layer: Callable[[], nn.Module] = nn.ReLU, depth: int | None = None):
        super().__init__()
        self.branch = PlainLinearBlock(features, features, init=init, norm_layer=norm_layer,
                                       act_layer=act_layer)
        self.shortcut = nn.Identity()
        self.skip = make_skip(skip, features, channel_dim=-1, depth=depth)

    @property
    def linear(self) -> nn.Linear:
        return self.branch.linear

    @property
    def residual(self) -> bool:
        """Whether the stream reaches the output (False for ``skip="none"``)."""
        return self.skip.residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return self.skip(self.shortcut(x), self.branch(x))

    def _check_input(self, x: torch.Tensor) -> None:
        # the sum needs x and the branch's output to have the same shape: say so clearly
        if x.dim() != 2 or x.shape[1] != self.linear.in_features:
            raise ValueError(f"{type(self).__name__} expects (B, {self.linear.in_features}), "
                             f"got {tuple(x.shape)}")


# How a two-layer branch starts, by the name ``branch_init=`` takes (see ResidualMLPBlock).
BRANCH_INITS: dict[str, str] = {
    "default": "He init before the ReLU, LeCun init for the branch's last layer",
    "zero": "the branch's last layer starts at zero: its norm's weight γ with norm='post' "
            "(Goyal et al. 2017), else its last linear map",
    "fixup": "Fixup (Zhang et al. 2019): first layer scaled by depth^(-1/2), last layer zero "
             "(without Fixup's scalar biases and multipliers)",
    "scaled": "GPT-2 (Radford et al. 2019): the last layer scaled by 1/sqrt(depth), one over "
              "the square root of the number of residual branches",
}


class ResidualMLPBlock(nn.Module):
    """x' = skip(x, F(x)) with a two-layer branch F = W2 act(W1 · + b1) + b2, the
    transformer's feed-forward shape, and an optional norm.

    ``norm="pre"`` normalises the branch's input, F(LN(x)) (GPT-2's layout); ``"post"`` ends
    the branch with a BatchNorm, BN(F(x)) (the original ResNet's layout, where Goyal et al.
    zero its γ); ``"none"`` has no norm at all.

    Args:
        features: width D of the stream.
        hidden: the branch's hidden width (default D).
        skip: a key of :data:`~skiplab.blocks.skips.SKIPS`.
        norm: ``"none"``, ``"pre"`` or ``"post"``.
        branch_init: a key of :data:`BRANCH_INITS`; ``"fixup"`` and ``"scaled"`` depend on
            the stack's ``depth``.
        depth: the number of blocks in the stack (for ``branch_init`` and skip kinds that
            need it).
        act_layer: builds the activation (default ``nn.ReLU``).

    Shapes: (B, D) -> (B, D).
    """

    NORMS: tuple[str, ...] = ("none", "pre", "post")

    def __init__(self, features: int, hidden: int | None = None, *, skip: str = "residual",
                 norm: str = "none", branch_init: str = "default", depth: int | None = None,
                 act_layer: Callable[[], nn.Module] = nn.ReLU):
        super().__init__()
        hidden = hidden or features
        self.norm = check_choice("norm", norm, self.NORMS)
        self.branch_init = check_choice("branch_init", branch_init, BRANCH_INITS,
                                        hint=BRANCH_INITS)
        self.pre_norm = nn.LayerNorm(features) if norm == "pre" else nn.Identity()
        self.linear1 = nn.Linear(features, hidden)
        self.act = act_layer()
        self.linear2 = nn.Linear(hidden, features)
        self.post_norm = nn.BatchNorm1d(features) if norm == "post" else nn.Identity()
        self.shortcut = nn.Identity()
        self.skip = make_skip(skip, features, channel_dim=-1, depth=depth)
        self.reset_branch_(depth)

    @torch.no_grad()
    def reset_branch_(self, depth: int | None = None) -> None:
        """Initialise the branch by ``self.branch_init`` (see :data:`BRANCH_INITS`)."""
        if self.branch_init in ("fixup", "scaled") and (depth is None or depth < 1):
            raise ValueError(f"branch_init={self.branch_init!r} scales by the stack's depth: "
                             f"pass depth >= 1 (got {depth})")
        nn.init.kaiming_normal_(self.linear1.weight, nonlinearity="relu")
        nn.init.kaiming_normal_(self.linear2.weight, nonlinearity="linear")
        nn.init.zeros_(self.linear1.bias)
        nn.init.zeros_(self.linear2.bias)
        if self.branch_init == "zero" and self.norm == "post":
            nn.init.zeros_(self.post_norm.weight)       # Goyal et al.'s zero-γ
        elif self.branch_init in ("zero", "fixup"):
            nn.init.zeros_(self.linear2.weight)
        if self.branch_init == "fixup":
            self.linear1.weight.mul_(depth ** -0.5)     # L^(-1/(2m-2)) with m = 2 layers
        elif self.branch_init == "scaled":
            self.linear2.weight.mul_(depth ** -0.5)

    @property
    def residual(self) -> bool:
        """Whether the stream reaches the output (False for ``skip="none"``)."""
        return self.skip.residual

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """F(x), (B, D) -> (B, D)."""
        return self.post_norm(self.linear2(self.act(self.linear1(self.pre_norm(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.linear1.in_features:
            raise ValueError(f"{type(self).__name__} expects (B, {self.linear1.in_features}), "
                             f"got {tuple(x.shape)}")
        return self.skip(self.shortcut(x), self.branch(x))
