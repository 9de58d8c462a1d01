"""Part of the ResNet exercise's checker (:mod:`~skiplab.checks.basic_block`): the basic
block's formula, relu(bn2(conv2(h)) + shortcut(x)) with h = relu(bn1(conv1(x))), rebuilt from
the student's own layers.

:func:`check_formula` runs the block once in eval mode under a
:class:`~skiplab.checks.tracing.LayerTrace`, finds conv1 (the 3x3 conv that reads x), bn1,
conv2, bn2 and the projection among the recorded calls and requires each link of the
formula between them; a broken link names the mistake (a missing middle ReLU,
conv -> ReLU -> BN, BatchNorm before its conv or after the addition, a ReLU on the shortcut
or inside the projection, ...). Tensors are (B, C, H, W).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .core import Checker, close
from .tracing import Call, LayerTrace, first_close

__all__ = ["P_ADD", "P_BN_ADD", "P_CARRIES", "P_FINAL", "P_FORMULA", "P_MIDDLE", "P_NO_RELU",
           "P_ORDER", "P_PROJ", "P_SC_RELU", "P_SKIP", "P_TYPES", "Case", "Config",
           "block_label", "check_formula", "reshapes"]

Config = tuple[int, int, int]
Case = tuple[Config, tuple[int, int]]   # ((in, out, stride), (H, W))

P_TYPES = "layer types: two 3x3 convs, their BatchNorms, a 1x1 projection"
P_ORDER = "conv -> BatchNorm -> ReLU order"
P_MIDDLE = "ReLU between the two convolutions"
P_BN_ADD = "BatchNorm before the addition"
P_PROJ = "projection is conv -> BatchNorm"
P_SC_RELU = "no ReLU on the shortcut"
P_ADD = "addition before the final ReLU"
P_FINAL = "output non-negative (final ReLU)"
P_SKIP = "skip connection exists"
P_CARRIES = "shortcut carries the input"
P_NO_RELU = "no ReLU before the addition"
P_FORMULA = "matches relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))"


def block_label(case: Case) -> str:
    """How the failure message names the case: 'block_cls(8, 16, 2) on (2, 8, 6, 8)'."""
    (c_in, c_out, stride), (h, w) = case
    return f"block_cls({c_in}, {c_out}, {stride}) on (2, {c_in}, {h}, {w})"


def reshapes(cfg: Config) -> bool:
    """Whether the block changes the shape, so that its shortcut is not the identity."""
    return cfg[0] != cfg[1] or cfg[2] != 1


def _option_a(x: torch.Tensor, cfg: Config) -> list[torch.Tensor]:
    """Parameter-free shortcuts: subsample by the stride, zero channels before/after."""
    c_in, c_out, stride = cfg
    sub = x[..., ::stride, ::stride]
    extra = c_out - c_in
    if extra < 0:
        return []
    return [F.pad(sub, (0, 0, 0, 0, left, extra - left))
            for left in sorted({0, extra // 2, extra - extra // 2, extra})]


def check_formula(check: Checker, case: Case, twin: nn.Module, x: torch.Tensor) -> None:
    """Rebuild relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)) from the layers ``twin``
    (the block in eval mode) calls on x (2, C_in, H, W); fail on the first broken link."""
    cfg, label = case[0], block_label(case)
    trace = LayerTrace()
    with torch.no_grad(), trace:
        out = twin(x.clone())
    k3, k1, norms = trace.convs((3, 3)), trace.convs((1, 1)), trace.norms()
    _check_types(check, case, trace, k3, k1, norms)

    conv1 = first_close(k3, x)
    if conv1 is None:
        if first_close(norms, x) is not None:
            check.fail(P_ORDER, f"{label}: conv1 reads x, bn1 reads conv1's output",
                       "a BatchNorm reads the block's input x",
                       "BatchNorm placed before its conv: the order is conv -> BatchNorm -> "
                       "ReLU, h = relu(bn1(conv1(x)))")
        check.fail(P_ORDER, f"{label}: the first 3x3 convolution reads x itself",
                   "no 3x3 convolution reads x", "conv1 reads the block's input x")
    assert conv1 is not None
    conv2 = next(c for c in k3 if c is not conv1)
    bn1 = _norm_after(check, label, norms, conv1, "conv1")
    h = torch.relu(bn1.output)
    if not close(conv2.input, h):
        if close(conv2.input, bn1.output):
            check.fail(P_MIDDLE, f"{label}: conv2 reads h = relu(bn1(conv1(x)))",
                       "conv2 reads bn1's output directly",
                       "the middle ReLU is missing: h = relu(bn1(conv1(x))), then conv2(h)")
        check.fail(P_MIDDLE, f"{label}: conv2 reads h = relu(bn1(conv1(x)))",
                   "conv2 reads something else", "conv2 reads relu(bn1(conv1(x)))")
    check.ok(P_MIDDLE)
    shortcuts = _shortcuts(check, case, x, k1, norms, exclude=(bn1,))
    bn2 = first_close(norms, conv2.output, exclude=(bn1,))
    if bn2 is None:
        if any(first_close(norms, conv2.output + s) for s in shortcuts
               if s.shape == conv2.output.shape):
            check.fail(P_BN_ADD, f"{label}: bn2 normalises conv2's output, then the shortcut "
                       "is added", "the BatchNorm reads conv2(h) + shortcut(x)",
                       "bn2 comes after the addition: normalise the branch alone, then add the "
                       "shortcut, relu(bn2(conv2(h)) + shortcut(x))")
    bn2 = _norm_after(check, label, norms, conv2, "conv2", exclude=(bn1,))
    check.ok(P_ORDER)
    check.ok(P_BN_ADD)
    check.ok(P_PROJ)
    _check_output(check, case, out, bn2.output, h, shortcuts)


def _check_types(check: Checker, case: Case, trace: LayerTrace, k3: list[Call],
                 k1: list[Call], norms: list[Call]) -> None:
    cfg, label = case[0], block_label(case)
    used = "; ".join(c.describe() for c in trace.calls) or "no convolution or BatchNorm"
    expected = (f"{label}: two 3x3 convolutions, a BatchNorm after each"
                + (", and a 1x1 projection (optional BatchNorm)" if reshapes(cfg) else ""))
    other = [c for c in trace.convs() if c.kernel not in ((3, 3), (1, 1))]
    if other:
        check.fail(P_TYPES, expected, used, f"the block uses {other[0].describe()}: the "
                   "branch's convolutions are 3x3 (padding 1), the projection 1x1")
    if len(k3) == 3 and reshapes(cfg) and not k1:
        check.fail(P_TYPES, expected, used, "a 3x3 projection: the projection shortcut is a "
                   "1x1 convolution (kernel_size=1, stride=stride), then BatchNorm")
    if len(k3) != 2:
        check.fail(P_TYPES, expected, used, "the branch has exactly two 3x3 convolutions "
                   "(use nn.Conv2d or F.conv2d)")
    if len(k1) > (1 if reshapes(cfg) else 0):
        check.fail(P_TYPES, expected, used, "only the projection is a 1x1 convolution, and only "
                   "where the shape changes")
    if len(norms) < 2:
        check.fail(P_TYPES, expected, used, "a BatchNorm is missing: each 3x3 convolution is "
                   "followed by a BatchNorm (nn.BatchNorm2d(out_channels))")
    if len(norms) > 2 + len(k1):
        check.fail(P_TYPES, expected, used, "an extra BatchNorm: one after each convolution, "
                   "none on x or on the sum")
    check.ok(P_TYPES)


def _norm_after(check: Checker, label: str, norms: list[Call], conv: Call, name: str,
                exclude: tuple[Call, ...] = ()) -> Call:
    bn = first_close(norms, conv.output, exclude=exclude)
    if bn is not None:
        return bn
    expected = f"{label}: a BatchNorm reads {name}'s output"
    if first_close(norms, torch.relu(conv.output), exclude=exclude) is not None:
        check.fail(P_ORDER, expected, f"a BatchNorm reads relu({name}(...))",
                   "conv -> ReLU -> BN: the ReLU comes after the BatchNorm, "
                   "relu(bn(conv(...)))")
    check.fail(P_ORDER, expected, f"no BatchNorm reads {name}'s output",
               "each 3x3 convolution is followed directly by its BatchNorm")
    raise AssertionError("unreachable")  # pragma: no cover


def _shortcuts(check: Checker, case: Case, x: torch.Tensor, k1: list[Call],
               norms: list[Call], exclude: tuple[Call, ...]) -> list[torch.Tensor]:
    """What the shortcut may be: x, the recorded projection, or option A."""
    cfg, label = case[0], block_label(case)
    if not reshapes(cfg):
        return [x]
    if not k1:
        return _option_a(x, cfg)
    proj = k1[0]
    if not close(proj.input, x):
        check.fail(P_PROJ, f"{label}: the projection's 1x1 conv reads x",
                   "it reads something else", "the projection reads the block's input x")
    pn = first_close(norms, proj.output, exclude=exclude)
    if pn is not None:
        return [pn.output]
    if first_close(norms, torch.relu(proj.output), exclude=exclude) is not None:
        check.fail(P_PROJ, f"{label}: the projection is conv -> BatchNorm",
                   "a ReLU sits between the projection's conv and its BatchNorm",
                   "ReLU inside the projection shortcut: the projection is a 1x1 conv then "
                   "BatchNorm, with no ReLU")
    return [proj.output]


def _check_output(check: Checker, case: Case, out: torch.Tensor, b2: torch.Tensor,
                  h: torch.Tensor, shortcuts: list[torch.Tensor]) -> None:
    cfg, label = case[0], block_label(case)
    if any(close(out, torch.relu(b2 + s)) for s in shortcuts):
        for prop in (P_SC_RELU, P_ADD, P_FINAL, P_SKIP, P_CARRIES, P_NO_RELU, P_FORMULA):
            check.ok(prop)
        return
    expected = f"{label} returns relu(bn2(conv2(h)) + shortcut(x))"
    projection = reshapes(cfg)
    diagnoses = [
        (lambda s: torch.relu(b2) + s, P_ADD, "it returns relu(bn2(conv2(h))) + shortcut(x)",
         "apply the final ReLU after adding the shortcut, not to the branch alone: "
         "relu(bn2(conv2(h)) + shortcut(x))"),
        (lambda s: b2 + s, P_FINAL, "it returns bn2(conv2(h)) + shortcut(x), with negative "
         "entries", "apply a ReLU to the sum: return relu(branch(x) + shortcut(x))"),
        (lambda s: torch.relu(torch.relu(b2) + s), P_NO_RELU,
         "it returns relu(relu(bn2(conv2(h))) + shortcut(x))",
         "the branch ends with BatchNorm, no ReLU: relu(bn2(conv2(h)) + x)"),
        (lambda s: torch.relu(b2 + torch.relu(s)), P_SC_RELU,
         "it returns relu(bn2(conv2(h)) + relu(shortcut(x)))",
         "a ReLU inside the projection shortcut (or on it): the projection is conv -> "
         "BatchNorm and is added as it is" if projection else
         "a ReLU on the shortcut before the sum: add x itself, relu(bn2(conv2(h)) + x)"),
    ]
    for make, prop, measured, hint in diagnoses:
        if any(close(out, make(s)) for s in shortcuts):
            check.fail(prop, expected, measured, hint)
    if close(out, torch.relu(b2)):
        check.fail(P_SKIP, expected, "it returns relu(bn2(conv2(h))): no shortcut is added",
                   "add the shortcut: relu(branch(x) + x); without it this is a plain block"
                   if not projection else
                   "the shape-changing block needs a shortcut too: a projection of x (1x1 "
                   "conv with the stride, + BatchNorm) added before the final ReLU")
    if close(out, torch.relu(b2 + h)):
        check.fail(P_CARRIES, expected, "it adds h = relu(bn1(conv1(x))) instead of x",
                   "add the block's input x itself (kept before conv1), not an intermediate "
                   "result, and leave it unchanged")
    implied = out - b2
    check.fail(P_CARRIES if not projection else P_FORMULA, expected,
               f"out - bn2(conv2(h)) differs from every expected shortcut (by up to "
               f"{min(float((implied - s).abs().max()) for s in shortcuts):.3g})"
               if shortcuts else "no parameter-free shortcut matches",
               "add x itself where the shapes agree, its projection (1x1 conv with the "
               "stride, then BatchNorm) where they do not, before the final ReLU")
