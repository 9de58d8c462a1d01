"""Checker for the loss-landscape exercise: filter normalisation of a random direction.

- :func:`check_filter_normalise`: Li et al. (2018)'s filter normalisation, written by hand;
  each filter d[i] of a direction (a slice along dim 0 of a parameter with two or more
  dims) is rescaled to the norm of the weights' filter w[i], and every 1-D parameter
  (biases, normalisation weights and biases) gets a zero direction, as
  :func:`skiplab.landscape.random_direction` does with ``normalisation="filter"``.

The checker runs the student's function on tiny CPU tensors made under a fixed seed (the
global random state is restored afterwards, even if the student's code draws random
numbers) and returns a short report, or raises :class:`~skiplab.checks.core.CheckFailed`
naming the property that broke, what was expected, what was measured and a hint at the
likely mistake.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from .core import PropertyChecker as _Checker
from .core import fmt_values, guarded
from .landscape_cases import hand_made_case, hidden_case, model_case

__all__ = ["check_filter_normalise"]

FilterNormalise = Callable[[list[torch.Tensor], list[torch.Tensor]], Sequence[torch.Tensor]]
"""``fn(direction, weights)``: one tensor per parameter in, one tensor per parameter out."""

_RTOL = 1e-4     # filter norms must match the weights' to this relative tolerance
_COS_TOL = 1e-5  # each output filter must have cosine >= 1 - _COS_TOL with d[i]
_NEAR = 1e-3     # relative tolerance of the diagnoses (which mistake does this look like?)

_P_RUNS = "runs without error"
_P_LIST = "one tensor per parameter"
_P_SHAPES = "shapes match the parameters"
_P_DTYPES = "dtypes match the parameters"
_P_INPUTS = "inputs unchanged"
_P_ZERO = "1-D parameters get a zero direction"
_P_NORMS = "each filter's norm equals the weights' filter norm"
_P_ALIGN = "each filter is a positive multiple of the direction's filter"

_FORMULA = "d'[i] = d[i] * ||w[i]|| / ||d[i]||, the norms over every dim but dim 0"
_WRONG_AXIS = ("wrong axis: a filter is the slice d[i] along dim 0 (a row of a Linear weight, "
               "an output channel of a conv weight), its norm taken over all the other dims, "
               "d.reshape(d.shape[0], -1).norm(dim=1)")


# --------------------------------------------------------------------------------------------
# small helpers


def _f64(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(torch.float64)


def _filter_norms(t: torch.Tensor) -> torch.Tensor:
    """The norm of each slice along dim 0, over every other dim: (n,)."""
    t = _f64(t)
    return t.reshape(t.shape[0], -1).norm(dim=1)


def _near(a: torch.Tensor, b: torch.Tensor, rtol: float = _NEAR) -> bool:
    a, b = _f64(a), _f64(b)
    return a.shape == b.shape and bool(torch.all((a - b).abs() <= rtol * b.abs() + 1e-9))


def _cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine between filter i of a and filter i of b, for each i: (n,)."""
    a, b = _f64(a).reshape(a.shape[0], -1), _f64(b).reshape(b.shape[0], -1)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-300)


# --------------------------------------------------------------------------------------------
# the checker


@guarded("filter normalisation")
def check_filter_normalise(fn: FilterNormalise, *, hidden: bool = False) -> str:
    """Check a student's filter normalisation of a loss-landscape direction.

    The exercise: write ``fn(direction, weights)``. ``direction`` and ``weights`` are lists
    of tensors, one per parameter of a model (in ``model.parameters()`` order), of equal
    shapes: convolution weights (out, in, kh, kw), Linear weights (out, in), biases and
    normalisation parameters (n,). It returns a **new** list (or tuple) of tensors, one per
    parameter, of the same shapes, and leaves both inputs unchanged:

    - for a tensor with two or more dims, each filter d[i] (the slice along dim 0: one
      output channel, one output unit) is rescaled to the norm of the weights' filter,
      ``d'[i] = d[i] * ||w[i]|| / ||d[i]||``, the norms taken over every dim but dim 0; a
      tiny epsilon in the division (1e-10) is fine;
    - every 1-D tensor gets a zero direction (the reference code's ``ignore='biasbn'``).

    This is :func:`skiplab.landscape.random_direction` with ``normalisation="filter"``
    applied to a given raw direction (Li, Xu, Taylor, Studer & Goldstein 2018).

    Properties, in order, on two cases (hand-made parameters of seven kinds, conv, Conv1d,
    1x1 conv, Linear, BatchNorm and biases, whose filters differ in scale by up to 300
    times; the parameters of a tiny conv net with a Gaussian direction; ``hidden=True``
    adds other shapes in float64): it runs; it returns one tensor per parameter; the shapes
    and the dtypes match; the inputs are unchanged (neither the
    tensors nor the lists: diagnoses in-place ops and assigning into the caller's list);
    1-D parameters get a zero direction (diagnoses raw, normalised or weight-valued biases);
    each filter's norm equals the weights' filter norm (rtol 1e-4; diagnoses layer
    normalisation, unit norms, a missing division by ||d[i]||, squared norms, normalising
    across the filters (over dim 0) or per input channel); each filter is a positive
    multiple of the direction's filter (cosine >= 1 - 1e-5; diagnoses rescaling the weights
    instead of the direction, normalising over the last dim only or each kernel d[i, j] on
    its own, a flipped sign). The last two properties together determine the answer.
    """
    c = _Checker("filter normalisation")
    cases = [hand_made_case(), model_case()] + ([hidden_case()] if hidden else [])
    for name, params in cases:
        _check_case(c, fn, name, params)
    return c.report()


def _check_case(c: _Checker, fn: FilterNormalise, name: str,
                params: list[tuple[str, torch.Tensor, torch.Tensor]]) -> None:
    labels = [label for label, _, _ in params]
    direction = [d for _, d, _ in params]
    weights = [w for _, _, w in params]
    d_before = [d.clone() for d in direction]
    w_before = [w.clone() for w in weights]
    d_list, w_list = list(direction), list(weights)

    out = c.run(_P_RUNS, lambda: fn(d_list, w_list),
                f"fn(direction, weights) runs on {name} ({len(params)} tensors)",
                "loop over zip(direction, weights); for a tensor with d.dim() >= 2 take the "
                "filter norms with d.reshape(d.shape[0], -1).norm(dim=1) (this works for "
                "conv and Linear weights alike), for a 1-D tensor return torch.zeros_like(d)")
    c.ok(_P_RUNS)

    _check_list(c, out, params, name)
    outs: list[torch.Tensor] = list(out)

    for label, o, d in zip(labels, outs, d_before):
        c.require(tuple(o.shape) == tuple(d.shape), _P_SHAPES,
                  f"the output for the {label} has shape {tuple(d.shape)}",
                  f"shape {tuple(o.shape)}", _shape_hint(o, d))
    for label, o, d in zip(labels, outs, d_before):
        c.require(o.dtype == d.dtype, _P_DTYPES, f"the output for the {label} is {d.dtype}, "
                  "like the direction", f"{o.dtype}", "keep the direction's dtype: no .float(), "
                  ".double(), .half() on the way (the weights' norms are of the same dtype)")

    _check_inputs(c, out, d_list, w_list, direction, weights, d_before, w_before, labels)

    for label, o, d, w in zip(labels, outs, d_before, w_before):
        if d.dim() == 1:
            _check_zero(c, label, o, d, w)
    for label, o, d, w in zip(labels, outs, d_before, w_before):
        if d.dim() >= 2:
            _check_norms(c, label, o, d, w)
    for label, o, d, w in zip(labels, outs, d_before, w_before):
        if d.dim() >= 2:
            _check_alignment(c, label, o, d, w)


def _check_list(c: _Checker, out: Any, params: list[tuple[str, torch.Tensor, torch.Tensor]],
                name: str) -> None:
    n = len(params)
    expected = f"a list (or tuple) of {n} tensors for {name}, one per parameter"
    if not isinstance(out, (list, tuple)):
        hint = "return a list of tensors, e.g. out = [] ... out.append(...) ... return out"
        if out is None:
            hint = "fn returned None: did it miss a `return`? Return the new list of tensors"
        elif isinstance(out, torch.Tensor):
            hint = ("return one tensor per parameter in a list, not a single tensor "
                    "(no torch.cat or torch.stack)")
        elif isinstance(out, Iterator):
            hint = ("a generator is used up after one pass: return a list, "
                    "[... for d, w in zip(direction, weights)]")
        c.fail(_P_LIST, expected, f"a {type(out).__name__}", hint)
    if len(out) != n:
        n_1d = sum(d.dim() == 1 for _, d, _ in params)
        hint = "return exactly one tensor per parameter, in the order given"
        if len(out) == n - n_1d:
            hint = ("the 1-D parameters were dropped: keep one tensor per parameter, so the "
                    "direction lines up with model.parameters(), and return "
                    "torch.zeros_like(d) for each 1-D one")
        c.fail(_P_LIST, expected, f"{len(out)} items", hint)
    not_tensors = [type(o).__name__ for o in out if not isinstance(o, torch.Tensor)]
    c.require(not not_tensors, _P_LIST, expected,
              f"items that are not tensors: {', '.join(sorted(set(not_tensors)))}",
              "each item must be a torch.Tensor shaped like its parameter (no .item(), "
              "no .tolist(), no .numpy())")


def _shape_hint(o: torch.Tensor, d: torch.Tensor) -> str:
    if o.numel() == d.numel():
        return ("the output has the right entries but another shape: reshape it back with "
                ".view_as(d) or .reshape(d.shape) after working on d.reshape(d.shape[0], -1)")
    if d.dim() >= 2 and o.numel() == d.shape[0]:
        return ("this looks like the filter norms or scale factors themselves: multiply the "
                "direction by them, reshaped to broadcast, e.g. scale.reshape(-1, *[1] * "
                "(d.dim() - 1))")
    return "each output is the rescaled direction tensor: same shape as its parameter"


def _check_inputs(c: _Checker, out: Any, d_list: list[torch.Tensor],
                  w_list: list[torch.Tensor], direction: list[torch.Tensor],
                  weights: list[torch.Tensor], d_before: list[torch.Tensor],
                  w_before: list[torch.Tensor], labels: list[str]) -> None:
    expected = "the direction and weights passed in (the lists and their tensors) unchanged"
    for given, original, what in ((d_list, direction, "direction"), (w_list, weights, "weights")):
        replaced = (len(given) != len(original)
                    or any(a is not b for a, b in zip(given, original)))
        if replaced:
            same = " (you returned the very list passed in)" if out is given else ""
            c.fail(_P_INPUTS, expected,
                   f"items of the {what} list were replaced or removed{same}",
                   "build and return a new list, out = [], out.append(...); do not assign "
                   f"into the caller's list ({what}[k] = ...)")
    for tensors, before, what in ((direction, d_before, "direction"), (weights, w_before,
                                                                        "weights")):
        changed = [label for label, t, b in zip(labels, tensors, before) if not torch.equal(t, b)]
        if changed:
            if what == "direction":
                hint = ("the direction was modified in place (an in-place op such as mul_, "
                        "div_, zero_, *= or /= on d): work on a copy, d = d.clone(), or use "
                        "out-of-place ops, d * scale")
            else:
                hint = ("the weights were modified in place: they are the model's parameters "
                        "and must stay as they are; only read them (w.norm(...))")
            c.fail(_P_INPUTS, expected,
                   f"the {what} changed for: {', '.join(changed[:3])}"
                   f"{', ...' if len(changed) > 3 else ''}", hint)
    c.ok(_P_INPUTS)


def _check_zero(c: _Checker, label: str, o: torch.Tensor, d: torch.Tensor,
                w: torch.Tensor) -> None:
    if torch.all(o == 0):
        c.ok(_P_ZERO)
        return
    rule = ("biases and normalisation parameters get a zero direction (the reference code's "
            "ignore='biasbn'): return torch.zeros_like(d) for every 1-D tensor")
    measured = f"the output for the {label} is {fmt_values(_f64(o))}"
    if _near(o, d, 1e-6):
        measured += ", the direction left raw"
        hint = f"the 1-D direction was left raw, not set to zero; {rule}"
    elif _near(o, w, 1e-6):
        measured += ", the weights themselves"
        hint = ("the output is the weights, not a direction: start from direction[k], never "
                f"from weights[k]; and {rule}")
    elif abs(_f64(o).norm().item() - _f64(w).norm().item()) <= _NEAR * _f64(w).norm().item():
        measured += ", rescaled to the parameter's norm"
        hint = f"the 1-D direction was normalised like a weight instead of zeroed; {rule}"
    else:
        hint = rule
    c.fail(_P_ZERO, f"the output for the {label} is all zeros", measured, hint)


def _check_norms(c: _Checker, label: str, o: torch.Tensor, d: torch.Tensor,
                 w: torch.Tensor) -> None:
    on, wn = _filter_norms(o), _filter_norms(w)
    ok = bool(torch.isfinite(on).all()) and bool(
        torch.all((on - wn).abs() <= _RTOL * wn + 1e-12))
    if ok:
        c.ok(_P_NORMS)
        return
    measured, hint = _diagnose_norms(o, d, w)
    c.fail(_P_NORMS, f"||d'[i]|| = ||w[i]|| for every filter of the {label} (rtol {_RTOL:g}): "
           f"{fmt_values(wn)}", f"filter norms {fmt_values(on)}{measured}", hint)


def _reduced_norms(t: torch.Tensor, keep: int) -> torch.Tensor:
    """The norm of each slice along dim ``keep``, over every other dim."""
    t = _f64(t).movedim(keep, 0)
    return t.reshape(t.shape[0], -1).norm(dim=1)


def _kernel_norms(t: torch.Tensor) -> torch.Tensor:
    """The norm of each kernel t[i, j], over dims 2..: (out, in)."""
    t = _f64(t)
    return t.reshape(t.shape[0], t.shape[1], -1).norm(dim=2)


def _diagnose_norms(o: torch.Tensor, d: torch.Tensor, w: torch.Tensor) -> tuple[str, str]:
    """(a measured clause, hint) for an output whose filter norms are not the weights'."""
    o64, d64, w64 = _f64(o), _f64(d), _f64(w)
    on, wn, dn = _filter_norms(o), _filter_norms(w), _filter_norms(d)
    if not torch.isfinite(o64).all():
        return (" (NaN or inf entries)",
                ("a division by a zero norm? Divide by the direction filter's norm, "
                 "||d[i]||, plus a tiny epsilon (1e-10), not by ||w[i]||"))
    if _near(o64, d64, 1e-6):
        return ", the direction unchanged", f"the direction was returned as drawn: {_FORMULA}"
    if _near(on, torch.ones_like(on)):
        return (", all 1",
                ("the filters have unit norm: after dividing d[i] by ||d[i]||, multiply by "
                 "the norm of the weights' filter, ||w[i]||"))
    if _near(on, wn * dn):
        return (", ||w[i]|| * ||d[i]||",
                ("forgot to divide by the direction filter's norm: d[i] * ||w[i]|| has norm "
                 f"||w[i]|| * ||d[i]||; {_FORMULA}"))
    if _near(on, wn ** 2 / dn):
        return (", ||w[i]||² / ||d[i]||",
                ("squared norms (sums of squares) were used: take the norm itself, .norm() "
                 "or (x ** 2).sum().sqrt()"))
    if _near(o64.norm(dim=0), w64.norm(dim=0)):
        return (" (the norms over dim 0 match the weights': columns were normalised)",
                (f"{_WRONG_AXIS}; you normalised across the filters (over dim 0, the columns "
                 "of a Linear weight)"))
    if d.dim() > 2 and _near(_reduced_norms(o, 1), _reduced_norms(w, 1)):
        return (" (the slices along dim 1 match the weights')",
                f"{_WRONG_AXIS}; you normalised each input channel (slices along dim 1)")
    if _near(o64.norm(), w64.norm()):
        return (f" (the whole tensor's norm {o64.norm().item():.3g} matches the weights')",
                ("the whole tensor was normalised (layer normalisation, ||d|| -> ||w||): "
                 f"filter normalisation rescales each filter on its own, {_FORMULA}"))
    if _near(on, dn):
        return (", the direction's own filter norms ||d[i]||",
                f"the filters kept the direction's norms: d and w swapped? {_FORMULA}")
    ratio = on / wn
    if _near(ratio, torch.full_like(ratio, ratio.mean().item())):
        return (f", {ratio.mean().item():.3g} times ||w[i]|| for every filter",
                f"the norms are off by a constant factor: {_FORMULA}, with no extra factor")
    return "", _FORMULA


def _check_alignment(c: _Checker, label: str, o: torch.Tensor, d: torch.Tensor,
                     w: torch.Tensor) -> None:
    cos = _cosines(o, d)
    worst = int(cos.argmin())
    if cos[worst].item() >= 1 - _COS_TOL:
        c.ok(_P_ALIGN)
        return
    measured = f"cosine {cos[worst].item():.3g} between d'[{worst}] and d[{worst}]"
    hint = ("rescale each filter by one positive number, d'[i] = s_i * d[i] with s_i = "
            "||w[i]|| / ||d[i]||; do not rescale entries separately")
    if bool(torch.all(_cosines(o, w) >= 1 - _COS_TOL)):
        measured += " (the output points along the weights' filters)"
        hint = ("the weights' filters were rescaled instead of the direction's: the output "
                "must point along direction[k], "
                "d[i] * ||w[i]|| / ||d[i]||, not w[i] * ...")
    elif d.dim() > 2 and _near(_f64(o).norm(dim=-1), _f64(w).norm(dim=-1)):
        measured += " (the norms over the last dim match the weights')"
        hint = (f"{_WRONG_AXIS}; you normalised over the last dim only, so each row of the "
                "kernel got its own scale: rescale the whole filter (in channels and kernel "
                "together) by one number")
    elif d.dim() > 2 and _near(_kernel_norms(o), _kernel_norms(w)):
        measured += " (each kernel d[i, j] has the weights' kernel norm)"
        hint = (f"{_WRONG_AXIS}; you normalised each kernel d[i, j] (dims 2..) on its own: "
                "rescale the whole filter d[i], input channels included, by one number")
    elif bool(torch.all(cos <= -1 + _COS_TOL)):
        measured += " (every filter flipped)"
        hint = ("the sign flipped: norms are positive, so d'[i] = d[i] * ||w[i]|| / ||d[i]|| "
                "keeps the direction of d[i]")
    c.fail(_P_ALIGN, f"every filter of the output for the {label} points along d[i] "
           f"(cosine >= 1 - {_COS_TOL:g})", measured, hint)
