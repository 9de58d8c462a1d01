"""Checker for the identity chapter's exercise: a ReZero block, y = x + alpha * F(x), with a
learned gate alpha that starts at 0 (ReZero, Bachlechner et al. 2020; SkipInit, De & Smith
2020, is the same formula).

The block keeps two promises: it starts as the identity, and learning starts. Exactly one
factor of alpha * F(x) starts at zero: alpha gets a gradient at step 0 (dL/dalpha needs
F(x) != 0), and the branch's weights get theirs from the second step (they need alpha != 0).
Zero both (Fixup's zero last layer and a zero alpha) and nothing ever learns. The checks
follow that story, then compare the block with x + alpha * F(x) built from the student's own
``branch`` and ``alpha`` for a random alpha, and require the true slope with respect to x.
Two (dim, hidden) sizes are tried, so an alpha sized for one of them fails.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .core import (
    Checker,
    PropertyChecker,
    close,
    fmt_values,
    gradients_reach,
    guarded,
    max_diff,
    shape_mismatch,
)
from .tracing import slope_ok, slopes
from .zero_gate import gate_mistake, init_mistake, scale

__all__ = ["check_rezero_block"]

_SIZES, _HIDDEN_SIZES = ((6, 16), (10, 7)), ((17, 32), (32, 9))
_BATCH = 5
_CODE = "y = x + self.alpha * self.branch(x)"

P_PARTS = "has a branch and a trainable alpha"
P_SHAPE = "shape (B, dim) -> (B, dim)"
P_IDENTITY = "identity at initialisation"
P_STARTS = "learning starts"
P_BRANCH = "the branch learns once alpha moved"
P_FORMULA = "matches x + alpha * branch(x) for any alpha"
P_GRADS = "gradients reach the branch, alpha and the input"
P_SLOPE = "gradient with respect to x is the true slope"


@guarded("rezero block")
def check_rezero_block(block_cls: Callable[[int, int], nn.Module], *,
                       hidden: bool = False) -> str:
    """Check a student's ReZero block, y = x + alpha * F(x), with alpha starting at 0.

    The exercise: ``block_cls(dim, hidden)`` returns an ``nn.Module`` mapping (B, dim) ->
    (B, dim), with attributes ``branch`` (the given ``nn.Sequential(nn.Linear(dim, hidden),
    nn.ReLU(), nn.Linear(hidden, dim))``, default init) and ``alpha`` (an ``nn.Parameter``
    of shape (), (1,) or (dim,), starting at exactly 0). The library's version is the skip
    kind :class:`skiplab.blocks.skips.ReZero`. ``x + self.branch(x) * self.alpha`` and
    ``torch.addcmul(x, self.alpha, self.branch(x))`` are the same thing.

    Properties, for (dim, hidden) = (6, 16) and (10, 7) (``hidden=True``: also (17, 32) and
    (32, 9)): has ``branch`` and a trainable ``alpha`` whose size follows dim (diagnoses a
    buffer, requires_grad=False); a tensor of the input's dtype and shape; identity at
    initialisation (|y - x| <= 1e-6; diagnoses alpha starting at 1, at sigmoid(0) = 0.5, at
    LayerScale's 0.1 or at small random values, a missing skip, alpha on the skip, the input
    added twice); learning starts (at step 0 alpha gets a non-zero gradient, and after one
    SGD step alpha moved and the block is no longer the identity; diagnoses alpha and the
    branch's last layer both zero, a zero branch with an open alpha, alpha used through
    .data or torch.no_grad(), a ReLU or clamp, a square or abs); the branch learns once
    alpha moved (at the second step every parameter of the branch, the first layer
    included, gets a gradient); with alpha set to random values the output is x + alpha *
    branch(x); gradients reach the branch, alpha and the input; autograd's gradient with
    respect to x is the block's true slope (diagnoses a detached skip or branch input).
    """
    c = PropertyChecker("rezero block")
    for dim, width in _SIZES + (_HIDDEN_SIZES if hidden else ()):
        _check_size(c, block_cls, dim, width)
    return c.report()


def _forward_hint(error: BaseException) -> str:
    if shape_mismatch(error) is not None:
        return "alpha must broadcast over the batch: shape (), (1,) or (dim,)"
    return "forward(x) should return x + self.alpha * self.branch(x), on x of shape (B, dim)"


def _forward(c: Checker, block: nn.Module, x: torch.Tensor, prop: str) -> torch.Tensor:
    out = c.run(prop, lambda: block(x), f"block(x) runs on x of shape {tuple(x.shape)}",
                _forward_hint)
    return c.tensor(prop, out, "a tensor", like=x)


def _check_size(c: Checker, block_cls: Callable[[int, int], nn.Module], dim: int,
                width: int) -> None:
    block = c.run("builds", lambda: block_cls(dim, width),
                  f"block_cls({dim}, {width}) builds a block",
                  "the constructor takes (dim, hidden), keeps the given self.branch and "
                  "creates self.alpha")
    _check_parts(c, block, dim)
    x = torch.randn(_BATCH, dim) * 2

    y = _forward(c, block, x, P_SHAPE)
    shape = tuple(y.shape)
    c.require(shape == (_BATCH, dim), P_SHAPE, f"output of shape {(_BATCH, dim)}", f"{shape}",
              "the output has twice the features: add the branch to x, do not concatenate"
              if shape == (_BATCH, 2 * dim) else
              "alpha must broadcast over the batch: shape (), (1,) or (dim,)")
    c.ok("output dtype")

    diff = max_diff(y, x)
    if diff > 1e-6:
        with torch.no_grad():
            branch = block.branch(x)
        c.fail(P_IDENTITY, "block(x) == x at initialisation (within 1e-6)",
               f"max |block(x) - x| = {diff:.3g}", _identity_hint(x, y, branch))
    c.ok(P_IDENTITY)

    opened = copy.deepcopy(block)   # before the SGD steps below change the block
    _check_learning(c, block, x)
    _check_formula(c, opened, x)


def _check_parts(c: Checker, block: Any, dim: int) -> None:
    c.require_module_with(block, P_PARTS, ("branch", "alpha"),
                          "keep the given self.branch and store the gate as self.alpha = "
                          "nn.Parameter(...)")
    branch = block.branch
    c.require(isinstance(branch, nn.Module) and any(True for _ in branch.parameters()), P_PARTS,
              "branch is the given nn.Sequential(Linear, ReLU, Linear)",
              f"branch is a {type(branch).__name__} without parameters",
              "keep self.branch as the exercise gives it")
    alpha = block.alpha
    registered = torch.is_tensor(alpha) and any(p is alpha for p in block.parameters())
    measured = (f"alpha is a {type(alpha).__name__}" if not torch.is_tensor(alpha) else
                "alpha is not a registered parameter (a plain tensor or a buffer)"
                if not registered else "alpha has requires_grad=False")
    c.require(registered and alpha.requires_grad, P_PARTS,
              "alpha is a trainable nn.Parameter registered on the block", measured,
              "self.alpha = nn.Parameter(torch.zeros(())); a plain tensor, a buffer or a "
              "parameter with requires_grad=False is never trained")
    c.require(alpha.numel() in (1, dim), P_PARTS,
              f"block_cls({dim}, hidden): alpha of shape (), (1,) or ({dim},)",
              f"shape {tuple(alpha.shape)}",
              "one scalar alpha or one per channel: its size follows dim, torch.zeros(dim), "
              "not a fixed number or hidden")
    c.require(alpha.is_floating_point(), P_PARTS, "a float alpha", f"a {alpha.dtype} alpha",
              "nn.Parameter(torch.zeros(()))")


def _identity_hint(x: torch.Tensor, y: torch.Tensor, branch: torch.Tensor) -> str:
    """Hint for a block that is not the identity at initialisation."""
    if max_diff(y, 2 * x) < 1e-5:
        return "the output is 2x: the input is added twice; add x once, " + _CODE
    mistake = init_mistake(x, y, branch, per_channel=True)
    if mistake.kind == "no skip":
        return ("the output is 0: the skip is missing; y = x + alpha * branch(x), not "
                "alpha * branch(x)")
    if mistake.kind == "gate on skip":
        return ("the output is branch(x): alpha multiplies the skip path (alpha * x + "
                "branch(x)); put alpha on the branch instead, " + _CODE)
    start = mistake.scalar
    if start is not None:
        for value, why in ((1.0, "an open gate (the plain residual block)"),
                           (0.5, "as sigmoid(0) gives: use the raw parameter as alpha"),
                           (0.1, "as in LayerScale (CaiT), but ReZero's gate starts closed")):
            if abs(start - value) < 1e-4:
                return (f"alpha starts at {value:g}, {why}; start it at exactly 0, "
                        "nn.Parameter(torch.zeros(())), so the block starts as the identity")
        return (f"alpha starts at {start:.3g}: even a small or random start is not the "
                "identity; start it at exactly 0, torch.zeros(())")
    if mistake.start is not None:
        return (f"alpha starts at {fmt_values(mistake.start)}, one value per channel: start "
                "every entry at exactly 0, torch.zeros(dim)")
    return "at initialisation the block must return x unchanged: " + _CODE + ", alpha = 0"


_ALPHA_HINTS = {
    "detached": "alpha multiplies branch(x) but carries no gradient: it is used through .data "
                "or .detach() (or under torch.no_grad()); multiply by self.alpha itself",
    "clipped": "alpha goes through a ReLU (or a clamp), whose slope at 0 is 0, so it never "
               "moves: use the raw parameter, " + _CODE,
    "squared": "alpha is squared: alpha ** 2 has slope 0 at alpha = 0, so it never moves; use "
               "the raw parameter, " + _CODE,
    "absolute": "alpha goes through abs(), whose gradient at 0 is 0, so it never moves: use "
                "the raw parameter, " + _CODE,
}


def _no_gradient(grad: torch.Tensor | None) -> bool:
    return grad is None or not torch.any(grad != 0)


def _backward(c: Checker, block: nn.Module, x: torch.Tensor, target: torch.Tensor,
              prop: str) -> None:
    block.zero_grad()
    loss = F.mse_loss(_forward(c, block, x, prop), target)
    if loss.requires_grad:
        c.run(prop, loss.backward, "backward through the block works",
              "do not detach tensors or wrap the forward in torch.no_grad()")


def _check_learning(c: Checker, block: nn.Module, x: torch.Tensor) -> None:
    """Step 0: alpha gets a gradient; one SGD step moves alpha and the output; step 1: every
    parameter of the branch gets a gradient."""
    target = torch.randn_like(x)
    _backward(c, block, x, target, P_STARTS)
    alpha_grad = block.alpha.grad
    if _no_gradient(alpha_grad):
        with torch.no_grad():
            branch_zero = not torch.any(block.branch(x) != 0)
        nothing = all(_no_gradient(p.grad) for p in block.parameters())
        measured = ("every gradient is zero" if nothing else "alpha.grad is None"
                    if alpha_grad is None else "alpha's gradient is exactly 0")
        if branch_zero and nothing:
            hint = ("learning never starts: alpha and the branch's output both start at zero, "
                    "so alpha's gradient (which needs branch(x)) and the branch's (which needs "
                    "alpha) are both 0. Exactly one factor of alpha * branch(x) may start at "
                    "zero: keep the branch's default initialisation, start only alpha at zero")
        elif branch_zero:
            hint = ("dL/dalpha = dL/dy * branch(x) is 0 when the branch starts at zero (Fixup's "
                    "choice: a zero last layer, the gate open); in ReZero only alpha starts at "
                    "zero: keep the branch's default initialisation")
        else:
            hint = _ALPHA_HINTS.get(gate_mistake(block, "alpha", "branch", x) or "", (
                "branch(x) is not zero, yet alpha gets no gradient: it enters through a "
                "function whose slope at 0 is 0 (or without a gradient); " + _CODE))
        c.fail(P_STARTS, "a non-zero gradient for alpha at step 0", measured, hint)
    before = block.alpha.detach().clone()
    c.run(P_STARTS, torch.optim.SGD(block.parameters(), lr=0.5).step, "an SGD step works",
          "all parameters must be ordinary float tensors")
    c.require(max_diff(block.alpha, before) > 0, P_STARTS, "one SGD step moves alpha",
              "alpha did not change", "alpha must be the parameter the SGD step updates: "
              "self.alpha = nn.Parameter(torch.zeros(()))")
    with torch.no_grad():
        moved = max_diff(_forward(c, block, x, P_STARTS), x)
    c.require(moved > 1e-6, P_STARTS, "after one SGD step block(x) is no longer x",
              f"max |block(x) - x| = {moved:.3g} after the step",
              "alpha must be trainable and multiply branch(x): " + _CODE)

    _backward(c, block, x, target, P_BRANCH)
    params = dict(block.branch.named_parameters())
    missing = [n for n, p in params.items() if _no_gradient(p.grad)]
    if missing:
        frozen = [n for n in missing if not params[n].requires_grad]
        hint = (f"branch.{frozen[0]} has requires_grad=False: every layer of the branch must "
                "stay trainable" if frozen else
                "the branch's output carries no gradient (.detach(), .data or torch.no_grad() "
                "around self.branch(x)): alpha learns, the branch never does; " + _CODE
                if len(missing) == len(params) else
                "part of the branch gets no gradient: call self.branch(x) itself, every layer "
                "trainable")
        c.fail(P_BRANCH, "after one SGD step (alpha != 0) every parameter of the branch, its "
               "first layer included, gets a non-zero gradient",
               "no gradient for " + ", ".join(f"branch.{n}" for n in missing), hint)
    c.ok(P_BRANCH)


def _check_formula(c: Checker, block: nn.Module, x: torch.Tensor) -> None:
    """alpha set to random values: y == x + alpha * branch(x); gradients reach the branch,
    alpha and x, and autograd's slope with respect to x is the true one."""
    with torch.no_grad():
        block.alpha.copy_(torch.rand_like(block.alpha) + 0.5)
        alpha, branch = block.alpha.detach().clone(), block.branch(x)
        want = x + alpha * branch
        got = _forward(c, block, x, P_FORMULA)
    if not close(got, want):
        found = scale(got - x, branch) if alpha.numel() == 1 else None
        hint = ("the input is added twice: alpha multiplies branch(x) alone, " + _CODE
                if close(got, x + alpha * (branch + x)) else
                f"y - x is {found:.3g} * branch(x) with alpha = {alpha.item():.3g}: multiply "
                "by alpha itself, not a function of it" if found is not None else
                "with alpha set, the block must return x + alpha * branch(x), with its own "
                "branch and alpha and nothing else")
        c.fail(P_FORMULA, "block(x) == x + alpha * branch(x) for a random alpha",
               f"max difference {max_diff(got, want):.3g}", hint)
    c.ok(P_FORMULA)

    xg = x.clone().requires_grad_(True)
    missing = gradients_reach(block, _forward(c, block, xg, P_GRADS), (xg,))
    if missing:
        hint = ("the branch's output is detached (.detach(), .data or torch.no_grad()): the "
                "gradient must reach the branch's weights"
                if any(n.startswith("branch.") for n in missing) else
                "do not detach x or alpha; no torch.no_grad() in forward")
        c.fail(P_GRADS, "with alpha non-zero, every parameter and x get a non-zero gradient",
               f"no gradient for {', '.join(missing)}", hint)
    c.ok(P_GRADS)

    weight, direction = torch.randn_like(x), torch.randn_like(x)
    auto, true, tol = slopes(block.eval(), (x,), weight, (direction,))
    if not slope_ok(auto, true, tol):
        skip = float((weight.double() * direction.double()).sum())   # the skip's share
        hint = ("the skip carries no gradient: add x itself, not x.detach() or x.data"
                if slope_ok(auto, true - skip, tol, scale=abs(true)) else
                "the branch's input carries no gradient: feed x itself to the branch, not "
                "x.detach() or x.data" if slope_ok(auto, skip, tol, scale=abs(true)) else
                "a path is cut from the gradient: add x itself and feed x itself to the "
                "branch, not x.detach() or x.data")
        c.fail(P_SLOPE, "autograd's gradient with respect to x equals the slope of block(x)",
               f"autograd {auto:.4g}, true slope {true:.4g}", hint)
    c.ok(P_SLOPE)
