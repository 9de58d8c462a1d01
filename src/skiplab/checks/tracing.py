"""Looking inside a student's forward pass, whatever style it is written in.

- :class:`LayerTrace` records every convolution and BatchNorm the forward pass calls, with
  its input and output, whether it comes from an ``nn.Conv2d`` / ``nn.BatchNorm2d``
  module (lazy ones included), an ``nn.Sequential`` or a functional ``F.conv2d`` /
  ``F.batch_norm`` call. The checkers rebuild the exercise's formula from these records:
  the student's own layers, wired as the exercise says, must give the student's output.
- :func:`slopes` compares the gradient autograd computes with the function's true slope
  (a central finite difference in float64): a path cut by ``.detach()``, ``.data`` or
  ``torch.no_grad()`` keeps the output right and makes the gradient wrong.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from .core import close

__all__ = ["Call", "LayerTrace", "RandomSlope", "first_close", "random_slope", "slope_ok",
           "slopes"]

_CONV = frozenset({torch.conv2d, F.conv2d})
_NORM = frozenset({F.batch_norm, torch.batch_norm})
_CONV_ARGS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")


@dataclass
class Call:
    """One convolution or BatchNorm call: what went in and what came out (copies taken at
    the call, so that a later in-place ReLU does not change them)."""

    kind: str                       # "conv" or "norm"
    input: torch.Tensor
    output: torch.Tensor
    kernel: tuple[int, ...] = ()    # convolutions: (kh, kw)
    stride: tuple[int, ...] = ()
    padding: tuple[int, ...] | str = ()
    channels: tuple[int, int] = (0, 0)  # convolutions: (in, out)

    def describe(self) -> str:
        if self.kind == "norm":
            return f"BatchNorm({self.input.shape[1]})"
        k = "x".join(map(str, self.kernel))
        return (f"{k} conv {self.channels[0]}->{self.channels[1]}, stride "
                f"{self.stride[0] if self.stride else 1}, padding {self.padding}")


def _pair(value: Any) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value, value)
    return tuple(int(v) for v in value)


class LayerTrace(TorchFunctionMode):
    """``with trace: module(x)`` records every conv2d and batch_norm call, in order, and the
    operand shapes of an operation that raised (so that a crash at ``branch + shortcut``
    can say which side had which shape)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[Call] = []
        self.failed: list[tuple[int, ...]] | None = None  # operand shapes of an op that raised

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        try:
            out = func(*args, **kwargs)
        except Exception:
            self.failed = [tuple(a.shape) for a in args if isinstance(a, torch.Tensor)]
            raise
        if func in _CONV and isinstance(out, torch.Tensor):
            given = dict(zip(_CONV_ARGS, args)) | kwargs
            weight = given["weight"]
            padding = given.get("padding", 0)
            self.calls.append(Call(
                "conv", given["input"].detach().clone(), out.detach().clone(),
                kernel=tuple(weight.shape[2:]), stride=_pair(given.get("stride", 1)),
                padding=padding if isinstance(padding, str) else _pair(padding),
                channels=(int(weight.shape[1]) * int(given.get("groups", 1)),
                          int(weight.shape[0]))))
        elif func in _NORM and isinstance(out, torch.Tensor):
            self.calls.append(Call("norm", args[0].detach().clone(), out.detach().clone()))
        return out

    def convs(self, kernel: tuple[int, int] | None = None) -> list[Call]:
        return [c for c in self.calls if c.kind == "conv" and (kernel is None
                                                               or c.kernel == kernel)]

    def norms(self) -> list[Call]:
        return [c for c in self.calls if c.kind == "norm"]


def first_close(calls: list[Call], value: torch.Tensor, *, exclude: tuple[Call, ...] = ()
                ) -> Call | None:
    """The first call whose input equals ``value`` (within float32 rounding)."""
    for call in calls:
        if all(call is not e for e in exclude) and close(call.input, value):
            return call
    return None


def slopes(module: nn.Module, inputs: tuple[torch.Tensor, ...], weight: torch.Tensor,
           directions: tuple[torch.Tensor, ...],
           call: Callable[[nn.Module, tuple[torch.Tensor, ...]], torch.Tensor] | None = None
           ) -> tuple[float, float, float]:
    """(autograd's, the true) derivative of sum(weight * module(*inputs)) along directions.

    The module must be deterministic (eval mode). Tried on a float64 copy (a central
    difference with step 1e-6 is then exact to about 1e-8 for these piecewise-linear or
    smooth functions); if the student's code cannot run in float64, on a float32 copy with
    step 1e-3. Returns the two numbers and the relative tolerance the comparison should
    use (2e-3 in float64, 5e-2 in float32, where a ReLU kink inside the step is likelier);
    :func:`slope_ok` compares them.
    """
    run = call or (lambda m, xs: m(*xs))
    for dtype, step, tol in ((torch.float64, 1e-6, 2e-3), (torch.float32, 1e-3, 5e-2)):
        try:
            twin = copy.deepcopy(module).to(dtype)
            xs = tuple(x.detach().to(dtype) for x in inputs)
            vs = tuple(v.to(dtype) for v in directions)
            w = weight.to(dtype)
            with torch.no_grad():
                up = (w * run(twin, tuple(x + step * v for x, v in zip(xs, vs)))).sum()
                down = (w * run(twin, tuple(x - step * v for x, v in zip(xs, vs)))).sum()
            leaves = tuple(x.clone().requires_grad_(True) for x in xs)
            out = (w * run(twin, leaves)).sum()
            if out.requires_grad:
                grads = torch.autograd.grad(out, leaves, allow_unused=True)
            else:
                grads = (None,) * len(leaves)
        except (RuntimeError, TypeError, ValueError):
            if dtype == torch.float32:
                raise
            continue
        auto = sum(float((g * v).sum()) for g, v in zip(grads, vs) if g is not None)
        return auto, float((up - down) / (2 * step)), tol
    raise AssertionError("unreachable")  # pragma: no cover


def slope_ok(auto: float, true: float, tol: float, scale: float = 0.0) -> bool:
    """Autograd's derivative agrees with the finite difference, within ``tol`` relative to
    the larger of the true slope and ``scale``."""
    return abs(auto - true) <= tol * max(abs(true), scale, 1e-6)


@dataclass(frozen=True)
class RandomSlope:
    """One random projection of a block's output, differentiated two ways along a random
    input direction: ``auto`` (autograd) and ``true`` (finite difference), see :func:`slopes`.

    ``out`` (the output), ``weight`` (like ``out``) and ``direction`` (like the input) let a
    checker work out which part of the slope a missing path would remove.
    """

    out: torch.Tensor
    weight: torch.Tensor
    direction: torch.Tensor
    auto: float
    true: float
    tol: float

    @property
    def ok(self) -> bool:
        return slope_ok(self.auto, self.true, self.tol)


def random_slope(module: nn.Module, x: torch.Tensor) -> RandomSlope:
    """:func:`slopes` of ``sum(weight * module(x))`` for a random weight and direction."""
    with torch.no_grad():
        out = module(x.clone())
    weight, direction = torch.randn_like(out), torch.randn_like(x)
    auto, true, tol = slopes(module, (x,), weight, (direction,))
    return RandomSlope(out, weight, direction, auto, true, tol)
