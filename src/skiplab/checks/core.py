"""What every checker shares: the error a student sees, the guard every check runs under,
and small helpers.

A checker runs a student's code through properties. On the first property that fails it
raises :class:`CheckFailed`, whose message names the property, what was expected, what was
measured and a hint at the likely mistake::

    CheckFailed: [basic block] property 'addition before the final ReLU' failed
      expected: block_cls(8, 8, 1) returns relu(bn2(conv2(h)) + shortcut(x))
      measured: it returns relu(bn2(conv2(h))) + shortcut(x)
      hint: apply the final ReLU after adding the shortcut, not to the branch alone:
            relu(bn2(conv2(h)) + shortcut(x))

A checker returns a short report (a string) when every property holds.

Every public checker is wrapped by :func:`guarded`, which gives it the same conditions
whatever the notebook did before (gradients on, float32 as the default dtype, a fixed seed
with the caller's random state put back) and lets nothing but :class:`CheckFailed` out: an
exception raised by the student's code, ``SystemExit`` and ``GeneratorExit`` included,
becomes a failed property that names it. ``KeyboardInterrupt`` is passed on: it is the
person at the keyboard stopping a check that hangs, and a checker must not swallow it.
"""

from __future__ import annotations

import copy
import functools
import re
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

# The library's count (all parameters, trainable or not, as the checkers' own count did);
# imported here so that it stays importable from the core as before.
from ..models.registry import count_parameters

__all__ = ["CheckFailed", "Checker", "PropertyChecker", "close", "count_parameters",
           "eval_twin", "fmt_values", "gradients_reach", "guarded", "materialise", "max_diff",
           "same_tensor", "say", "seeded", "shape_mismatch"]

_HERE = Path(__file__).resolve().parent
F = TypeVar("F", bound=Callable[..., str])


class CheckFailed(AssertionError):
    """A student's code broke a property; the message says which, and why it matters."""

    def __init__(self, exercise: str, prop: str, expected: str, measured: str, hint: str):
        self.exercise, self.property = exercise, prop
        self.expected, self.measured, self.hint = expected, measured, hint
        super().__init__(
            f"[{exercise}] property '{prop}' failed\n"
            f"  expected: {expected}\n  measured: {measured}\n  hint: {hint}")


def say(error: BaseException) -> str:
    """The exception as one short line: 'RuntimeError: The size of tensor a ...'."""
    lines = str(error).strip().splitlines()
    first = lines[0][:180] if lines else ""
    if isinstance(error, SystemExit):
        return f"SystemExit({error.code!r}): the code called sys.exit() (or exit(), quit())"
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def shape_mismatch(error: BaseException) -> tuple[str, int] | None:
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


def _uncaught_crash_hint(error: BaseException) -> str:
    """Hint for an exit, or a crash no property's own hint covers (see :func:`guarded`)."""
    if isinstance(error, SystemExit):
        return ("remove sys.exit() / exit() / quit(): the checked code must return its result, "
                "and exiting would end the whole notebook run")
    if isinstance(error, GeneratorExit):
        return "do not raise GeneratorExit; return the result instead"
    frames = traceback.extract_tb(error.__traceback__)
    if frames and Path(frames[-1].filename).resolve().parent == _HERE:
        return ("the checker could not use what your code returned: check its type, dtype "
                "(float32, like the input) and shape against the exercise's contract")
    return ("your code raised an exception: run it on an input like the check's and read "
            "the traceback")


class Checker:
    """Collects the properties that held; ``fail`` raises, ``ok`` records, ``report`` sums up."""

    def __init__(self, exercise: str):
        self.exercise = exercise
        self.passed: list[str] = []

    def fail(self, prop: str, expected: str, measured: str, hint: str) -> None:
        raise CheckFailed(self.exercise, prop, expected, measured, hint)

    def ok(self, prop: str) -> None:
        self.passed.append(prop)

    def require(self, condition: bool, prop: str, expected: str, measured: str,
                hint: str) -> None:
        if not condition:
            self.fail(prop, expected, measured, hint)
        self.ok(prop)

    def require_module_with(self, obj: Any, prop: str, names: tuple[str, ...],
                            hint: str) -> None:
        """Require an ``nn.Module`` that has the attributes ``names`` (the exercise's contract)."""
        if not isinstance(obj, nn.Module):
            self.fail(prop, "an nn.Module", f"a {type(obj).__name__}", "subclass torch.nn.Module")
        missing = [n for n in names if not hasattr(obj, n)]
        listed = ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else names[0]
        self.require(not missing, prop, f"attributes {listed}", f"missing: {', '.join(missing)}",
                     hint)

    def run(self, prop: str, fn: Callable[[], Any], expected: str,
            hint: str | Callable[[BaseException], str]) -> Any:
        """Call fn; an exception inside the student's code becomes a failed property.

        ``hint`` may be a function of the error. SystemExit and GeneratorExit count as
        errors; KeyboardInterrupt is passed on."""
        try:
            return fn()
        except (CheckFailed, KeyboardInterrupt):
            raise
        except BaseException as error:  # noqa: BLE001 - any crash in student code is reported
            if isinstance(error, (SystemExit, GeneratorExit)):
                text = _uncaught_crash_hint(error)
            else:
                text = hint(error) if callable(hint) else hint
            self.fail(prop, expected, say(error), text)

    def tensor(self, prop: str, value: Any, expected: str, like: torch.Tensor) -> torch.Tensor:
        """Require a tensor of ``like``'s dtype (the checker compares dtypes explicitly)."""
        if not isinstance(value, torch.Tensor):
            hint = ("forward returned None: did it miss a `return`?" if value is None else
                    "return the result tensor")
            self.fail(prop, expected, f"returned {type(value).__name__}, not a tensor", hint)
        if value.dtype != like.dtype:
            self.fail("output dtype", f"a {like.dtype} tensor, the dtype of the input",
                      f"a {value.dtype} tensor",
                      "keep the input's dtype: no .half(), .int(), .long(), .double() or "
                      ".to(...) on the way")
        return value

    def report(self) -> str:
        lines = [f"[{self.exercise}] all {len(self.passed)} checks passed:"]
        lines += [f"  - {p}" for p in self.passed]
        return "\n".join(lines)


class PropertyChecker(Checker):
    """A Checker that records each property once, however many cases it is tried on."""

    def ok(self, prop: str) -> None:
        if prop not in self.passed:
            self.passed.append(prop)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run with a fixed seed, then put the caller's CPU random state back."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@contextmanager
def _fixed_conditions() -> Iterator[None]:
    """Gradients on, float32 default dtype, seed 0; the caller's settings put back."""
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        with torch.enable_grad(), seeded(0):
            yield
    finally:
        torch.set_default_dtype(dtype)


def guarded(exercise: str) -> Callable[[F], F]:
    """Decorate a checker: fixed conditions, and nothing but CheckFailed gets out.

    A crash that no property caught becomes the failed property 'runs without error',
    naming the exception; KeyboardInterrupt is passed on (see the module docstring).
    """
    def wrap(check: F) -> F:
        @functools.wraps(check)
        def guarded_check(*args: Any, **kwargs: Any) -> str:
            try:
                with _fixed_conditions():
                    return check(*args, **kwargs)
            except (CheckFailed, KeyboardInterrupt):
                raise
            except BaseException as error:  # noqa: BLE001 - see the docstring
                raise CheckFailed(exercise, "runs without error",
                                  "the code runs through every case of the check",
                                  say(error), _uncaught_crash_hint(error)) from None
        return guarded_check  # type: ignore[return-value]
    return wrap


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute difference, in float64."""
    return (a.detach().double() - b.detach().double()).abs().max().item()


def close(a: Any, b: torch.Tensor, rtol: float = 1e-4) -> bool:
    """Same shape, and equal within ``rtol`` of b's scale (in float64; any float dtypes)."""
    if not isinstance(a, torch.Tensor) or a.shape != b.shape:
        return False
    if a.numel() == 0:
        return True
    scale = 1.0 + b.detach().double().abs().max().item()
    return max_diff(a, b) <= rtol * scale


def same_tensor(a: Any, b: torch.Tensor) -> bool:
    """The same dtype, shape and values (torch.equal alone ignores the dtype)."""
    return (isinstance(a, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape
            and torch.equal(a, b))


def fmt_values(values: Sequence[float] | torch.Tensor, n: int = 4) -> str:
    """The first ``n`` values, 3 significant digits: '[0.12, 3.4, 5, 6, ...]' (a tensor is
    read flat)."""
    flat = values.reshape(-1).tolist() if isinstance(values, torch.Tensor) else list(values)
    shown = ", ".join(f"{v:.3g}" for v in flat[:n])
    return f"[{shown}{', ...' if len(flat) > n else ''}]"


def eval_twin(module: nn.Module) -> nn.Module:
    """A copy in eval mode whose BatchNorms have random affine parameters and statistics, so
    that no BatchNorm is close to the identity and every ordering mistake shows."""
    twin = copy.deepcopy(module)
    with torch.no_grad():
        for bn in twin.modules():
            if not isinstance(bn, _BatchNorm):
                continue
            if bn.weight is not None:
                bn.weight.uniform_(0.6, 1.4)
                bn.bias.normal_(0.0, 0.5)
            if bn.running_mean is not None and bn.running_var is not None:
                bn.running_mean.normal_(0.0, 0.3)
                bn.running_var.uniform_(0.5, 1.5)
    return twin.eval()


def materialise(module: nn.Module, x: torch.Tensor) -> None:
    """Run one forward pass (no gradients, state kept) if the module has lazy parameters
    (``nn.LazyConv2d``, ``nn.LazyBatchNorm2d``), so that every parameter has its shape."""
    if any(isinstance(p, nn.parameter.UninitializedParameter) for p in module.parameters()):
        training = module.training
        with torch.no_grad():
            module.eval()(x.clone())
        module.train(training)


def gradients_reach(module: nn.Module, output: torch.Tensor,
                    inputs: tuple[torch.Tensor, ...] = ()) -> list[str]:
    """Names of the parameters (and 'input') that get no or an all-zero gradient."""
    params = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    targets = [p for _, p in params] + list(inputs)
    if not output.requires_grad:
        return [n for n, _ in params] + ["input"] * len(inputs)
    grads = torch.autograd.grad(output.double().pow(2).sum(), targets, allow_unused=True)
    names = [n for n, _ in params] + ["input"] * len(inputs)
    return [n for n, g in zip(names, grads) if g is None or not torch.any(g != 0)]
