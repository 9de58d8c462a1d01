"""Checker for the gradient-flow exercise: a per-layer gradient-norm probe, compared with
:func:`skiplab.probes.layer_grad_norms` on small MLPs of several depths."""

from __future__ import annotations

import copy
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ..models.mlp import DeepMLP, MLPConfig
from ..probes.gradients import layer_grad_norms
from .core import PropertyChecker as _Checker
from .core import fmt_values, guarded
from .core import seeded as _seeded

__all__ = ["check_gradient_probe"]

_PROBE_BATCH = 12  # not 1: a summed loss then shows up as values 12 times too large


_SPECS = (
    ("plain sigmoid MLP, depth 6",
     MLPConfig(8, 3, depth=6, width=10, activation="sigmoid", architecture="plain")),
    ("residual sigmoid MLP, depth 6",
     MLPConfig(8, 3, depth=6, width=10, activation="sigmoid", architecture="residual")),
    ("plain tanh MLP, depth 4",
     MLPConfig(8, 4, depth=4, width=7, activation="tanh", init="xavier")),
    ("residual ReLU MLP, depth 8",
     MLPConfig(6, 5, depth=8, width=9, activation="relu", architecture="residual")),
)
_HIDDEN_SPECS = (
    ("plain ReLU MLP, depth 11", MLPConfig(9, 4, depth=11, width=6, activation="relu")),
    ("residual tanh MLP, depth 3",
     MLPConfig(5, 2, depth=3, width=12, activation="tanh", architecture="residual")),
)


def _probe_cases(hidden: bool = False) -> list[tuple[str, DeepMLP, torch.Tensor, torch.Tensor]]:
    """(name, model, x (B, in), y (B,)) for the gradient-probe check, small and seeded."""
    cases = []
    for i, (name, config) in enumerate(_SPECS + (_HIDDEN_SPECS if hidden else ())):
        with _seeded(100 + i):
            model = DeepMLP(config)
            x = torch.randn(_PROBE_BATCH, config.in_features)
            y = torch.randint(0, config.n_classes, (_PROBE_BATCH,))
        cases.append((name, model, x, y))
    return cases


_NUMBERS = "a list of floats, or a 1-D float32/float64 tensor"


def _as_floats(c: _Checker, values: Any) -> list[float]:
    """The values as Python floats; anything but real numbers fails 'returns numbers'."""
    prop = "returns numbers"
    if isinstance(values, torch.Tensor):
        if values.dtype not in (torch.float32, torch.float64):
            c.fail(prop, _NUMBERS, f"a {values.dtype} tensor",
                   "keep the norms as float32 or float64 (float16 rounds them to three "
                   "digits; integers lose them): no .half(), .int() or .long()")
        return [float(v) for v in values.detach().reshape(-1).tolist()]
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        c.fail(prop, _NUMBERS, f"a {type(values).__name__}",
               "return e.g. a list of g.norm().item() values, or torch.stack([...]) of the "
               "norms" + (": did the function miss a `return`?" if values is None else ""))
    floats = []
    for v in values:
        if isinstance(v, torch.Tensor) and v.numel() == 1 and v.dtype in (torch.float32,
                                                                          torch.float64):
            floats.append(float(v.detach()))
        elif isinstance(v, numbers.Real) and not isinstance(v, bool):
            floats.append(float(v))
        else:
            shown = (f"a {v.dtype} tensor of shape {tuple(v.shape)}"
                     if isinstance(v, torch.Tensor) else f"a {type(v).__name__}")
            c.fail(prop, _NUMBERS, f"an item is {shown}",
                   "each value is one float norm, e.g. g.norm().item(); not a string, a "
                   "tensor of several entries or an integer tensor")
    return floats


def _floats_close(a: Sequence[float], b: Sequence[float], rtol: float = 1e-4) -> bool:
    """Same length, and equal entry by entry within ``rtol`` (torch.allclose, atol 1e-12);
    not :func:`~skiplab.checks.core.close`, whose tolerance follows b's largest entry."""
    ta, tb = torch.tensor(list(a), dtype=torch.float64), torch.tensor(list(b), dtype=torch.float64)
    return ta.shape == tb.shape and torch.allclose(ta, tb, rtol=rtol, atol=1e-12)


@guarded("gradient probe")
def check_gradient_probe(fn: Callable[[nn.Module, torch.Tensor, torch.Tensor], Sequence[float]],
                         *, hidden: bool = False) -> str:
    """Check a student's gradient probe against :func:`skiplab.probes.layer_grad_norms`.

    The exercise: write ``fn(model, x, y)`` that returns, for each ``nn.Linear`` layer of the
    MLP, input layer first, the L2 norm of dL/dW of its **weight** (not its bias), where
    L = mean cross-entropy of ``model(x)`` against ``y`` on this one batch.

    Args:
        fn: the student's function. ``model`` is a :class:`skiplab.models.DeepMLP` (its
            Linear layers, input to output, are ``model.weight_layers()``, also the order of
            ``model.modules()``); ``x`` is (B, in_features) float, ``y`` is (B,) class
            indices. It returns a sequence of floats (a list, or a 1-D tensor), one per layer.

    Properties, on four small MLPs (plain and residual sigmoid nets of depth 6, a tanh net
    of depth 4, a residual ReLU net of depth 8; ``hidden=True`` adds depths 11 and 3):
    it runs; it returns real numbers (not strings, not float16 or integer tensors); one
    value per weight layer; the weights are unchanged; input layer first; the
    values match the reference (rtol 1e-4); the result does not depend on gradients left
    over in ``.grad`` (called twice, and called on a model whose ``.grad`` holds garbage).
    The checker does not require ``.grad`` to be left untouched: ``model.zero_grad()`` then
    ``loss.backward()`` is a valid solution.
    """
    c = _Checker("gradient probe")
    run_hint = ("fn(model, x, y) should compute loss = F.cross_entropy(model(x), y), get the "
                "gradients of the Linear weights and return their norms")
    prop_one = "one value per weight layer"
    for name, model, x, y in _probe_cases(hidden):
        depth = model.config.depth
        weights = [layer.weight for layer in model.weight_layers()]
        reference = layer_grad_norms(copy.deepcopy(model), x, y).tolist()
        before = [w.detach().clone() for w in weights]

        out = c.run("runs without error", lambda: fn(model, x, y),
                    f"fn(model, x, y) returns the norms for the {name}", run_hint)
        c.ok("runs without error")
        values = _as_floats(c, out)
        c.ok("returns numbers")

        if len(values) != depth:
            hint = (f"the {name} has {depth} Linear layers; return one value per weight "
                    "(model.weight_layers() lists them)")
            if len(values) == 2 * depth:
                hint = ("twice as many values as layers: the biases seem to be included; "
                        "probe only each layer's .weight")
            c.fail(prop_one, f"{depth} values for the {name}", f"{len(values)} values", hint)
        c.ok(prop_one)

        changed = [i for i, (w, w0) in enumerate(zip(weights, before)) if not torch.equal(w, w0)]
        c.require(not changed, "weights unchanged",
                  "the model's weights are the same after the call",
                  f"the weights of layer(s) {changed} changed",
                  "a probe only measures: no optimizer.step() and no in-place edits of the "
                  "weights")

        if not _floats_close(values, reference) and _floats_close(values, reference[::-1]):
            c.fail("input layer first", f"input layer first: {fmt_values(reference)}",
                   f"{fmt_values(values)} (the reference reversed)",
                   "the values are in reverse order: start with the layer nearest the input")
        c.ok("input layer first")

        if not _floats_close(values, reference):
            measured, hint = _diagnose_probe(values, reference, weights)
            c.fail("matches layer_grad_norms", f"{fmt_values(reference)} for the {name}",
                   measured, hint)
        c.ok("matches layer_grad_norms")

    # Leftover gradients: call twice on a fresh model, then on one whose .grad holds garbage.
    prop = "no leftover gradients"
    name, model, x, y = _probe_cases()[0]
    reference = layer_grad_norms(copy.deepcopy(model), x, y).tolist()
    hint = ("call model.zero_grad() before loss.backward(), or use torch.autograd.grad(loss, "
            "weights), which does not read or write .grad")
    first = _as_floats(c, c.run(prop, lambda: fn(model, x, y), "a first call works", run_hint))
    second = _as_floats(c, c.run(prop, lambda: fn(model, x, y), "a second call works",
                                 run_hint))
    if not _floats_close(second, first):
        ratio = torch.tensor(second, dtype=torch.float64) / torch.tensor(first, dtype=torch.float64)
        c.fail(prop, "calling fn twice on the same batch gives the same values",
               f"the second call gave {fmt_values(second)}, {ratio.mean().item():.2f} times "
               "the first",
               "gradients pile up in .grad across calls: " + hint)
    with torch.no_grad():
        for p in model.parameters():
            p.grad = torch.randn_like(p) * 10
    third = _as_floats(c, c.run(prop, lambda: fn(model, x, y), "a call works", run_hint))
    c.require(_floats_close(third, reference), prop,
              f"{fmt_values(reference)} even when .grad already holds old gradients",
              f"{fmt_values(third)} when .grad held old values",
              "the result depends on what was in .grad before: " + hint)
    return c.report()


def _diagnose_probe(values: list[float], reference: list[float],
                    weights: list[torch.Tensor]) -> tuple[str, str]:
    """(measured, hint) for values that do not match the reference norms."""
    weight_norms = [w.detach().double().norm().item() for w in weights]
    if _floats_close(values, weight_norms):
        return (f"{fmt_values(values)}, the norms of the weights themselves",
                "take the norm of the gradient dL/dW (weight.grad, or torch.autograd.grad), "
                "not of the weight")
    if _floats_close(values, [r * r for r in reference]):
        return (f"{fmt_values(values)}, the squares of the expected norms",
                "return the L2 norm g.norm(), not the squared norm (g ** 2).sum()")
    ratios = [v / r for v, r in zip(values, reference) if r != 0]
    if ratios and max(ratios) - min(ratios) <= 1e-3 * abs(max(ratios)):
        ratio = ratios[0]
        if abs(ratio - _PROBE_BATCH) < 1e-2 * _PROBE_BATCH:
            return (f"every value is {ratio:.2f} times the reference, the batch size "
                    f"({_PROBE_BATCH})", "use the mean cross-entropy over the batch "
                    "(F.cross_entropy's default), not reduction='sum'")
        return (f"every value is {ratio:.3g} times the reference",
                "the loss is scaled: use F.cross_entropy(model(x), y) as it is")
    worst = max(abs(v - r) / max(abs(r), 1e-12) for v, r in zip(values, reference))
    return (f"{fmt_values(values)} (largest relative error {worst:.2g})",
            "use L = F.cross_entropy(model(x), y) on the given batch and the gradient of each "
            "Linear layer's weight, input layer first")
