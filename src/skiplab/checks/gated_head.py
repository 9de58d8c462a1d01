"""Checker for the heads exercise: a gated skip head, y = x + g * fc(x), with a gate g that
starts at 0 (ReZero-style).

Besides the two promises of the exercise (the identity at initialisation, and learning
that still starts), the output with the gate opened is compared with x + gate * fc(x)
built from the student's own ``fc`` and ``gate``, the gradient must reach ``fc``, the gate
and the input, and it must be the head's true slope. Two widths are tried, so a gate
sized for one of them fails.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .core import Checker, close, gradients_reach, guarded
from .core import PropertyChecker as _Checker
from .core import max_diff as _max_diff
from .tracing import slope_ok, slopes
from .zero_gate import gate_mistake, init_mistake

__all__ = ["check_gated_head"]

_DIMS, _HIDDEN_DIMS = (6, 10), (17, 32)
_BATCH = 5

P_FORMULA = "matches x + gate * fc(x) with the gate open"
P_GRADS = "gradients reach fc, the gate and the input"
P_SLOPE = "gradient with respect to x is the true slope"


@guarded("gated head")
def check_gated_head(head_cls: Callable[[int], nn.Module], *, hidden: bool = False) -> str:
    """Check a student's gated skip head, y = x + g * fc(x), with a gate g that starts at 0.

    The exercise: ``head_cls(dim)`` returns an ``nn.Module`` mapping (B, dim) -> (B, dim),
    with attributes ``fc`` (an ``nn.Linear(dim, dim)``, bias optional, default init) and
    ``gate`` (an ``nn.Parameter`` of shape (), (1,) or (dim,), starting at exactly 0). The
    library's version is :class:`skiplab.heads.SkipConnectionHead` with ``gate="zero"``.
    ``y = x + fc(x) * gate`` is the same thing, and so is an einsum written with fc's weight.

    Properties, for dim 6 and 10 (``hidden=True``: also 17 and 32): builds with ``fc`` and a
    trainable ``gate`` whose size follows dim; a tensor of the input's dtype and shape;
    identity at initialisation (|y - x| <= 1e-6; diagnoses an open gate, a sigmoid(0) =
    0.5 gate, a missing skip, a gate on the skip path); learning starts (at step 0 the gate
    gets a non-zero gradient, and after one SGD step the head is no longer the identity;
    diagnoses a zero fc and a gate used through .data, a ReLU or a square); with the gate
    set to random values the output is x + gate * fc(x) (diagnoses the input added twice);
    gradients reach fc, the gate and the input; autograd's gradient with respect to x is
    the head's true slope; after the SGD step the output depends on ``fc``.
    """
    c = _Checker("gated head")
    for dim in _DIMS + (_HIDDEN_DIMS if hidden else ()):
        _check_dim(c, head_cls, dim)
    return c.report()


def _check_dim(c: Checker, head_cls: Callable[[int], nn.Module], dim: int) -> None:
    head = c.run("builds", lambda: head_cls(dim), f"head_cls({dim}) builds a head",
                 "the constructor takes dim and creates self.fc and self.gate")
    _check_head_parts(c, head, dim)
    x = torch.randn(_BATCH, dim) * 2

    def forward(module: nn.Module, inp: torch.Tensor, prop: str) -> torch.Tensor:
        out = c.run(prop, lambda: module(inp), f"head(x) runs on x of shape {tuple(inp.shape)}",
                    "forward(x) should return x + self.gate * self.fc(x)")
        return c.tensor(prop, out, "a tensor", like=inp)

    prop = "shape (B, dim) -> (B, dim)"
    y = forward(head, x, prop)
    c.require(tuple(y.shape) == (_BATCH, dim), prop, f"output of shape {(_BATCH, dim)}",
              f"{tuple(y.shape)}", "the gate must broadcast over the batch: shape (), (1,) or "
              "(dim,)")
    c.ok("output dtype")

    prop = "identity at initialisation"
    diff = _max_diff(y, x)
    if diff > 1e-6:
        with torch.no_grad():
            branch = head.fc(x)
        c.fail(prop, "head(x) == x at initialisation (within 1e-6)",
               f"max |head(x) - x| = {diff:.3g}", _diagnose_head_init(x, y, branch))
    c.ok(prop)

    opened = copy.deepcopy(head)   # before the SGD step below changes the head
    _check_learning_starts(c, head, x, forward)
    _check_formula(c, opened, x, forward)

    prop = "output depends on fc after the step"
    with torch.no_grad():
        before = forward(head, x, prop)
        for p in head.fc.parameters():
            p.add_(0.5 * torch.randn_like(p))
        after = forward(head, x, prop)
    c.require(_max_diff(before, after) > 1e-6, prop,
              "changing fc's weights changes head(x) once the gate is open",
              f"max change {_max_diff(before, after):.3g}",
              "the branch must be fc(x): y = x + gate * self.fc(x)")


def _check_head_parts(c: Checker, head: Any, dim: int) -> None:
    prop = "has fc and a trainable gate"
    c.require_module_with(head, prop, ("fc", "gate"),
                          "store the layer as self.fc and the gate as self.gate = "
                          "nn.Parameter(...)")
    c.require(isinstance(head.fc, nn.Module), prop, "fc is an nn.Linear(dim, dim)",
              f"fc is a {type(head.fc).__name__}", "self.fc = nn.Linear(dim, dim)")
    gate = head.gate
    registered = torch.is_tensor(gate) and any(p is gate for p in head.parameters())
    c.require(registered and gate.requires_grad, prop,
              "gate is an nn.Parameter registered on the head",
              f"gate is a {type(gate).__name__}" + ("" if not torch.is_tensor(gate) else
                                                     " that is not a trainable parameter"),
              "self.gate = nn.Parameter(torch.zeros(1)) (or torch.zeros(dim)); a plain "
              "tensor or a buffer is never trained")
    c.require(gate.numel() in (1, dim), prop, f"head_cls({dim}): a gate of shape (), (1,) or "
              f"({dim},)", f"shape {tuple(gate.shape)}",
              "one scalar gate or one gate per dimension: its size follows dim, "
              "torch.zeros(dim), not a fixed number")
    c.require(gate.is_floating_point(), prop, "a float gate", f"a {gate.dtype} gate",
              "nn.Parameter(torch.zeros(1))")


def _diagnose_head_init(x: torch.Tensor, y: torch.Tensor, branch: torch.Tensor) -> str:
    """Hint for a head that is not the identity at initialisation."""
    mistake = init_mistake(x, y, branch)
    if mistake.kind == "no skip":
        return "the output is 0: the skip is missing; y = x + gate * fc(x), not gate * fc(x)"
    if mistake.kind == "gate on skip":
        return ("the output is fc(x): the gate multiplies the skip path; gate the branch "
                "instead, y = x + gate * fc(x)")
    start = mistake.scalar
    if start is not None:
        if abs(start - 1) < 1e-4:
            return ("the gate starts open (1): start it at zero, nn.Parameter(torch.zeros(1)), "
                    "so the head starts as the identity")
        if abs(start - 0.5) < 1e-4:
            return ("the gate starts at 0.5, as sigmoid(0) does: use the raw parameter as "
                    "the gate (ReZero), starting at exactly 0")
        return f"the gate starts at {start:.3g}: it must start at exactly 0"
    return "at initialisation the head must return x unchanged: y = x + gate * fc(x), gate = 0"


_GATE_HINTS = {
    "detached": "the gate multiplies fc(x) but carries no gradient: it is used through .data "
                "or .detach() (or under torch.no_grad()); multiply by self.gate itself",
    "clipped": "the gate goes through a ReLU (or a clamp), whose slope at 0 is 0, so it never "
               "moves: use the raw parameter, y = x + self.gate * self.fc(x)",
    "squared": "the gate is squared: g ** 2 has slope 0 at g = 0, so it never moves; use the "
               "raw parameter, y = x + self.gate * self.fc(x)",
}


def _gate_hint(head: nn.Module, x: torch.Tensor) -> str:
    """Why the gate gets no gradient although fc(x) is not zero."""
    return _GATE_HINTS.get(gate_mistake(head, "gate", "fc", x) or "", (
        "fc(x) is not zero, yet the gate gets no gradient: it enters through a function "
        "whose slope at 0 is 0 (or without a gradient); use y = x + self.gate * self.fc(x)"))


def _check_learning_starts(c: Checker, head: nn.Module, x: torch.Tensor,
                           forward: Callable[..., torch.Tensor]) -> None:
    prop = "learning starts"
    target = torch.randn_like(x)
    head.zero_grad()
    loss = F.mse_loss(forward(head, x, prop), target)
    if loss.requires_grad:
        c.run(prop, loss.backward, "backward through the head works",
              "do not detach tensors or wrap the forward in torch.no_grad()")
    with torch.no_grad():
        fc_zero = not torch.any(head.fc(x) != 0)
    gate_grad = head.gate.grad
    if gate_grad is None or not torch.any(gate_grad != 0):
        grads = [p.grad for p in head.parameters()]
        measured = ("every gradient is zero" if all(g is None or not torch.any(g != 0)
                                                   for g in grads)
                    else "gate.grad is None" if gate_grad is None
                    else "the gate's gradient is exactly 0")
        if fc_zero and all(g is None or not torch.any(g != 0) for g in grads):
            hint = ("learning never starts: with both the gate and fc at zero, the gate's "
                    "gradient (which needs fc(x)) and fc's (which needs the gate) are both 0; "
                    "keep fc's default initialisation and start only the gate at zero")
        elif fc_zero:
            hint = ("dL/dgate = dL/dy * fc(x) is 0 when fc starts at zero: keep fc's default "
                    "initialisation; only the gate starts at zero")
        else:
            hint = _gate_hint(head, x)
        c.fail(prop, "a non-zero gradient for the gate at step 0", measured, hint)
    c.run(prop, torch.optim.SGD(head.parameters(), lr=0.5).step,
          "an SGD step works", "all parameters must be ordinary float tensors")
    with torch.no_grad():
        moved = _max_diff(forward(head, x, prop), x)
    c.require(moved > 1e-6, prop, "after one SGD step head(x) is no longer x",
              f"max |head(x) - x| = {moved:.3g} after the step",
              "the gate must be trainable and multiply fc(x): y = x + gate * fc(x)")


def _check_formula(c: Checker, head: nn.Module, x: torch.Tensor,
                   forward: Callable[..., torch.Tensor]) -> None:
    """Gate set to random values: y == x + gate * fc(x); gradients reach fc, gate and x."""
    with torch.no_grad():
        head.gate.copy_(torch.rand_like(head.gate) + 0.5)
        want = x + head.gate * head.fc(x)
        got = forward(head, x, P_FORMULA)
    if not close(got, want):
        with torch.no_grad():
            twice = x + head.gate * (head.fc(x) + x)
        hint = ("the input is added twice: the gate multiplies fc(x) alone, y = x + gate * "
                "fc(x)" if close(got, twice) else
                "with the gate open the head must return x + gate * fc(x), with its own fc "
                "and gate and nothing else")
        c.fail(P_FORMULA, "head(x) == x + gate * fc(x) for a random gate",
               f"max difference {_max_diff(got, want):.3g}", hint)
    c.ok(P_FORMULA)
    xg = x.clone().requires_grad_(True)
    out = forward(head, xg, P_GRADS)
    missing = gradients_reach(head, out, (xg,))
    if missing:
        hint = ("fc's output is detached (.detach() or .data): the gradient must reach fc"
                if any(n.startswith("fc.") for n in missing) else
                "do not detach x or the gate; no torch.no_grad() in forward")
        c.fail(P_GRADS, "with the gate open, every parameter and x get a non-zero gradient",
               f"no gradient for {', '.join(missing)}", hint)
    c.ok(P_GRADS)
    auto, true, tol = slopes(head.eval(), (x,), torch.randn_like(x), (torch.randn_like(x),))
    c.require(slope_ok(auto, true, tol), P_SLOPE,
              "autograd's gradient with respect to x equals the slope of head(x)",
              f"autograd {auto:.4g}, true slope {true:.4g}",
              "a path is cut from the gradient: add x itself and use fc(x) on x itself, not "
              "x.detach() or x.data")
