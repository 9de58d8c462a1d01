"""Checker for the ResNet exercise: a basic block, x' = relu(bn2(conv2(h)) + shortcut(x))
with h = relu(bn1(conv1(x))); (B, C_in, H, W) -> (B, C_out, ceil(H / s), ceil(W / s)).

The checker rebuilds the block's formula from the student's own layers: it records every
convolution and BatchNorm the forward pass calls (modules or functional calls alike, see
:mod:`~skiplab.checks.tracing`), finds conv1 (the 3x3 conv that reads x), bn1 (reads
conv1's output), conv2, bn2 and the projection, and requires each link of the formula
between them; a broken link names the mistake (a missing middle ReLU, conv -> ReLU -> BN,
BatchNorm before its conv or after the addition, a ReLU on the shortcut or inside the
projection, ...). Then autograd's gradient must be the function's true slope, so that a
shortcut that carries no gradient (``x.detach()``, ``x.data``) fails. The formula's links
are checked in :mod:`~skiplab.checks.basic_block_formula`; the crashes, shapes, parameter
count and slope here.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .basic_block_formula import (  # noqa: F401 - the property names, importable from here
    P_ADD, P_BN_ADD, P_CARRIES, P_FINAL, P_FORMULA, P_MIDDLE, P_NO_RELU, P_ORDER, P_PROJ,
    P_SC_RELU, P_SKIP, P_TYPES, Case, Config, check_formula)
from .basic_block_formula import block_label as _label
from .basic_block_formula import reshapes as _reshapes
from .core import (Checker, PropertyChecker, count_parameters, eval_twin, gradients_reach,
                   guarded, materialise, shape_mismatch)
from .tracing import LayerTrace, random_slope, slope_ok

__all__ = ["check_basic_block"]

BlockFactory = Callable[[int, int, int], nn.Module]
"""``block_cls(in_channels, out_channels, stride)``: a class or any callable making a module."""

_CASES: tuple[Case, ...] = (((8, 8, 1), (6, 8)), ((8, 16, 2), (6, 8)),
                            ((4, 12, 1), (5, 7)), ((6, 6, 2), (7, 5)))
_HIDDEN_CASES: tuple[Case, ...] = (((5, 5, 1), (9, 7)), ((3, 7, 2), (9, 9)),
                                   ((7, 7, 2), (8, 11)), ((6, 10, 1), (4, 5)))
_BATCH = 2

P_GRAD = "gradient flows through the shortcut and the branch"


def _out_shape(case: Case) -> tuple[int, int, int, int]:
    (_, c_out, s), (h, w) = case
    return (_BATCH, c_out, (h - 1) // s + 1, (w - 1) // s + 1)


@guarded("basic block")
def check_basic_block(block_cls: BlockFactory, *, hidden: bool = False) -> str:
    """Check a ResNet basic block: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)).

    ``block_cls(in_channels, out_channels, stride)`` must build a module mapping
    (B, C_in, H, W) -> (B, C_out, ceil(H / stride), ceil(W / stride)), in the input's dtype.
    Tried for (in, out, stride) = (8, 8, 1), (8, 16, 2), (4, 12, 1), (6, 6, 2) on inputs
    of several sizes; ``hidden=True`` (the grader's hidden check) adds four more.

    Properties, in order: construction; forward runs (a crash at the addition is read
    from the convolutions it ran: missing padding, the stride on both convs or on none, a
    missing or unstrided projection); output dtype and shape; parameter-free shortcut when
    the shapes agree; gradients reach every parameter and the input; then, in eval mode
    with random BatchNorm statistics, on the recorded layers: layer types (two 3x3 convs,
    a BatchNorm after each, a 1x1 projection where the shape changes); each link of the
    formula (conv -> BN -> ReLU, the middle ReLU, bn2 before the addition, the projection
    conv -> BN without ReLU, the shortcut added as it is, the addition before the final
    ReLU); finally autograd's gradient with respect to x equals the true slope (a
    detached shortcut fails here).

    Accepted variants: conv bias or not, the stride on either 3x3 conv, modules or
    functional calls, ``nn.Sequential`` or lazy layers, an identity written as
    ``nn.Identity`` / a lambda / ``x``, a projection with or without BatchNorm, or a
    parameter-free one (option A), a zero-initialised last BatchNorm.

    Returns the report; raises :class:`CheckFailed` naming the first property that fails.
    """
    check = PropertyChecker("basic block")
    cases = _CASES + (_HIDDEN_CASES if hidden else ())
    blocks = {case: _make(check, block_cls, case) for case in cases}
    check.ok("construction")
    xs = {case: torch.randn(_BATCH, case[0][0], *case[1]) for case in cases}
    outs = {case: _forward(check, blocks[case], xs[case], case) for case in cases}
    check.ok("forward runs")
    check.ok("output dtype")
    check.ok("output shape")
    _check_parameter_count(check, blocks)
    for case, (x, out) in outs.items():
        _check_gradients(check, case, blocks[case], x, out)
        twin = eval_twin(blocks[case])
        check_formula(check, case, twin, xs[case])
        _check_slope(check, case, twin, xs[case])
    return check.report()


def _check_gradients(check: Checker, case: Case, block: nn.Module, x: torch.Tensor,
                     out: torch.Tensor) -> None:
    missing = gradients_reach(block, out, (x,))
    if missing:
        hint = ("the input gets no gradient: do not detach x or run under no_grad"
                if missing == ["input"] else
                "a layer built in __init__ is never used in forward (or its output is "
                "thrown away)")
        check.fail("gradients reach every parameter and the input",
                   f"{_label(case)}: a non-zero gradient everywhere",
                   f"no gradient for {', '.join(missing[:4])}", hint)
    check.ok("gradients reach every parameter and the input")


def _make(check: Checker, block_cls: BlockFactory, case: Case) -> nn.Module:
    cfg = case[0]
    expected = f"block_cls{cfg} builds an nn.Module"
    block = check.run("construction", lambda: block_cls(*cfg), expected,
                      "the class must take (in_channels, out_channels, stride), in that order")
    if not isinstance(block, nn.Module):
        check.fail("construction", expected, f"got {type(block).__name__}",
                   "subclass nn.Module and call super().__init__() first")
    x = torch.randn(_BATCH, cfg[0], *case[1])
    check.run("forward runs", lambda: materialise(block, x),
              f"{_label(case)} runs without error", "the forward pass crashed")
    with torch.no_grad():   # a valid "zero-init last BN" would hide gradients and the branch
        for bn in block.modules():
            if isinstance(bn, _BatchNorm) and bn.weight is not None and not torch.any(
                    bn.weight != 0):
                bn.weight.fill_(1.0)
    return block


def _forward(check: Checker, block: nn.Module, x: torch.Tensor,
             case: Case) -> tuple[torch.Tensor, torch.Tensor]:
    """block(x) in train mode, with a leaf x that requires grad; crashes diagnosed."""
    block.train()
    x = x.clone().requires_grad_(True)
    trace = LayerTrace()
    expected = f"{_label(case)} runs without error"

    def run() -> object:
        with trace:
            return block(x)

    out = check.run("forward runs", run, expected, lambda e: _crash_hint(case, e, trace))
    out = check.tensor("forward runs", out, expected, like=x)
    want, got = _out_shape(case), tuple(out.shape)
    if got != want:
        check.fail("output shape", f"{_label(case)}: {want}", f"{got}",
                   _shape_hint(case, got, trace))
    return x, out


def _conv_diagnosis(case: Case, trace: LayerTrace) -> str | None:
    """A hint read from the 3x3 convolutions a forward pass ran, or None."""
    stride = case[0][2]
    convs = trace.convs((3, 3))
    if any(c.padding == (0, 0) for c in convs):
        return ("a 3x3 convolution without padding shrinks the map by 2 pixels each way: give "
                "both 3x3 convolutions padding=1")
    strided = [c for c in convs if c.stride != (1, 1)]
    if stride != 1 and len(strided) > 1:
        return (f"both 3x3 convolutions have stride {stride}, so the branch shrinks the map "
                f"{stride * stride} times: only one of them (the first) takes the stride")
    if stride != 1 and len(convs) >= 2 and not strided:
        return (f"the branch ignores the stride argument (no 3x3 convolution has stride "
                f"{stride}): give conv1 stride=stride")
    return None


def _crash_hint(case: Case, error: BaseException, trace: LayerTrace) -> str:
    (c_in, c_out, stride), (height, width) = case
    kind, text = shape_mismatch(error), str(error)
    if kind is not None and kind[0] == "add":
        found = _conv_diagnosis(case, trace)
        if found:
            return found
        branch = _out_shape(case)
        others = [s for s in trace.failed or [] if s != branch]
        if trace.failed and branch in trace.failed and len(others) == 1 and len(others[0]) == 4:
            got = others[0]
            if got == (_BATCH, c_in, height, width):
                return (f"the branch gives {branch} but the shortcut passes x on unchanged, "
                        f"{got}: where the shape changes, use a projection (1x1 conv, "
                        f"stride={stride}, then BatchNorm)")
            if got[1] == c_out:
                return (f"the shortcut gives {got}, the branch {branch}: give the "
                        f"projection's 1x1 conv stride={stride}, like the branch")
            if got[2:] == branch[2:]:
                return (f"the shortcut gives {got}, the branch {branch}: the projection must "
                        f"map {c_in} channels to {c_out}")
        return ("branch and shortcut differ in shape at the addition: where the block changes "
                f"channels or resolution the shortcut must too (1x1 conv with stride={stride}, "
                "then BatchNorm)")
    if "channels" in text and "expected input" in text:
        return ("a convolution got the wrong number of channels: conv1 (and the projection) "
                "read in_channels, conv2 reads out_channels")
    if "running_mean" in text or "weight should contain" in text:
        return "each BatchNorm takes the channel count of the conv before it (out_channels)"
    if "in-place operation" in text:
        return ("an in-place operation changed x (e.g. identity = x; identity += out, or an "
                "in-place ReLU on x): the block must leave its input alone; write "
                "out = out + shortcut(x)")
    return "the forward pass crashed: run the block on a random input of this shape and read " \
           "the traceback"


def _shape_hint(case: Case, got: tuple[int, ...], trace: LayerTrace) -> str:
    (_, c_out, stride), (height, width) = case
    want = _out_shape(case)
    found = _conv_diagnosis(case, trace)
    if found and len(got) == 4 and got[2:] != want[2:]:
        return found
    if len(got) == 4 and got[2:] == (height, width) and stride != 1:
        return (f"the output keeps H x W: put stride={stride} on a 3x3 convolution (and on the "
                "projection)")
    if len(got) == 4 and got[1] != c_out:
        return "the second conv and BatchNorm must produce out_channels"
    return "(B, C_in, H, W) must become (B, C_out, ceil(H / stride), ceil(W / stride))"


def _check_parameter_count(check: Checker, blocks: dict[Case, nn.Module]) -> None:
    prop = "parameter-free identity shortcut"
    for case, block in blocks.items():
        c_in, c_out, stride = case[0]
        if _reshapes(case[0]):
            continue
        c = c_in
        base = 2 * 9 * c * c + 2 * 2 * c           # two 3x3 convs, two BatchNorms
        n = count_parameters(block)
        if n in (base, base + c, base + 2 * c):    # plus a bias on one or both convs
            continue
        extra = n - base
        if n > base and extra - c * c in range(0, 5 * c):
            hint = (f"when in_channels == out_channels and stride == 1 the shortcut is the "
                    f"identity, with no weights: the {extra} extra parameters look like a "
                    "1x1 projection; use it only where the shape changes")
        elif n > base:
            hint = ("only two 3x3 convolutions and two BatchNorms carry weights here: "
                    "check the kernel sizes, and that the shortcut has no weights")
        else:
            hint = "a 3x3 convolution or a BatchNorm is missing from the branch"
        check.fail(prop, f"block_cls{case[0]} has {base} parameters (two 3x3 convs {c}->{c} "
                   f"and two BatchNorms; +{c} per conv bias)", f"{n} parameters", hint)
    check.ok(prop)


def _check_slope(check: Checker, case: Case, twin: nn.Module, x: torch.Tensor) -> None:
    """Autograd's d out / d x along a random direction equals the finite difference."""
    slope = random_slope(twin, x)
    if slope.ok:
        check.ok(P_GRAD)
        return
    expected = (f"{_label(case)}: autograd's gradient with respect to x equals the block's "
                "slope (finite difference)")
    measured = f"autograd {slope.auto:.4g}, true slope {slope.true:.4g}"
    if not _reshapes(case[0]):
        through_shortcut = float((slope.weight * (slope.out > 0) * slope.direction).sum())
        if slope_ok(slope.auto, slope.true - through_shortcut, slope.tol, abs(slope.true)):
            check.fail(P_GRAD, expected, measured + " (the part through the shortcut is "
                       "missing)", "the shortcut carries no gradient: add x itself, not "
                       "x.detach() or x.data")
    check.fail(P_GRAD, expected, measured, "a path is cut from the gradient (.detach(), .data "
               "or torch.no_grad() in forward): the shortcut and the branch must both carry "
               "it")
