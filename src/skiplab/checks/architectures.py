"""Checkers for the three architecture exercises: the skip of each family, written by hand.

- :func:`check_basic_block`: a ResNet basic block, x' = relu(bn2(conv2(h)) + shortcut(x))
  with h = relu(bn1(conv1(x))); (B, C_in, H, W) -> (B, C_out, H / stride, W / stride).
- :func:`check_dense_layer`: a DenseNet layer, x' = concat([x, conv(relu(bn(x)))], dim=1);
  (B, C, H, W) -> (B, C + k, H, W), the first C channels being x itself.
- :func:`check_crop_and_concat`: the valid U-Net's long skip, the encoder map centre-cropped
  to the decoder map's size and concatenated with it on the channel axis;
  (B, C1, H1, W1), (B, C2, H2, W2) -> (B, C1 + C2, H2, W2).

Each returns a short report, or raises :class:`~skiplab.checks.core.CheckFailed` on the
first property that fails; a crash inside the student's code is reported the same way,
with a hint read from the error. Every checker runs on tiny CPU tensors under a fixed seed
(the global random state is restored afterwards), so the same code gets the same message.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.overrides import TorchFunctionMode

from .core import CheckFailed, Checker, count_parameters, gradients_reach

__all__ = ["check_basic_block", "check_crop_and_concat", "check_dense_layer"]

BlockFactory = Callable[[int, int, int], nn.Module]
"""``block_cls(in_channels, out_channels, stride)``: a class or any callable making a module."""
LayerFactory = Callable[[int, int], nn.Module]
"""``layer_cls(in_channels, growth_rate)``."""
CropConcat = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``fn(encoder_map, decoder_map)``."""


# ---------------------------------------------------------------------------------------------
# shared helpers


def _say(error: BaseException) -> str:
    """The exception as one short line: 'RuntimeError: The size of tensor a ...'."""
    lines = str(error).strip().splitlines()
    first = lines[0] if lines else ""
    return f"{type(error).__name__}: {first[:180]}"


def _attempt(check: Checker, prop: str, fn: Callable[[], object], expected: str,
             hint: Callable[[BaseException], str]) -> object:
    """Like :meth:`Checker.run`, but the hint is chosen from the error raised."""
    try:
        return fn()
    except CheckFailed:
        raise
    except Exception as error:  # noqa: BLE001 - any crash in student code is reported
        check.fail(prop, expected, _say(error), hint(error))
        raise  # unreachable: fail raises


def _tensor(check: Checker, prop: str, value: object, expected: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        check.fail(prop, expected, f"returned {type(value).__name__}, not a tensor",
                   "return the result tensor (did forward miss a `return`?)")
    assert isinstance(value, torch.Tensor)
    return value


def _mismatch(error: BaseException) -> tuple[str, int] | None:
    """('add', dim) for a failed elementwise op, ('cat', dim) for torch.cat, else None."""
    text = str(error)
    found = re.search(r"must match the size of tensor b .* at non-singleton dimension (\d+)",
                      text)
    if found:
        return "add", int(found.group(1))
    found = re.search(r"Sizes of tensors must match except in dimension (-?\d+)", text)
    if found:
        return "cat", int(found.group(1))
    return None


class _FailingOperands(TorchFunctionMode):
    """Records the shapes of the tensors given to the last torch operation that raised, so
    that a crash at ``branch + shortcut`` can say which operand had which shape."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[int, ...]] | None = None

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        try:
            return func(*args, **(kwargs or {}))
        except Exception:
            self.shapes = [tuple(a.shape) for a in args if isinstance(a, torch.Tensor)]
            raise


def _norms(module: nn.Module) -> list[_BatchNorm]:
    return [m for m in module.modules() if isinstance(m, _BatchNorm)]


def _wake_zero_norms(module: nn.Module) -> None:
    """Set to 1 every BatchNorm weight that starts at 0 (a valid "zero-init last BN"), so that
    gradients and the branch's output can be measured."""
    with torch.no_grad():
        for bn in _norms(module):
            if bn.weight is not None and not torch.any(bn.weight != 0):
                bn.weight.fill_(1.0)


def _fresh_stats_eval(module: nn.Module) -> None:
    """Eval mode with running mean 0 and variance 1: every BatchNorm is then affine only."""
    module.eval()
    for bn in _norms(module):
        if bn.running_mean is not None and bn.running_var is not None:
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0)


def _seeded(fn: Callable[[], str]) -> str:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return fn()


# ---------------------------------------------------------------------------------------------
# ResNet basic block

_BLOCK_CONFIGS: tuple[tuple[int, int, int], ...] = ((8, 8, 1), (8, 16, 2), (4, 12, 1), (6, 6, 2))
_BLOCK_INPUT = (2, 6, 8)   # batch, height, width (H != W, so a swap shows)


def _block_label(cfg: tuple[int, int, int]) -> str:
    return "block_cls({}, {}, {})".format(*cfg)


def _block_crash_hint(cfg: tuple[int, int, int], error: BaseException,
                      operands: list[tuple[int, ...]] | None = None) -> str:
    """A hint for a crash in block_cls(*cfg); ``operands``: shapes given to the failing op."""
    c_in, c_out, stride = cfg
    kind = _mismatch(error)
    text = str(error)
    if kind is not None and kind[0] == "add":
        batch, height, width = _BLOCK_INPUT
        branch = (batch, c_out, (height - 1) // stride + 1, (width - 1) // stride + 1)
        others = [s for s in operands or [] if s != branch]
        if operands and branch in operands and len(others) == 1 and len(others[0]) == 4:
            got = others[0]
            if got == (batch, c_in, height, width):
                return (f"the branch gives {branch} but the shortcut passes x on unchanged, "
                        f"{got}: where the shape changes, use a projection (1x1 conv, "
                        f"stride={stride}, then BatchNorm)")
            if got[1] == c_out:
                return (f"the shortcut gives {got}, the branch {branch}: give the "
                        f"projection's 1x1 conv stride={stride}, like the branch")
            if got[2:] == branch[2:]:
                return (f"the shortcut gives {got}, the branch {branch}: the projection must "
                        f"map {c_in} channels to {c_out}")
        changes = []
        if c_in != c_out:
            changes.append(f"channels {c_in} -> {c_out}")
        if stride != 1:
            changes.append(f"stride {stride}")
        if changes:
            return (f"branch and shortcut differ in shape at the addition; this block changes "
                    f"{' and '.join(changes)}, so the shortcut must too: use a projection "
                    f"(1x1 conv with stride={stride}, then BatchNorm)")
        return ("branch and shortcut differ in shape at the addition: the 3x3 convolutions "
                "need padding=1, and only one of them the stride")
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


def _run_block(check: Checker, block: nn.Module, x: torch.Tensor,
               cfg: tuple[int, int, int]) -> torch.Tensor:
    """block(x), a crash becoming a failed 'forward runs' with a hint read from it."""
    expected = f"{_block_label(cfg)} maps {tuple(x.shape)} without error"
    recorder = _FailingOperands()

    def forward() -> object:
        with recorder:
            return block(x)

    out = _attempt(check, "forward runs", forward, expected,
                   lambda e: _block_crash_hint(cfg, e, recorder.shapes))
    return _tensor(check, "forward runs", out, expected)


def _branch_last_norms(block: nn.Module, x: torch.Tensor) -> list[nn.Module]:
    """The BatchNorm(s) fed by a 3x3 convolution that does not read the block's input: the
    branch's last BatchNorm (conv2 reads relu(bn1(conv1(x))); conv1 and the projection read x).

    Found by tracing one forward pass with hooks, so it works whatever the attribute names
    and the order in which the student registers or calls the layers.
    """
    records: list[tuple[nn.Module, object, torch.Tensor]] = []

    def hook(module: nn.Module, inputs: tuple[object, ...], output: torch.Tensor) -> None:
        records.append((module, inputs[0] if inputs else None, output))

    handles = [m.register_forward_hook(hook) for m in block.modules()
               if isinstance(m, (nn.Conv2d, _BatchNorm))]
    try:
        with torch.no_grad():
            block(x)
    finally:
        for handle in handles:
            handle.remove()
    inner = [out for m, inp, out in records if isinstance(m, nn.Conv2d)
             and tuple(m.kernel_size) != (1, 1) and inp is not x]
    return [m for m, inp, _ in records
            if isinstance(m, _BatchNorm) and any(inp is out for out in inner)]


def check_basic_block(block_cls: BlockFactory) -> str:
    """Check a ResNet basic block: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)).

    ``block_cls(in_channels, out_channels, stride)`` must build a module mapping
    (B, C_in, H, W) -> (B, C_out, H / stride, W / stride). Tried for (in, out, stride) in
    (8, 8, 1), (8, 16, 2), (4, 12, 1), (6, 6, 2) on inputs of shape (2, C_in, 6, 8).

    Properties, in order: construction; forward runs (a crash at the addition is read as a
    missing or wrong shortcut); output shape; parameter-free shortcut when the shapes agree
    (the block has exactly two 3x3 convolutions and two BatchNorms' parameters, with or
    without conv biases); with the branch switched off (its last BatchNorm's weight and
    bias set to 0, eval mode, running mean 0 and variance 1) the output is not all zero (a
    skip exists) and is relu(x) where the shapes agree (addition before the final ReLU; the
    shortcut carries x itself) or non-negative where the shortcut projects; gradients reach
    every parameter and the input; output non-negative; no ReLU between the branch's last
    BatchNorm and the addition (where the shapes agree, out < x somewhere out > 0).

    The branch's last BatchNorm is found by tracing a forward pass (the BatchNorm fed by a
    3x3 nn.Conv2d that does not read x), whatever the attribute names; if none is found
    (functional layers) the switch-off test is skipped for that config and the report says
    so.

    Accepted variants: conv bias or not, stride on either 3x3 conv, the identity shortcut
    as nn.Identity / a lambda / ``x`` itself, a projection with or without BatchNorm, or
    parameter-free (option A). A zero-initialised last BatchNorm is set to 1 before testing.

    Returns the report; raises :class:`CheckFailed` naming the first property that fails.
    """
    return _seeded(lambda: _check_basic_block(block_cls))


def _check_basic_block(block_cls: BlockFactory) -> str:
    check = Checker("basic block")
    batch, height, width = _BLOCK_INPUT

    def make(cfg: tuple[int, int, int]) -> nn.Module:
        prop = "construction"
        expected = f"{_block_label(cfg)} builds an nn.Module"
        block = _attempt(check, prop, lambda: block_cls(*cfg), expected, lambda e: (
            "the class must take (in_channels, out_channels, stride), in that order"))
        if not isinstance(block, nn.Module):
            check.fail(prop, expected, f"got {type(block).__name__}",
                       "subclass nn.Module and call super().__init__() first")
        assert isinstance(block, nn.Module)
        _wake_zero_norms(block)
        return block

    blocks = {cfg: make(cfg) for cfg in _BLOCK_CONFIGS}
    check.ok("construction")
    xs = {cfg: torch.randn(batch, cfg[0], height, width) for cfg in _BLOCK_CONFIGS}

    # forward (train mode), keeping the graph for the gradient check
    outs: dict[tuple[int, int, int], tuple[torch.Tensor, torch.Tensor]] = {}
    for cfg, block in blocks.items():
        block.train()
        x = xs[cfg].clone().requires_grad_(True)
        outs[cfg] = (x, _run_block(check, block, x, cfg))
    check.ok("forward runs")

    for cfg, (x, out) in outs.items():
        c_in, c_out, stride = cfg
        want = (batch, c_out, (height - 1) // stride + 1, (width - 1) // stride + 1)
        got = tuple(out.shape)
        if got != want:
            if len(got) == 4 and got[2:] == (height, width) and stride != 1:
                hint = (f"the output keeps H x W: put stride={stride} on a 3x3 convolution "
                        "(and on the projection)")
            elif len(got) == 4 and got[1] != c_out:
                hint = "the second conv and BatchNorm must produce out_channels"
            elif len(got) == 4 and (got[2] < want[2] or got[3] < want[3]):
                hint = "the 3x3 convolutions need padding=1 to keep the size"
            else:
                hint = "(B, C_in, H, W) must become (B, C_out, H / stride, W / stride)"
            check.fail("output shape", f"{_block_label(cfg)}: {want}", f"{got}", hint)
    check.ok("output shape")

    for cfg, block in blocks.items():
        c_in, c_out, stride = cfg
        if c_in != c_out or stride != 1:
            continue
        c = c_in
        base = 2 * 9 * c * c + 2 * 2 * c           # two 3x3 convs, two BatchNorms
        allowed = (base, base + c, base + 2 * c)    # plus a bias on one or both convs
        n = count_parameters(block)
        if n not in allowed:
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
            check.fail("parameter-free identity shortcut",
                       f"{_block_label(cfg)} has {base} parameters (two 3x3 convs {c}->{c} "
                       f"and two BatchNorms; +{c} per conv bias)", f"{n} parameters", hint)
    check.ok("parameter-free identity shortcut")

    # switch the branch off: its last BatchNorm outputs 0, so the block is relu(shortcut(x))
    unchecked = []
    for cfg in _BLOCK_CONFIGS:
        c_in, c_out, stride = cfg
        identity = c_in == c_out and stride == 1
        block = make(cfg)
        x = xs[cfg].clone()
        _fresh_stats_eval(block)
        expected = f"{_block_label(cfg)} maps {tuple(x.shape)} without error"
        off = _attempt(check, "forward runs", lambda b=block, x=x: _branch_last_norms(b, x),
                       expected, lambda e, cfg=cfg: _block_crash_hint(cfg, e))
        assert isinstance(off, list)
        if not off and identity:
            off = _norms(block)   # the shortcut has no parameters: zero every BatchNorm
        if not off:
            unchecked.append(cfg)
            continue
        with torch.no_grad():
            for bn in off:
                if getattr(bn, "weight", None) is not None:
                    bn.weight.zero_()
                if getattr(bn, "bias", None) is not None:
                    bn.bias.zero_()
            y = _run_block(check, block, x, cfg)
        measured_off = "with the branch switched off (last BatchNorm weight and bias 0)"
        if not torch.any(y != 0):
            hint = ("add the shortcut: relu(branch(x) + x); without it this is a plain block"
                    if identity else
                    "the shape-changing block needs a shortcut too: a projection of x (1x1 conv "
                    "with the stride, + BatchNorm) added before the final ReLU")
            check.fail("skip connection exists",
                       f"{measured_off}, {_block_label(cfg)} still passes x on",
                       "the output is all zero", hint)
        if y.min() < -1e-6:
            x_on, out_on = outs[cfg]
            if identity and out_on.min() < 0 and (out_on - x_on).min() < -1e-6:
                check.fail("output non-negative (final ReLU)",
                           f"{_block_label(cfg)} ends with a ReLU",
                           f"the output has negative entries (min {out_on.min().item():.2f})",
                           "apply a ReLU to the sum: return relu(branch(x) + shortcut(x))")
            check.fail("addition before the final ReLU",
                       f"{measured_off}, {_block_label(cfg)} returns relu(shortcut(x))",
                       f"the output has negative entries (min {y.min().item():.2f})",
                       "apply the final ReLU after adding the shortcut, not to the branch "
                       "alone: relu(bn2(conv2(h)) + shortcut(x))")
        if identity and not torch.allclose(y, torch.relu(x), atol=1e-5):
            check.fail("shortcut carries the input",
                       f"{measured_off}, {_block_label(cfg)} returns relu(x)",
                       f"it differs from relu(x) by up to "
                       f"{(y - torch.relu(x)).abs().max().item():.2f}",
                       "add the block's input x itself (kept before conv1), not an "
                       "intermediate result, and leave it unchanged")
    check.ok("skip connection exists")
    check.ok("addition before the final ReLU")
    check.ok("shortcut carries the input")

    for cfg, block in blocks.items():
        x, out = outs[cfg]
        missing = gradients_reach(block, out, (x,))
        if missing:
            if "input" in missing:
                hint = "the input gets no gradient: do not detach x or run under no_grad"
            else:
                hint = ("a layer built in __init__ is never used in forward (or its output is "
                        "thrown away)")
            check.fail("gradients reach every parameter and the input",
                       f"{_block_label(cfg)}: a non-zero gradient everywhere",
                       f"no gradient for {', '.join(missing[:4])}", hint)
    check.ok("gradients reach every parameter and the input")

    for cfg, (x, out) in outs.items():
        if out.min() < 0:
            check.fail("output non-negative (final ReLU)", f"{_block_label(cfg)} ends with a ReLU",
                       f"the output has negative entries (min {out.min().item():.2f})",
                       "apply a ReLU to the sum: return relu(branch(x) + shortcut(x))")
    check.ok("output non-negative (final ReLU)")

    for cfg, (x, out) in outs.items():
        c_in, c_out, stride = cfg
        if c_in != c_out or stride != 1:
            continue
        with torch.no_grad():
            positive = out > 0
            change = (out - x)[positive]
        if change.numel() and change.min() >= -1e-6:
            check.fail("no ReLU before the addition",
                       "the branch (ending with bn2) can lower the input: out < x somewhere",
                       "out >= x wherever out > 0: the branch is rectified",
                       "the branch ends with BatchNorm, no ReLU: relu(bn2(conv2(h)) + x)")
    check.ok("no ReLU before the addition")

    report = check.report()
    if unchecked:
        report += ("\n  note: branch not found by tracing for "
                   + ", ".join(_block_label(c) for c in unchecked)
                   + " (no 3x3 nn.Conv2d followed by a BatchNorm): switch-off test skipped")
    return report


# ---------------------------------------------------------------------------------------------
# DenseNet layer

_DENSE_CONFIGS: tuple[tuple[int, int], ...] = ((4, 4), (6, 3), (3, 5))
_DENSE_INPUT = (2, 5, 6)   # batch, height, width


def _dense_label(cfg: tuple[int, int]) -> str:
    return "layer_cls({}, {})".format(*cfg)


def _dense_crash_hint(error: BaseException) -> str:
    kind = _mismatch(error)
    text = str(error)
    if kind is not None and kind[0] == "cat":
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


def check_dense_layer(layer_cls: LayerFactory) -> str:
    """Check a DenseNet layer: x' = torch.cat([x, conv(relu(bn(x)))], dim=1).

    ``layer_cls(in_channels, growth_rate)`` must build a module mapping (B, C, H, W) ->
    (B, C + k, H, W) whose first C channels are x, exactly, and whose k new channels are
    computed from x by BN -> ReLU -> conv (optionally BN -> ReLU -> 1x1 conv to 4k first).
    Tried for (C, k) in (4, 4), (6, 3), (3, 5) on inputs of shape (2, C, 5, 6).

    Properties: construction; then config by config, C == k first so that a wrong axis or
    an addition shows as a wrong shape, which is diagnosed: forward runs (crashes at
    torch.cat or at an addition are read as the wrong axis or adding instead of
    concatenating); input left unchanged; output keeps B, H, W; adds k channels (C channels
    out: zeroing every conv tells "x + new" from "new only"); then first C channels are the
    input, exactly; each new channel depends on the input; gradients reach every parameter;
    BN-ReLU-conv order (the new features come straight from a convolution, so some are
    negative).

    Returns the report; raises :class:`CheckFailed` naming the first property that fails.
    """
    return _seeded(lambda: _check_dense_layer(layer_cls))


def _check_dense_layer(layer_cls: LayerFactory) -> str:
    check = Checker("dense layer")
    batch, height, width = _DENSE_INPUT

    def make(cfg: tuple[int, int]) -> nn.Module:
        expected = f"{_dense_label(cfg)} builds an nn.Module"
        layer = _attempt(check, "construction", lambda: layer_cls(*cfg), expected, lambda e: (
            "the class must take (in_channels, growth_rate), in that order"))
        if not isinstance(layer, nn.Module):
            check.fail("construction", expected, f"got {type(layer).__name__}",
                       "subclass nn.Module and call super().__init__() first")
        assert isinstance(layer, nn.Module)
        layer.train()
        return layer

    layers = {cfg: make(cfg) for cfg in _DENSE_CONFIGS}
    check.ok("construction")
    xs = {cfg: torch.randn(batch, cfg[0], height, width) for cfg in _DENSE_CONFIGS}

    # config by config: the first one has C == k, where a wrong axis or an addition gives
    # an output of the wrong shape (diagnosed precisely) instead of a crash
    outs: dict[tuple[int, int], torch.Tensor] = {}
    for cfg, layer in layers.items():
        x = xs[cfg].clone()
        expected = f"{_dense_label(cfg)} maps {tuple(x.shape)} without error"
        out = _attempt(check, "forward runs", lambda m=layer, x=x: m(x), expected,
                       _dense_crash_hint)
        out = outs[cfg] = _tensor(check, "forward runs", out, expected).detach()
        if not torch.equal(x, xs[cfg]):
            check.fail("input left unchanged", "x is the same after the call",
                       "x was modified in place",
                       "an in-place operation (ReLU(inplace=True) or += on x) overwrote the "
                       "input; the layer must pass x on unchanged")
        _dense_shape(check, layer_cls, cfg, xs[cfg], out)
    for prop in ("forward runs", "input left unchanged", "output shape", "adds k new channels"):
        check.ok(prop)

    for cfg, out in outs.items():
        c, k = cfg
        x = xs[cfg]
        if torch.equal(out[:, :c], x):
            continue
        if torch.equal(out[:, k:], x):
            hint = "the new features come first: torch.cat([x, new], dim=1) keeps x in front"
        elif torch.allclose(out[:, :c], x, atol=1e-4):
            hint = "x is almost but not exactly there: concatenate x itself, unmodified"
        elif out[:, :c].min() >= 0:
            hint = ("the first channels look normalised and rectified: concatenate x itself, "
                    "not relu(bn(x))")
        else:
            hint = "concatenate x itself, first: torch.cat([x, new], dim=1)"
        diff = (out[:, :c] - x).abs().max().item()
        check.fail("first C channels are the input", f"{_dense_label(cfg)}: out[:, :{c}] == x",
                   f"they differ by up to {diff:.3g}", hint)
    check.ok("first C channels are the input")

    for cfg, layer in layers.items():
        c, k = cfg
        x = xs[cfg].clone().requires_grad_(True)
        out = layer(x)
        dead = []
        for j in range(k):
            weight = torch.randn(out[:, c + j].shape)
            (grad,) = torch.autograd.grad((out[:, c + j] * weight).sum(), x,
                                          retain_graph=True, allow_unused=True)
            if grad is None or not torch.any(grad != 0):
                dead.append(c + j)
        if dead:
            check.fail("new channels depend on the input",
                       f"{_dense_label(cfg)}: each of the {k} new channels is computed from x",
                       f"channels {dead} get no gradient from x",
                       "compute the new features from x (BN -> ReLU -> conv); do not detach x")
        missing = gradients_reach(layer, out)
        if missing:
            check.fail("gradients reach every parameter",
                       f"{_dense_label(cfg)}: a non-zero gradient for every parameter",
                       f"no gradient for {', '.join(missing[:4])}",
                       "a layer built in __init__ is never used in forward (or its output is "
                       "thrown away)")
    check.ok("new channels depend on the input")
    check.ok("gradients reach every parameter")

    for cfg, out in outs.items():
        c, _ = cfg
        new = out[:, c:]
        if new.min() >= 0:
            check.fail("BN-ReLU-conv order",
                       "the new features come straight from a convolution (some negative)",
                       "all new features are >= 0: the layer ends with a ReLU",
                       "DenseNet's layer is BN -> ReLU -> conv (pre-activation): the "
                       "convolution comes last")
    check.ok("BN-ReLU-conv order")
    return check.report()


def _dense_shape(check: Checker, layer_cls: LayerFactory, cfg: tuple[int, int],
                 x: torch.Tensor, out: torch.Tensor) -> None:
    """Fail 'output shape' (B, H, W kept) or 'adds k new channels' (C + k), with a diagnosis."""
    c, k = cfg
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
        check.fail("output shape", f"{_dense_label(cfg)}: {want}", f"{got}", hint)
    n = got[1]
    if n == c + k:
        return
    if n == c:
        hint = _dense_probe_same_channels(layer_cls, cfg, x)
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
    check.fail("adds k new channels", f"{_dense_label(cfg)}: {c} + {k} = {c + k} channels",
               f"{n} channels", hint)


def _dense_probe_same_channels(layer_cls: LayerFactory, cfg: tuple[int, int],
                               x: torch.Tensor) -> str:
    """The output has C channels: zero every conv so the new features are 0, then tell
    "x + new" (returns x) from "new only" (returns 0)."""
    try:
        layer = layer_cls(*cfg)
        with torch.no_grad():
            for m in layer.modules():
                if isinstance(m, nn.Conv2d):
                    m.weight.zero_()
                    if m.bias is not None:
                        m.bias.zero_()
            out = layer(x.clone())
    except Exception:  # noqa: BLE001 - only a diagnosis; the generic hint will do
        out = torch.full_like(x, float("nan"))
    if isinstance(out, torch.Tensor) and out.shape == x.shape and torch.allclose(out, x):
        return ("the new features were added to x: a dense layer concatenates them, "
                "torch.cat([x, new], dim=1)")
    if isinstance(out, torch.Tensor) and not torch.any(out != 0):
        return "only the new features are returned: return torch.cat([x, new], dim=1)"
    return "the output has C channels: append k new channels to x with torch.cat(dim=1)"


# ---------------------------------------------------------------------------------------------
# U-Net crop and concatenate

# (B, C1, C2, (H1, W1), (H2, W2)); even margins first, then odd ones (1, 3, 7, 5), so that a
# shifted crop is caught on an even margin and the odd-margin convention is checked after.
_CROP_CASES: tuple[tuple[int, int, int, tuple[int, int], tuple[int, int]], ...] = (
    (2, 3, 3, (64, 64), (56, 56)),
    (1, 2, 4, (17, 17), (9, 9)),
    (1, 1, 2, (136, 136), (104, 104)),
    (1, 2, 3, (12, 16), (11, 13)),
    (1, 2, 1, (13, 10), (6, 5)),
)


def _crop_label(case: tuple[int, int, int, tuple[int, int], tuple[int, int]]) -> str:
    b, c1, c2, (h1, w1), (h2, w2) = case
    return f"encoder ({b}, {c1}, {h1}, {w1}), decoder ({b}, {c2}, {h2}, {w2})"


def _crop_crash_hint(error: BaseException) -> str:
    kind = _mismatch(error)
    if kind is not None and kind[0] == "cat" and kind[1] in (1, -3):
        return ("the two maps must have the same H x W before torch.cat: crop the encoder "
                "map (first argument, the larger) to the decoder map's H2 x W2")
    if kind is not None and kind[0] == "cat":
        return "join the maps on the channel axis: torch.cat([cropped, decoder_map], dim=1)"
    return "the function crashed: call it on two maps of these shapes and read the traceback"


def _offset_pattern(rows: list[tuple[int, int]], cols: list[tuple[int, int]]) -> str:
    """Name the crop placement from the (margin, offset) pairs seen so far, per axis."""
    both = rows + cols

    def every(rule: Callable[[int], int], pairs: list[tuple[int, int]] = both) -> bool:
        return all(offset == rule(margin) for margin, offset in pairs)

    if every(lambda m: 0):
        return "the top-left corner was kept: take the centre, top = (H1 - H2) // 2"
    if every(lambda m: m):
        return "the bottom-right corner was kept: take the centre, top = (H1 - H2) // 2"
    if every(lambda m: (m + 1) // 2):
        return ("for an odd margin the book drops the extra row/column at the bottom/right: "
                "top = (H1 - H2) // 2, not (H1 - H2 + 1) // 2")
    if every(lambda m: int(round(m / 2))):
        return ("torchvision's center_crop rounds half to even, so for a margin of 3 it puts "
                "the extra row/column at the top/left; the book drops it at the bottom/right: "
                "slice with top = (H1 - H2) // 2, left = (W1 - W2) // 2")

    def shift(pairs: list[tuple[int, int]]) -> int | None:
        for s in (0, 1, -1):
            if every(lambda m, s=s: m // 2 + s, pairs):
                return s
        return None

    row, col = shift(rows), shift(cols)
    if row is not None and col is not None:
        moved = [f"one row {'down' if row > 0 else 'up'}" if row else "",
                 f"one column {'right' if col > 0 else 'left'}" if col else ""]
        return (f"off by one: the window is {' and '.join(m for m in moved if m)} of the "
                "centre; use top = (H1 - H2) // 2, left = (W1 - W2) // 2 exactly")
    return "take the centre window: top = (H1 - H2) // 2, left = (W1 - W2) // 2"


def check_crop_and_concat(fn: CropConcat) -> str:
    """Check the valid U-Net's skip: ``fn(encoder_map, decoder_map)`` returns the encoder map
    centre-cropped to the decoder map's size, concatenated with it on the channel axis.

    Shapes: encoder_map (B, C1, H1, W1), decoder_map (B, C2, H2, W2) with H1 >= H2 and
    W1 >= W2 -> (B, C1 + C2, H2, W2). Either order of the two parts is accepted (the report
    says which). The crop window must be centred: top = (H1 - H2) // 2, left = (W1 - W2) // 2
    (the reference, ``skiplab.models.unet.center_crop``, drops the extra row or column of an
    odd margin at the bottom/right); for an odd margin the window one pixel further
    down/right is accepted too (torchvision's ``center_crop`` does that for some margins).
    A valid U-Net's margins are always even. Tried on 64->56, 17->9, 136->104 (even margins)
    and 12x16->11x13, 13x10->6x5 (odd margins 1, 3, 7, 5), with distinct values in every
    entry (an arange) so that a window shifted by one pixel shows.

    Properties, case by case: runs; inputs left unchanged; output shape; decoder map kept
    whole; encoder map cropped, not resized (its part is a contiguous window of it);
    centre crop (diagnosed as top-left, bottom-right, off by one, rounded up, or torchvision's
    round-half-to-even placement).

    Returns the report; raises :class:`CheckFailed` naming the first property that fails.
    """
    return _seeded(lambda: _check_crop_and_concat(fn))


def _check_crop_and_concat(fn: CropConcat) -> str:
    check = Checker("crop and concatenate")
    rows: list[tuple[int, int]] = []   # (margin, offset) per case, along H
    cols: list[tuple[int, int]] = []   # along W
    orders: list[str] = []
    for case in _CROP_CASES:
        b, c1, c2, (h1, w1), (h2, w2) = case
        label = _crop_label(case)
        enc = torch.arange(b * c1 * h1 * w1, dtype=torch.float32).reshape(b, c1, h1, w1)
        dec = -1.0 - torch.arange(b * c2 * h2 * w2, dtype=torch.float32).reshape(b, c2, h2, w2)
        enc_in, dec_in = enc.clone(), dec.clone()
        expected = f"fn({label}) returns a tensor"
        out = _tensor(check, "runs", _attempt(check, "runs", lambda: fn(enc_in, dec_in), expected,
                                              _crop_crash_hint), expected)
        if not (torch.equal(enc_in, enc) and torch.equal(dec_in, dec)):
            check.fail("inputs left unchanged", "both maps are the same after the call",
                       "an input was modified in place", "crop with slicing; do not write into "
                       "the input maps")

        want = (b, c1 + c2, h2, w2)
        got = tuple(out.shape)
        if got != want:
            if len(got) != 4:
                hint = "keep the (B, C, H, W) layout"
            elif got[0] == 2 * b:
                hint = "concatenated on the batch axis (dim 0): use dim=1, the channels"
            elif got[2] == 2 * h2 or got[3] == 2 * w2:
                hint = "concatenated on a spatial axis: use dim=1, the channels"
            elif got[2:] == (h1, w1):
                hint = ("the output has the encoder map's size: crop the encoder map down to "
                        "the decoder's H2 x W2; do not pad or crop the decoder map")
            elif got[2] < h2 or got[3] < w2:
                hint = ("the output is smaller than the decoder map: keep the decoder map "
                        "whole, crop only the encoder map to its size")
            elif got[1] in (c1, c2):
                hint = "only one map is returned: concatenate both, torch.cat(..., dim=1)"
            else:
                hint = "crop the encoder map to H2 x W2, then torch.cat on dim=1"
            check.fail("output shape", f"{label}: {want}", f"{got}", hint)

        if torch.equal(out[:, c1:], dec):
            orders.append("encoder first")
            part = out[:, :c1]
        elif torch.equal(out[:, :c2], dec):
            orders.append("decoder first")
            part = out[:, c2:]
        else:
            check.fail("decoder map kept whole",
                       f"{label}: the decoder map, unchanged, as the first or last {c2} channels",
                       "no such block of channels", "crop only the encoder map; pass the "
                       "decoder map to torch.cat as it is")

        corner = part[0, 0, 0, 0].item()
        top, left = int(corner) // w1, int(corner) % w1
        window = (corner == int(corner) and 0 <= corner < h1 * w1
                  and top + h2 <= h1 and left + w2 <= w1
                  and torch.equal(part, enc[..., top:top + h2, left:left + w2]))
        if not window:
            values = part.flatten()
            copied = bool(torch.all((values == values.round()) & (values >= 0)
                                    & (values < enc.numel())))
            hint = ("its values are encoder entries, but not one contiguous window: slice "
                    "x[..., top:top + H2, left:left + W2] (no striding or nearest resizing)"
                    if copied else
                    "its values are not copied from the encoder map: crop by slicing; "
                    "interpolation or pooling resizes the map and mixes pixels")
            check.fail("encoder map cropped, not resized",
                       f"{label}: an H2 x W2 window of the encoder map",
                       "the encoder part is not a window of it", hint)

        want_at = ((h1 - h2) // 2, (w1 - w2) // 2)
        rows.append((h1 - h2, top))
        cols.append((w1 - w2, left))

        def centred(margin: int, offset: int) -> bool:
            # an odd margin has two centres: the extra pixel may go either side
            return offset == margin // 2 or (margin % 2 == 1 and offset == (margin + 1) // 2)

        if not (centred(h1 - h2, top) and centred(w1 - w2, left)):
            check.fail("centre crop", f"{label}: window at (top, left) = {want_at}",
                       f"window at {(top, left)}", _offset_pattern(rows, cols))

    if len(set(orders)) > 1:
        check.fail("same order every call", "the parts in the same order for every input",
                   f"orders: {orders}", "always torch.cat([cropped, decoder_map], dim=1)")
    for prop in ("runs", "inputs left unchanged", "output shape", "decoder map kept whole",
                 "encoder map cropped, not resized", "centre crop"):
        check.ok(prop)
    order = ("encoder map (cropped) first, then decoder map" if orders[0] == "encoder first"
             else "decoder map first, then encoder map (cropped); the book puts the encoder "
                  "map first, either is accepted")
    return check.report() + f"\n  order: {order}"
