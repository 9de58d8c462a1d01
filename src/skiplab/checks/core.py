"""What every checker shares: the error a student sees, and small helpers.

A checker runs a student's code through properties. On the first property that fails it
raises :class:`CheckFailed`, whose message names the property, what was expected, what was
measured and a hint at the likely mistake::

    CheckFailed: [basic block] property 'addition before the final ReLU' failed
      expected: with the branch switched off (last BatchNorm weight and bias 0),
                block_cls(8, 8, 1) returns relu(shortcut(x))
      measured: the output has negative entries (min -3.45)
      hint: apply the final ReLU after adding the shortcut, not to the branch alone:
            relu(bn2(conv2(h)) + shortcut(x))

A checker returns a short report (a string) when every property holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

__all__ = ["CheckFailed", "Checker", "PropertyChecker", "count_parameters", "gradients_reach",
           "max_diff", "seeded"]


class CheckFailed(AssertionError):
    """A student's code broke a property; the message says which, and why it matters."""

    def __init__(self, exercise: str, prop: str, expected: str, measured: str, hint: str):
        self.exercise, self.property = exercise, prop
        self.expected, self.measured, self.hint = expected, measured, hint
        super().__init__(
            f"[{exercise}] property '{prop}' failed\n"
            f"  expected: {expected}\n  measured: {measured}\n  hint: {hint}")


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

    def run(self, prop: str, fn: Callable[[], Any], expected: str, hint: str) -> Any:
        """Call fn; an exception inside the student's code becomes a failed property."""
        try:
            return fn()
        except CheckFailed:
            raise
        except Exception as error:  # noqa: BLE001 - any crash in student code is reported
            self.fail(prop, expected, f"{type(error).__name__}: {error}", hint)

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


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute difference, in float64."""
    return (a.detach().double() - b.detach().double()).abs().max().item()


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def gradients_reach(module: nn.Module, output: torch.Tensor,
                    inputs: tuple[torch.Tensor, ...] = ()) -> list[str]:
    """Names of the parameters (and 'input') that get no or an all-zero gradient."""
    params = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    targets = [p for _, p in params] + list(inputs)
    grads = torch.autograd.grad(output.float().pow(2).sum(), targets, allow_unused=True)
    names = [n for n, _ in params] + ["input"] * len(inputs)
    return [n for n, g in zip(names, grads) if g is None or not torch.any(g != 0)]
