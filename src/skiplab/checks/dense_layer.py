"""Checker for the DenseNet exercise: a dense layer, x' = concat([x, conv(relu(bn(x)))], dim=1);
(B, C, H, W) -> (B, C + k, H, W), the first C channels being x itself.

As for the basic block, the formula is rebuilt from the student's own layers (every
convolution and BatchNorm the forward pass calls, see :mod:`~skiplab.checks.tracing`):
the k new channels are the output of a 3x3 convolution that reads relu(bn(.)) of x, or of
an optional 1x1 bottleneck (BN -> ReLU -> 1x1 conv) that reads x. Autograd's gradient must
be the true slope, so a detached copy of x in the concatenation fails.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .core import (Checker, PropertyChecker, close, eval_twin, gradients_reach, guarded,
                   materialise, same_tensor, shape_mismatch)
from .tracing import Call, LayerTrace, first_close, random_slope, slope_ok

__all__ = ["check_dense_layer"]

LayerFactory = Callable[[int, int], nn.Module]
"""``layer_cls(in_channels, growth_rate)``."""

Case = tuple[tuple[int, int], tuple[int, int]]   # ((C, k), (H, W))

_CASES: tuple[Case, ...] = (((4, 4), (5, 6)), ((6, 3), (5, 6)), ((3, 5), (7, 4)))
_HIDDEN_CASES: tuple[Case, ...] = (((5, 3), (7, 7)), ((8, 2), (6, 9)), ((2, 6), (4, 4)))
_BATCH = 2

P_TYPES = "layer types: BatchNorm, 3x3 conv (optional 1x1 bottleneck)"
P_ORDER = "BN-ReLU-conv order"
P_GRAD = "gradient flows through x and the new features"


def _label(case: Case) -> str:
    (c, k), (h, w) = case
    return f"layer_cls({c}, {k}) on (2, {c}, {h}, {w})"


@guarded("dense layer")
def check_dense_layer(layer_cls: LayerFactory, *, hidden: bool = False) -> str:
    """Check a DenseNet layer: x' = torch.cat([x, conv(relu(bn(x)))], dim=1).

    ``layer_cls(in_channels, growth_rate)`` must build a module mapping (B, C, H, W) ->
    (B, C + k, H, W) in the input's dtype, whose first C channels are x, exactly, and whose
    k new channels come from x by BN -> ReLU -> 3x3 conv (padding 1), optionally preceded
    by a bottleneck BN -> ReLU -> 1x1 conv. Tried for (C, k) = (4, 4), (6, 3), (3, 5) on
    inputs of two sizes; ``hidden=True`` adds three more.

    Properties: construction; then case by case, C == k first so that a wrong axis or an
    addition shows as a wrong shape, which is diagnosed: forward runs (crashes at torch.cat
    are read: missing padding, the wrong axis, adding); input left unchanged; output dtype;
    output keeps B, H, W; adds k channels; then first C channels are the input, exactly;
    each new channel depends on the input; gradients reach every parameter; in eval mode
    with random BatchNorm statistics, on the recorded layers: layer types (a BatchNorm
    before each convolution, the last one 3x3 with k outputs); BN-ReLU-conv order (each
    conv reads relu(bn(.)), the new channels are the last conv's output, the first
    BatchNorm reads x); autograd's gradient with respect to x equals the true slope.

    Returns the report; raises :class:`CheckFailed` naming the first property that fails.
    """
    check = PropertyChecker("dense layer")
    cases = _CASES + (_HIDDEN_CASES if hidden else ())
    layers = {case: _make(check, layer_cls, case) for case in cases}
    check.ok("construction")
    xs = {case: torch.randn(_BATCH, case[0][0], *case[1]) for case in cases}
    outs: dict[Case, torch.Tensor] = {}
    for case, layer in layers.items():
        outs[case] = _forward(check, layer_cls, layer, xs[case], case)
    for prop in ("forward runs", "input left unchanged", "output dtype", "output shape",
                 "adds k new channels"):
        check.ok(prop)
    for case, out in outs.items():
        _check_input_kept(check, case, out, xs[case])
    check.ok("first C channels are the input")
    for case, layer in layers.items():
        _check_gradients(check, case, layer, xs[case])
    check.ok("new channels depend on the input")
    check.ok("gradients reach every parameter")
    twins = {case: eval_twin(layer) for case, layer in layers.items()}
    for case in cases:
        _check_formula(check, case, twins[case], xs[case])
    for case in cases:
        _check_slope(check, case, twins[case], xs[case])
    return check.report()


def _make(check: Checker, layer_cls: LayerFactory, case: Case) -> nn.Module:
    expected = f"layer_cls{case[0]} builds an nn.Module"
    layer = check.run("construction", lambda: layer_cls(*case[0]), expected,
                      "the class must take (in_channels, growth_rate), in that order")
    if not isinstance(layer, nn.Module):
        check.fail("construction", expected, f"got {type(layer).__name__}",
                   "subclass nn.Module and call super().__init__() first")
    x = torch.randn(_BATCH, case[0][0], *case[1])
    check.run("forward runs", lambda: materialise(layer, x), f"{_label(case)} runs",
              lambda e: _crash_hint(e, LayerTrace()))
    return layer.train()


def _crash_hint(error: BaseException, trace: LayerTrace) -> str:
    kind = shape_mismatch(error)
    text = str(error)
    if kind is not None and kind[0] == "cat":
        if kind[1] in (1, -3):
            if any(c.padding == (0, 0) for c in trace.convs((3, 3))):
                return ("the new features are smaller than x: a 3x3 convolution without "
                        "padding shrinks the map by 2 pixels each way; give it padding=1")
            return ("x and the new features differ in H x W, so torch.cat on the channels "
                    "cannot join them: keep the size (3x3 conv with padding=1, no stride)")
        axis = "the batch axis (dim 0)" if kind[1] == 0 else f"a spatial axis (dim {kind[1]})"
        return f"torch.cat joined on {axis}: join on the channels, torch.cat([x, new], dim=1)"
    if kind is not None and kind[0] == "add":
        return ("x + new needs equal channel counts, and a dense layer does not add: it "
                "concatenates, torch.cat([x, new], dim=1)")
    if ("channels" in text and "expected input" in text) or "running_mean" in text:
        return ("a layer got the wrong channel count: the first BatchNorm and conv read "
                "in_channels, the last conv outputs growth_rate (a 1x1 bottleneck outputs 4k, "
                "read by the 3x3 conv)")
    return "the forward pass crashed: run the layer on a random input and read the traceback"


def _forward(check: Checker, layer_cls: LayerFactory, layer: nn.Module, x: torch.Tensor,
             case: Case) -> torch.Tensor:
    given = x.clone()
    trace = LayerTrace()
    expected = f"{_label(case)} runs without error"

    def run() -> object:
        with trace:
            return layer(given)

    out = check.run("forward runs", run, expected, lambda e: _crash_hint(e, trace))
    out = check.tensor("forward runs", out, expected, like=x).detach()
    if not same_tensor(given, x):
        check.fail("input left unchanged", "x is the same after the call",
                   "x was modified in place",
                   "an in-place operation (ReLU(inplace=True) or += on x) overwrote the "
                   "input; the layer must pass x on unchanged")
    _dense_shape(check, layer_cls, case, x, out)
    return out


def _dense_shape(check: Checker, layer_cls: LayerFactory, case: Case, x: torch.Tensor,
                 out: torch.Tensor) -> None:
    """Fail 'output shape' (B, H, W kept) or 'adds k new channels' (C + k), with a diagnosis."""
    c, k = case[0]
    batch, _, height, width = x.shape
    want = (batch, c + k, height, width)
    got = tuple(out.shape)
    if len(got) != 4 or got[0] != batch or got[2:] != (height, width):
        if len(got) == 4 and got[0] == 2 * batch:
            hint = "concatenated on the batch axis (dim 0): use torch.cat([x, new], dim=1)"
        elif len(got) == 4 and (got[2] == 2 * height or got[3] == 2 * width):
            hint = "concatenated on a spatial axis: use torch.cat([x, new], dim=1)"
        elif len(got) == 4:
            hint = "the 3x3 convolution needs padding=1 so the new features keep H x W"
        else:
            hint = "keep the (B, C, H, W) layout"
        check.fail("output shape", f"{_label(case)}: {want}", f"{got}", hint)
    n = got[1]
    if n == c + k:
        return
    if n == c:
        hint = _probe_same_channels(layer_cls, case[0], x)
    elif n == k:
        hint = "only the new features are returned: return torch.cat([x, new], dim=1)"
    elif n == c + 2 * k:
        hint = ("it adds 2k channels: the last conv outputs growth_rate channels, and only "
                "x and that conv's output are concatenated")
    elif n == 2 * c + k:
        hint = "x appears twice: concatenate x and the new features once each"
    elif n == c + 4 * k:
        hint = ("the 4k-channel bottleneck output was concatenated: append the 3x3 conv's "
                "k channels")
    else:
        hint = "the last conv must output growth_rate channels, appended to x"
    check.fail("adds k new channels", f"{_label(case)}: {c} + {k} = {c + k} channels",
               f"{n} channels", hint)


def _probe_same_channels(layer_cls: LayerFactory, cfg: tuple[int, int], x: torch.Tensor) -> str:
    """The output has C channels: zero every conv so the new features are 0, then tell
    "x + new" (returns x) from "new only" (returns 0)."""
    try:
        layer = layer_cls(*cfg)
        materialise(layer, x)
        with torch.no_grad():
            for m in layer.modules():
                if isinstance(m, nn.Conv2d):
                    m.weight.zero_()
                    if m.bias is not None:
                        m.bias.zero_()
            out = layer(x.clone())
    except Exception:  # noqa: BLE001 - only a diagnosis; the generic hint will do
        out = None
    if close(out, x, rtol=1e-6):
        return ("the new features were added to x: a dense layer concatenates them, "
                "torch.cat([x, new], dim=1)")
    if isinstance(out, torch.Tensor) and not torch.any(out != 0):
        return "only the new features are returned: return torch.cat([x, new], dim=1)"
    return "the output has C channels: append k new channels to x with torch.cat(dim=1)"


def _check_input_kept(check: Checker, case: Case, out: torch.Tensor, x: torch.Tensor) -> None:
    c, k = case[0]
    if same_tensor(out[:, :c], x):
        return
    if same_tensor(out[:, k:], x):
        hint = "the new features come first: torch.cat([x, new], dim=1) keeps x in front"
    elif close(out[:, :c], x):
        hint = "x is almost but not exactly there: concatenate x itself, unmodified"
    elif out[:, :c].min() >= 0:
        hint = ("the first channels look normalised and rectified: concatenate x itself, "
                "not relu(bn(x))")
    else:
        hint = "concatenate x itself, first: torch.cat([x, new], dim=1)"
    diff = (out[:, :c].double() - x.double()).abs().max().item()
    check.fail("first C channels are the input", f"{_label(case)}: out[:, :{c}] == x",
               f"they differ by up to {diff:.3g}", hint)


def _check_gradients(check: Checker, case: Case, layer: nn.Module, x: torch.Tensor) -> None:
    c, k = case[0]
    x = x.clone().requires_grad_(True)
    out = layer(x)
    dead = []
    for j in range(k):
        channel = out[:, c + j]
        grad = None
        if channel.requires_grad:
            (grad,) = torch.autograd.grad((channel * torch.randn(channel.shape)).sum(), x,
                                          retain_graph=True, allow_unused=True)
        if grad is None or not torch.any(grad != 0):
            dead.append(c + j)
    if dead:
        check.fail("new channels depend on the input",
                   f"{_label(case)}: each of the {k} new channels is computed from x",
                   f"channels {dead} get no gradient from x",
                   "compute the new features from x (BN -> ReLU -> conv); do not detach x")
    missing = gradients_reach(layer, out)
    if missing:
        check.fail("gradients reach every parameter",
                   f"{_label(case)}: a non-zero gradient for every parameter",
                   f"no gradient for {', '.join(missing[:4])}",
                   "a layer built in __init__ is never used in forward (or its output is "
                   "thrown away)")


def _check_formula(check: Checker, case: Case, twin: nn.Module, x: torch.Tensor) -> None:
    (c, k), label = case[0], _label(case)
    trace = LayerTrace()
    with torch.no_grad(), trace:
        out = twin(x.clone())
    new = out[:, c:]
    convs, norms = trace.convs(), trace.norms()
    used = "; ".join(call.describe() for call in trace.calls) or "no convolution or BatchNorm"
    expected = (f"{label}: BatchNorm -> ReLU -> 3x3 conv to {k} channels (optionally after "
                "BatchNorm -> ReLU -> 1x1 conv)")
    last = next((call for call in reversed(convs) if call.channels[1] == k), None)
    if last is None or last.kernel != (3, 3):
        hint = ("the new features come from a 3x3 convolution (padding 1), as the exercise "
                "asks" + (f"; here a {'x'.join(map(str, last.kernel))} convolution makes them"
                          if last is not None else "; use nn.Conv2d or F.conv2d"))
        check.fail(P_TYPES, expected, used, hint)
    assert last is not None
    if len(convs) > 2 or (len(convs) == 2 and convs[0].kernel != (1, 1)):
        check.fail(P_TYPES, expected, used, "at most a 1x1 bottleneck, then the 3x3 conv")
    if len(norms) < len(convs):
        check.fail(P_TYPES, expected, used, "no BatchNorm before a convolution: each conv "
                   "reads relu(bn(.)), with nn.BatchNorm2d of the channels it reads")
    if len(norms) > len(convs):
        check.fail(P_TYPES, expected, used, "an extra BatchNorm: exactly one BatchNorm, then "
                   "ReLU, before each convolution")
    check.ok(P_TYPES)
    if not close(new, last.output):
        if any(close(new, torch.relu(n.output)) or close(new, n.output) for n in norms):
            check.fail(P_ORDER, f"{label}: the new channels are the last convolution's output",
                       "they pass through a BatchNorm (and ReLU) after the convolution",
                       "DenseNet's layer is BN -> ReLU -> conv (pre-activation): the "
                       "convolution comes last")
        check.fail(P_ORDER, f"{label}: the new channels are the last convolution's output",
                   "they are something else", "return torch.cat([x, conv(relu(bn(x)))], 1)")
    source, name = x, "x"
    for conv in convs:
        _check_link(check, label, conv, norms, source, name)
        source, name = conv.output, "the bottleneck's output"
    check.ok(P_ORDER)


def _check_link(check: Checker, label: str, conv: Call, norms: list[Call],
                source: torch.Tensor, name: str) -> None:
    """conv reads relu(bn(source)), for a recorded BatchNorm bn."""
    expected = f"{label}: the {conv.describe()} reads relu(bn({name}))"
    bn = first_close(norms, source)
    if bn is None:
        if close(conv.input, source):
            check.fail(P_ORDER, expected, "it reads its input directly",
                       "BN -> ReLU -> conv: normalise and rectify before the convolution")
        check.fail(P_ORDER, expected, f"no BatchNorm reads {name}",
                   f"the BatchNorm before this convolution reads {name} (BN -> ReLU -> conv)")
    assert bn is not None
    if close(conv.input, torch.relu(bn.output)):
        return
    if close(conv.input, bn.output):
        check.fail(P_ORDER, expected, "it reads bn(x), with no ReLU in between",
                   "the ReLU is missing: BN -> ReLU -> conv, conv(relu(bn(x)))")
    check.fail(P_ORDER, expected, "it reads something else", "conv(relu(bn(x)))")


def _check_slope(check: Checker, case: Case, twin: nn.Module, x: torch.Tensor) -> None:
    c = case[0][0]
    slope = random_slope(twin, x)
    if slope.ok:
        check.ok(P_GRAD)
        return
    expected = (f"{_label(case)}: autograd's gradient with respect to x equals the layer's "
                "slope (finite difference)")
    measured = f"autograd {slope.auto:.4g}, true slope {slope.true:.4g}"
    through_copy = float((slope.weight[:, :c] * slope.direction).sum())
    if slope_ok(slope.auto, slope.true - through_copy, slope.tol, abs(slope.true)):
        check.fail(P_GRAD, expected, measured + " (the part through the copy of x is missing)",
                   "the input's copy in the output carries no gradient: concatenate x itself, "
                   "torch.cat([x, new], dim=1), not x.detach() or x.data")
    check.fail(P_GRAD, expected, measured, "a path is cut from the gradient (.detach(), .data "
               "or torch.no_grad() in forward)")
