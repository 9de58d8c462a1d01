"""Checkers for the symmetry exercises: a permutation of hidden units that keeps a plain
net's function, and the proof by code that the same permutation changes its residual
twin's function.
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..models.mlp import DeepMLP, MLPConfig
from ..probes.symmetry import permute_units_
from .core import Checker, guarded
from .core import PropertyChecker as _Checker
from .core import max_diff as _max_diff
from .core import seeded as _seeded

__all__ = ["PERMUTATION", "check_function_change", "check_permutation",
           "permutation_test_model", "skip_net_changes"]


def _same_params(a: nn.Module, b: nn.Module, atol: float = 1e-6) -> bool:
    """Same parameter shapes, dtypes and values (within atol)."""
    pa, pb = list(a.parameters()), list(b.parameters())
    return len(pa) == len(pb) and all(
        x.shape == y.shape and x.dtype == y.dtype
        and bool((x.detach().double() - y.detach().double()).abs().max() <= atol)
        for x, y in zip(pa, pb))


#: The permutation the checker applies (width 8): no fixed points and not its own inverse,
#: so using the inverse for the next layer's columns is caught.
PERMUTATION: tuple[int, ...] = (3, 0, 6, 1, 7, 2, 4, 5)

_PERM_CONFIG = dict(in_features=5, n_classes=3, depth=5, width=8, activation="tanh")

#: The hidden check's model (width 11, depth 6) and its permutation, again with no fixed
#: point and not its own inverse.
_HIDDEN_PERMUTATION: tuple[int, ...] = (4, 7, 0, 10, 2, 9, 1, 3, 5, 6, 8)
_HIDDEN_CONFIG = dict(in_features=7, n_classes=4, depth=6, width=11, activation="tanh")


def permutation_test_model(architecture: str = "plain", seed: int = 0, *,
                           hidden: bool = False) -> DeepMLP:
    """The tiny MLP the permutation check uses: 5 inputs, 4 hidden layers of width 8 (tanh),
    3 outputs, (B, 5) -> (B, 3), with random non-zero biases (so a forgotten bias shows).
    ``hidden=True``: the hidden check's model, 7 inputs, 5 hidden layers of width 11."""
    config = _HIDDEN_CONFIG if hidden else _PERM_CONFIG
    with _seeded(seed):
        model = DeepMLP(MLPConfig(**config, architecture=architecture))
        with torch.no_grad():
            for layer in model.weight_layers():
                layer.bias.normal_(0.0, 0.5)
    return model.eval()


def _permuted(model: DeepMLP, k: int, perm: torch.Tensor, *, rows: bool = True,
              bias: bool = True, cols: str | None = "next",
              col_perm: torch.Tensor | None = None) -> DeepMLP:
    """A copy of model with (some of) the permutation of hidden layer k applied."""
    m = copy.deepcopy(model)
    incoming, outgoing = m.weight_layers()[k], m.weight_layers()[k + 1]
    col_perm = perm if col_perm is None else col_perm
    with torch.no_grad():
        if rows:
            incoming.weight.copy_(incoming.weight[perm])
        if bias:
            incoming.bias.copy_(incoming.bias[perm])
        if cols == "next":
            outgoing.weight.copy_(outgoing.weight[:, col_perm])
        elif cols == "same":
            incoming.weight.copy_(incoming.weight[:, col_perm])
    return m


def _reference_permuted(model: DeepMLP, k: int, perm: torch.Tensor) -> DeepMLP:
    m = copy.deepcopy(model)
    permute_units_(m.weight_layers()[k], m.weight_layers()[k + 1], perm)
    return m


def skip_net_changes(permute_fn: Callable[[nn.Module, int, torch.Tensor], Any], *,
                     layer_index: int = 1, seed: int = 0) -> float:
    """How much a residual MLP's function changes under ``permute_fn`` ("proof by code").

    Builds the residual twin of the permutation check's plain MLP (same shapes; each hidden
    block computes h' = h + act(W h + b)), applies ``permute_fn(model, layer_index, perm)``
    with :data:`PERMUTATION` and returns max |f_before(x) - f_after(x)| over a batch x of
    shape (32, 5). In a plain net the same operation leaves the function unchanged; here the
    skip adds unit i of the stream to unit i of the branch, so reordering only the branch's
    units breaks that pairing and the function changes (the result is far above 1e-3).
    """
    model = permutation_test_model("residual", seed)
    with _seeded(seed + 1):
        x = torch.randn(32, _PERM_CONFIG["in_features"])
    with torch.no_grad():
        before = model(x)
    permute_fn(model, layer_index, torch.tensor(PERMUTATION))
    with torch.no_grad():
        return _max_diff(model(x), before)


@guarded("permutation symmetry")
def check_permutation(permute_fn: Callable[[nn.Module, int, torch.Tensor], Any], *,
                      hidden: bool = False) -> str:
    """Check a student's in-place permutation of hidden units.

    The exercise: ``permute_fn(model, layer_index, perm)`` reorders, in place, the units of
    hidden layer ``layer_index`` of ``model`` so that afterwards unit k is the old unit
    ``perm[k]``: new W[k] = old W[perm[k]] (like :func:`skiplab.probes.permute_units_`).

    - ``model``: a plain :class:`skiplab.models.DeepMLP`, (B, in_features) -> (B, classes).
      Its Linear layers, input to output, are ``model.weight_layers()``; hidden layer k
      (0-based, 0 <= k <= depth - 2) is computed by ``weight_layers()[k]`` (weight (n, d_in),
      bias (n,)) and read by ``weight_layers()[k + 1]`` (weight (d_out, n)).
    - ``perm``: (n,) long tensor, a permutation of range(n).
    - The function permutes the rows and the bias of layer k (``W[perm]``, ``b[perm]``) and
      the columns of layer k + 1 (``W_next[:, perm]``), under ``torch.no_grad()``; it
      returns nothing.

    Properties (width 8, tanh, random biases, a permutation with no fixed points that is not
    its own inverse; ``hidden=True`` adds a width-11 net of depth 6): the parameters keep
    their shapes and dtypes; the function is unchanged (max difference < 1e-5); the
    parameters changed; the result is the one for the given ``perm`` (same as
    ``permute_units_``), for the first, a middle and the last hidden layer; and, applied to
    the residual twin of the model, the function changes by more than 1e-3
    (:func:`skip_net_changes`).
    """
    c = _Checker("permutation symmetry")
    cases = [(permutation_test_model("plain"), PERMUTATION, 32)]
    if hidden:
        cases.append((permutation_test_model("plain", 3, hidden=True), _HIDDEN_PERMUTATION, 9))
    for model, permutation, batch in cases:
        perm = torch.tensor(permutation)
        with _seeded(1):
            x = torch.randn(batch, model.config.in_features)
        n_hidden = model.config.depth - 1
        for k in (1, 0, n_hidden - 1):
            _check_layer(c, permute_fn, model, x, k, perm)

    prop = "the skip net changes"
    change = c.run(prop, lambda: skip_net_changes(permute_fn),
                   "permute_fn works on the residual twin of the model",
                   "use model.weight_layers() to find the layers: the residual DeepMLP has "
                   "them too")
    c.require(change > 1e-3, prop,
              "the same permutation changes a residual MLP's function (by more than 1e-3)",
              f"max change {change:.3g}",
              "permute only layer k's rows and bias and layer k + 1's columns, as in the "
              "plain net")
    return c.report()


def _check_layer(c: Checker, permute_fn: Callable[[nn.Module, int, torch.Tensor], Any],
                 model: DeepMLP, x: torch.Tensor, k: int, perm: torch.Tensor) -> None:
    """Permute hidden layer k of a copy of model and compare with the reference."""
    student = copy.deepcopy(model)
    returned = c.run("runs without error",
                     lambda: permute_fn(student, k, perm.clone()),
                     f"permute_fn(model, {k}, perm) runs",
                     "layer k's units are the rows of model.weight_layers()[k] and the "
                     "columns of model.weight_layers()[k + 1]; edit the weights under "
                     "torch.no_grad()")
    c.ok("runs without error")
    changed = [name for (name, p), q in zip(student.named_parameters(), model.parameters())
               if p.dtype != q.dtype or p.shape != q.shape]
    if changed or len(list(student.parameters())) != len(list(model.parameters())):
        c.fail("parameters keep their shape and dtype", "the same parameters, reordered",
               f"changed: {', '.join(changed[:3]) or 'the list of parameters'}",
               "reorder the values in place, layer.weight.copy_(layer.weight[perm]); no "
               ".half(), .double() or new parameters")
    c.ok("parameters keep their shape and dtype")
    with torch.no_grad():
        diff = _max_diff(c.run("same function", lambda: student(x), "the permuted net runs",
                               "reorder rows and columns, keep the shapes"), model(x))
    if diff >= 1e-5:
        c.fail("same function", f"the plain net computes the same function after "
               f"permuting hidden layer {k} (max difference < 1e-5)",
               f"max difference {diff:.3g}", _diagnose_permutation(student, model, k, perm))
    c.ok("same function")
    if _same_params(student, model, atol=0.0):
        hint = ("nothing changed: edit the layers in place, e.g. with torch.no_grad(): "
                "layer.weight.copy_(layer.weight[perm]); assigning to a local variable "
                "does not change the model")
        if isinstance(returned, nn.Module):
            hint = ("the model passed in is unchanged and you returned a module: permute "
                    "the given model in place instead of building a new one")
        c.fail("parameters changed", f"the weights of hidden layer {k} are reordered",
               "every parameter is as before", hint)
    c.ok("parameters changed")
    reference = _reference_permuted(model, k, perm)
    if not _same_params(student, reference):
        c.fail("the given permutation", "the same weights as permute_units_ with this "
               f"perm (hidden layer {k})", "the function is unchanged but the weights are "
               f"reordered differently ({_changed_layers(student, model)})",
               _diagnose_convention(student, model, k, perm))
    c.ok("the given permutation")


def _changed_layers(student: DeepMLP, model: DeepMLP) -> str:
    changed = [i for i, (a, b) in enumerate(zip(student.weight_layers(), model.weight_layers()))
               if not _same_params(a, b, atol=0.0)]
    return f"changed weight layers: {changed}" if changed else "no layer changed"


def _diagnose_permutation(student: DeepMLP, model: DeepMLP, k: int,
                          perm: torch.Tensor) -> str:
    """Hint for a permutation that changed the plain net's function."""
    rows = student.weight_layers()[k].weight.detach()
    cols = student.weight_layers()[k + 1].weight.detach().T
    if any(torch.unique(m, dim=0).shape[0] < m.shape[0] for m in (rows, cols)):
        return ("some rows or columns now appear twice: a loop such as W[j] = W[perm[j]] "
                "overwrites rows it still has to read. Index all at once, "
                "W.copy_(W[perm]) (W[perm] is a copy), and likewise b and W_next[:, perm]")
    inverse = torch.argsort(perm)
    square = model.weight_layers()[k].weight.shape[1] == perm.numel()
    candidates = [
        (dict(cols=None), "only the rows (and bias) of layer k were permuted: also permute the "
         "columns of the next layer, which reads these units, W_next[:, perm]"),
        (dict(bias=False), "the bias was not permuted: move it with its rows, b[perm]"),
        (dict(col_perm=inverse), "the next layer's columns got the inverse permutation: use "
         "the same perm for the rows and for the next layer's columns, W_next[:, perm]"),
        (dict(rows=False, bias=False), "only the next layer's columns were permuted: also "
         "permute layer k's rows and bias, W[perm], b[perm]"),
    ]
    if square:
        candidates.append((dict(cols="same"), "the columns of layer k itself were permuted: "
                           "the columns to permute belong to the next layer, "
                           "weight_layers()[k + 1]"))
    for kwargs, hint in candidates:
        if _same_params(student, _permuted(model, k, perm, **kwargs)):
            return hint
    return (f"permute together the rows and bias of weight_layers()[{k}] and the columns of "
            f"weight_layers()[{k + 1}], with the same perm; {_changed_layers(student, model)}")


def _diagnose_convention(student: DeepMLP, model: DeepMLP, k: int, perm: torch.Tensor) -> str:
    """Hint for a function-preserving permutation that is not the one given."""
    if _same_params(student, _reference_permuted(model, k, torch.argsort(perm))):
        return ("you applied the inverse permutation: afterwards unit j must be the old unit "
                "perm[j], new W[j] = old W[perm[j]], i.e. W[perm] (not W_new[perm] = W)")
    layers = [i for i, (a, b) in enumerate(zip(student.weight_layers(), model.weight_layers()))
              if not _same_params(a, b, atol=0.0)]
    if layers and layers != [k, k + 1]:
        return (f"hidden layer {k} is computed by weight_layers()[{k}] and read by "
                f"weight_layers()[{k + 1}]; check the layer index")
    return "reorder with exactly the given perm: W[perm], b[perm], W_next[:, perm]"


def _reference_permute_fn(model: nn.Module, k: int, perm: torch.Tensor) -> None:
    layers = model.weight_layers()
    permute_units_(layers[k], layers[k + 1], perm)


def _as_number(c: Checker, value: Any) -> float:
    """A real number: a Python int or float, a NumPy scalar or a one-element float tensor."""
    prop = "runs and returns a number"
    if isinstance(value, torch.Tensor) and value.numel() == 1 and value.is_floating_point():
        return float(value.detach())
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    shown = (f"a {value.dtype} tensor of shape {tuple(value.shape)}"
             if isinstance(value, torch.Tensor) else f"a {type(value).__name__}")
    hint = "return a number, e.g. (f_before - f_after).abs().max().item()"
    if isinstance(value, str):
        hint = "return the number itself, not a string: (a - b).abs().max().item()"
    elif value is None:
        hint = "the function returned None: did it miss a `return`? " + hint
    c.fail(prop, "a float, the largest absolute difference", f"returned {shown}", hint)
    raise AssertionError("unreachable")  # pragma: no cover


@guarded("function change")
def check_function_change(fn: Callable[..., Any], *, hidden: bool = False) -> str:
    """Check a student's measure of how much a permutation changes a network's function.

    The exercise: ``fn(model, permute_fn, layer_index, perm, x)`` applies
    ``permute_fn(copy, layer_index, perm)`` to a deep copy of ``model`` (``model`` itself is
    left untouched) and returns the largest absolute difference between the two networks'
    outputs on ``x`` (B, in_features): max |f(x) - f'(x)|, a float (a 0-dim tensor is
    accepted). With it, the proof by code is two numbers: about 0 for a plain net, clearly
    above 0 for its residual twin.

    Properties (the permutation check's width-8 tanh MLPs, the checker's own correct
    ``permute_fn``; ``hidden=True`` adds the width-11 pair): runs and returns a real number
    (a string or an integer tensor fails); uses the ``permute_fn``, ``layer_index`` and
    ``perm`` it is given; leaves ``model`` unchanged; gives < 1e-5 on the plain net; gives
    the largest absolute output difference on the residual twin (rtol 1e-4; diagnoses a copy
    compared with itself, a mean or a sum instead of the maximum, a signed maximum).
    """
    c = _Checker("function change")
    cases = [(False, PERMUTATION, 32, (2, 3))]
    if hidden:
        cases.append((True, _HIDDEN_PERMUTATION, 9, (1, 4)))
    for is_hidden, permutation, batch, layers in cases:
        plain = permutation_test_model("plain", 3 if is_hidden else 0, hidden=is_hidden)
        residual = permutation_test_model("residual", 3 if is_hidden else 0, hidden=is_hidden)
        with _seeded(1):
            x = torch.randn(batch, plain.config.in_features)
        _check_change(c, fn, plain, residual, torch.tensor(permutation), x, layers)
    return c.report()


def _check_change(c: Checker, fn: Callable[..., Any], plain: DeepMLP, residual: DeepMLP,
                  perm: torch.Tensor, x: torch.Tensor, layers: tuple[int, ...]) -> None:
    calls: list[tuple[int, bool]] = []

    def spy(model: nn.Module, k: int, p: torch.Tensor) -> None:
        calls.append((k, torch.equal(torch.as_tensor(p), perm)))
        _reference_permute_fn(model, k, p)

    def measure(model: DeepMLP, k: int) -> float:
        calls.clear()
        value = c.run("runs and returns a number", lambda: fn(model, spy, k, perm.clone(), x),
                      "fn(model, permute_fn, layer_index, perm, x) runs",
                      "copy the model (copy.deepcopy), call permute_fn(copy, layer_index, perm) "
                      "and compare the two outputs on x")
        number = _as_number(c, value)
        c.ok("runs and returns a number")
        c.require(calls == [(k, True)], "uses the given permute_fn",
                  f"permute_fn called once, with layer_index {k} and the given perm",
                  f"calls (layer_index, same perm): {calls}",
                  "apply the permute_fn argument to the copy, passing layer_index and perm on; "
                  "do not write the permutation again inside this function")
        return number

    before = copy.deepcopy(plain)
    plain_change = measure(plain, 1)
    c.require(_same_params(plain, before, atol=0.0), "model left unchanged",
              "the model passed in is not modified", "its weights were permuted",
              "permute a copy: twin = copy.deepcopy(model); permute_fn(twin, layer_index, perm)")
    c.require(abs(plain_change) < 1e-5, "about 0 for a plain net",
              "the plain net's function does not change (< 1e-5)", f"{plain_change:.3g}",
              "compare model(x) with the permuted copy's output, both under torch.no_grad()")

    # Two layers: on hidden layer 2 the largest |difference| is positive, on layer 3 negative,
    # so a signed maximum fails one of them, whichever order the outputs are subtracted in.
    for k in layers:
        reference_model = copy.deepcopy(residual)
        _reference_permute_fn(reference_model, k, perm)
        with torch.no_grad():
            difference = residual(x).double() - reference_model(x).double()
        want = difference.abs().max().item()
        got = measure(residual, k)
        if abs(got - want) <= 1e-4 * want + 1e-7:
            continue
        candidates = [
            (0.0, "both outputs come from the same network: compute f(x) with the original "
                  "model and f'(x) with the permuted copy (permuting in place and comparing "
                  "the model with itself gives 0)"),
            (difference.abs().mean().item(), "that is the mean absolute difference: the "
                                             "exercise asks for the largest, .abs().max()"),
            (difference.abs().sum().item(), "that is the sum of absolute differences: take "
                                            "the largest, .abs().max()"),
            (difference.max().item(), "take the absolute value before the maximum: "
                                      "(a - b).abs().max()"),
            ((-difference).max().item(), "take the absolute value before the maximum: "
                                         "(a - b).abs().max()"),
        ]
        hint = next((h for value, h in candidates
                     if abs(got - value) <= 1e-4 * abs(value) + 1e-7),
                    "return max |model(x) - permuted_copy(x)| over every output entry")
        c.fail("largest output difference", f"on the residual twin (hidden layer {k}): "
               f"{want:.6g}", f"{got:.6g}", hint)
    c.ok("largest output difference")
