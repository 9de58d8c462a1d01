"""Checkers for four model exercises: a gradient probe, a pre-norm transformer block, a gated
(ReZero-style) head and the permutation symmetry of hidden units.

Each ``check_*`` function takes the student's code, runs it on tiny models (CPU, a few
thousand parameters) and returns a short report, or raises :class:`CheckFailed` naming the
property that broke, what was expected, what was measured and a hint at the likely mistake.
The checkers leave the global random state as they found it.

The exercise contracts (what the student writes) are in each checker's docstring.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..models.mlp import DeepMLP, MLPConfig
from ..probes.gradients import layer_grad_norms
from ..probes.symmetry import permute_units_
from .core import Checker, CheckFailed, gradients_reach
from .core import PropertyChecker as _Checker
from .core import max_diff as _max_diff
from .core import seeded as _seeded

__all__ = [
    "PERMUTATION",
    "check_function_change",
    "check_gated_head",
    "check_gradient_probe",
    "check_permutation",
    "check_prenorm_block",
    "permutation_test_model",
    "skip_net_changes",
]





def _same_params(a: nn.Module, b: nn.Module, atol: float = 1e-6) -> bool:
    pa, pb = list(a.parameters()), list(b.parameters())
    return len(pa) == len(pb) and all(
        x.shape == y.shape and torch.allclose(x, y, rtol=0, atol=atol) for x, y in zip(pa, pb))


# --------------------------------------------------------------------------------------------
# 1. Gradient probe
# --------------------------------------------------------------------------------------------

_PROBE_BATCH = 12  # not 1: a summed loss then shows up as values 12 times too large


def _probe_cases() -> list[tuple[str, DeepMLP, torch.Tensor, torch.Tensor]]:
    """(name, model, x (B, in), y (B,)) for the gradient-probe check, small and seeded."""
    specs = [
        ("plain sigmoid MLP, depth 6",
         MLPConfig(8, 3, depth=6, width=10, activation="sigmoid", architecture="plain")),
        ("residual sigmoid MLP, depth 6",
         MLPConfig(8, 3, depth=6, width=10, activation="sigmoid", architecture="residual")),
        ("plain tanh MLP, depth 4",
         MLPConfig(8, 4, depth=4, width=7, activation="tanh", init="xavier")),
    ]
    cases = []
    for i, (name, config) in enumerate(specs):
        with _seeded(100 + i):
            model = DeepMLP(config)
            x = torch.randn(_PROBE_BATCH, config.in_features)
            y = torch.randint(0, config.n_classes, (_PROBE_BATCH,))
        cases.append((name, model, x, y))
    return cases


def _as_floats(values: Any) -> list[float]:
    if torch.is_tensor(values):
        values = values.detach().reshape(-1).tolist()
    return [float(v) for v in values]


def _close(a: Sequence[float], b: Sequence[float], rtol: float = 1e-4) -> bool:
    ta, tb = torch.tensor(list(a), dtype=torch.float64), torch.tensor(list(b), dtype=torch.float64)
    return ta.shape == tb.shape and torch.allclose(ta, tb, rtol=rtol, atol=1e-12)


def _fmt(values: Sequence[float], n: int = 4) -> str:
    shown = ", ".join(f"{v:.3g}" for v in list(values)[:n])
    return f"[{shown}{', ...' if len(values) > n else ''}]"


def check_gradient_probe(fn: Callable[[nn.Module, torch.Tensor, torch.Tensor], Sequence[float]]
                         ) -> str:
    """Check a student's gradient probe against :func:`skiplab.probes.layer_grad_norms`.

    The exercise: write ``fn(model, x, y)`` that returns, for each ``nn.Linear`` layer of the
    MLP, input layer first, the L2 norm of dL/dW of its **weight** (not its bias), where
    L = mean cross-entropy of ``model(x)`` against ``y`` on this one batch.

    Args:
        fn: the student's function. ``model`` is a :class:`skiplab.models.DeepMLP` (its
            Linear layers, input to output, are ``model.weight_layers()``, also the order of
            ``model.modules()``); ``x`` is (B, in_features) float, ``y`` is (B,) class
            indices. It returns a sequence of floats (a list, or a 1-D tensor), one per layer.

    Properties, on three small MLPs (plain and residual sigmoid nets of depth 6, a tanh net):
    it runs; one value per weight layer; the weights are unchanged; input layer first; the
    values match the reference (rtol 1e-4); the result does not depend on gradients left
    over in ``.grad`` (called twice, and called on a model whose ``.grad`` holds garbage).
    The checker does not require ``.grad`` to be left untouched: ``model.zero_grad()`` then
    ``loss.backward()`` is a valid solution.
    """
    c = _Checker("gradient probe")
    run_hint = ("fn(model, x, y) should compute loss = F.cross_entropy(model(x), y), get the "
                "gradients of the Linear weights and return their norms")
    prop_one = "one value per weight layer"
    for name, model, x, y in _probe_cases():
        depth = model.config.depth
        weights = [layer.weight for layer in model.weight_layers()]
        reference = layer_grad_norms(copy.deepcopy(model), x, y).tolist()
        before = [w.detach().clone() for w in weights]

        out = c.run("runs without error", lambda: fn(model, x, y),
                    f"fn(model, x, y) returns the norms for the {name}", run_hint)
        c.ok("runs without error")
        values = c.run("returns numbers", lambda: _as_floats(out),
                       "a sequence of floats or a 1-D tensor", "return e.g. a list of "
                       "g.norm().item() values, or torch.stack([...]) of the norms")
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

        if not _close(values, reference) and _close(values, reference[::-1]):
            c.fail("input layer first", f"input layer first: {_fmt(reference)}",
                   f"{_fmt(values)} (the reference reversed)",
                   "the values are in reverse order: start with the layer nearest the input")
        c.ok("input layer first")

        if not _close(values, reference):
            measured, hint = _diagnose_probe(values, reference, weights)
            c.fail("matches layer_grad_norms", f"{_fmt(reference)} for the {name}",
                   measured, hint)
        c.ok("matches layer_grad_norms")

    # Leftover gradients: call twice on a fresh model, then on one whose .grad holds garbage.
    prop = "no leftover gradients"
    name, model, x, y = _probe_cases()[0]
    reference = layer_grad_norms(copy.deepcopy(model), x, y).tolist()
    hint = ("call model.zero_grad() before loss.backward(), or use torch.autograd.grad(loss, "
            "weights), which does not read or write .grad")
    first = _as_floats(c.run(prop, lambda: fn(model, x, y), "a first call works", run_hint))
    second = _as_floats(c.run(prop, lambda: fn(model, x, y), "a second call works", run_hint))
    if not _close(second, first):
        ratio = torch.tensor(second, dtype=torch.float64) / torch.tensor(first, dtype=torch.float64)
        c.fail(prop, "calling fn twice on the same batch gives the same values",
               f"the second call gave {_fmt(second)}, {ratio.mean().item():.2f} times the first",
               "gradients pile up in .grad across calls: " + hint)
    with torch.no_grad():
        for p in model.parameters():
            p.grad = torch.randn_like(p) * 10
    third = _as_floats(c.run(prop, lambda: fn(model, x, y), "a call works", run_hint))
    c.require(_close(third, reference), prop,
              f"{_fmt(reference)} even when .grad already holds old gradients",
              f"{_fmt(third)} when .grad held old values",
              "the result depends on what was in .grad before: " + hint)
    return c.report()


def _diagnose_probe(values: list[float], reference: list[float],
                    weights: list[torch.Tensor]) -> tuple[str, str]:
    """(measured, hint) for values that do not match the reference norms."""
    weight_norms = [w.detach().double().norm().item() for w in weights]
    if _close(values, weight_norms):
        return (f"{_fmt(values)}, the norms of the weights themselves",
                "take the norm of the gradient dL/dW (weight.grad, or torch.autograd.grad), "
                "not of the weight")
    if _close(values, [r * r for r in reference]):
        return (f"{_fmt(values)}, the squares of the expected norms",
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
    return (f"{_fmt(values)} (largest relative error {worst:.2g})",
            "use L = F.cross_entropy(model(x), y) on the given batch and the gradient of each "
            "Linear layer's weight, input layer first")


# --------------------------------------------------------------------------------------------
# 2. Pre-norm transformer block
# --------------------------------------------------------------------------------------------

_D_MODEL, _N_HEADS, _LENGTH = 16, 4, 6


def _causal_mask(length: int) -> torch.Tensor:
    """(T, T) bool, True above the diagonal: True = may NOT attend (nn.MultiheadAttention)."""
    return torch.ones(length, length, dtype=torch.bool).triu(1)


def _last_linear(module: nn.Module) -> nn.Linear | None:
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


@torch.no_grad()
def _switch_off_(block: nn.Module, *, attn: bool = True, ffn: bool = True) -> None:
    """Zero the attention's out_proj and the FFN's last Linear (weights and biases)."""
    layers = ([block.attn.out_proj] if attn else []) + ([_last_linear(block.ffn)] if ffn else [])
    for layer in layers:
        layer.weight.zero_()
        if layer.bias is not None:
            layer.bias.zero_()


def _prenorm_formula(block: nn.Module, x: torch.Tensor, causal: bool) -> torch.Tensor:
    """x + attn(norm1(x)), then + ffn(norm2(.)), built from the block's own sub-layers."""
    mask = _causal_mask(x.shape[1]) if causal else None
    h = block.norm1(x)
    x = x + block.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
    return x + block.ffn(block.norm2(x))


def check_prenorm_block(block_cls: Callable[[int, int], nn.Module]) -> str:
    """Check a student's pre-norm transformer encoder block.

    The exercise provides the sub-layers; the student stores them under these names and
    writes ``forward``::

        class PreNormBlock(nn.Module):
            def __init__(self, d_model: int, n_heads: int):
                super().__init__()
                self.attn = nn.MultiheadAttention(d_model, n_heads, batch_first=True)
                self.ffn = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.ReLU(),
                                         nn.Linear(4 * d_model, d_model))
                self.norm1 = nn.LayerNorm(d_model)
                self.norm2 = nn.LayerNorm(d_model)

            def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
                ...   # x (B, T, D) -> (B, T, D)

    Contract: x = x + attn(norm1(x)) (self-attention: query = key = value = norm1(x)), with
    a causal mask when ``causal=True`` (query t sees keys 0..t; a bool ``attn_mask`` marks
    with True what may NOT be attended, e.g. ``torch.ones(T, T, dtype=torch.bool).triu(1)``;
    ``is_causal=True`` alone is only a hint to PyTorch), then x = x + ffn(norm2(x)). The
    checker switches a branch off by zeroing ``attn.out_proj`` and the last ``nn.Linear`` in
    ``ffn`` (weights and biases), so the block must use these very sub-layers.

    Properties (d_model 16, 4 heads, T = 6, eval mode): builds with the sub-layers; forward
    runs (diagnoses adding attn's (output, weights) tuple); the input is left unchanged
    (diagnoses ``x += ...``); shape; identity with both branches off (diagnoses post-norm, a
    LayerNorm on the stream after the addition, and a missing skip); causal mode hides later
    tokens and sees earlier ones (diagnoses an ignored, a reversed, an off-by-one mask and a
    masked diagonal); non-causal mode sees every token; gradients
    reach every parameter and the input; the output matches the formula above computed from
    the block's own sub-layers (with random LayerNorm parameters).
    """
    c = _Checker("pre-norm block")
    D, H, T = _D_MODEL, _N_HEADS, _LENGTH
    with _seeded(0):
        block = c.run("builds", lambda: block_cls(D, H), f"block_cls({D}, {H}) builds a block",
                      "the constructor takes (d_model, n_heads) and creates attn, ffn, norm1 "
                      "and norm2")
        _check_sublayers(c, block)
        block.eval()
        x = torch.randn(2, T, D) * 2 + 0.5

        def forward(b: nn.Module, inp: torch.Tensor, causal: bool, prop: str) -> torch.Tensor:
            before = inp.detach().clone()
            try:
                out = b(inp, causal=causal)
            except CheckFailed:
                raise
            except Exception as error:  # any crash in student code is reported
                hint = ("forward(x, causal) should return x + attn(...) then + ffn(...); for "
                        "the causal mask pass attn_mask=torch.ones(T, T, dtype=torch.bool)"
                        ".triu(1) (is_causal=True alone raises in nn.MultiheadAttention)")
                if isinstance(error, TypeError) and "tuple" in str(error):
                    hint = ("nn.MultiheadAttention returns a tuple (output, weights): add "
                            "self.attn(...)[0] to the stream")
                c.fail("forward runs", f"block(x, causal={causal}) runs on x of shape "
                       f"{tuple(inp.shape)}", f"{type(error).__name__}: {error}", hint)
            c.ok("forward runs")
            if not torch.equal(inp.detach(), before):
                c.fail("input left unchanged", "block(x) leaves the caller's x as it was",
                       "x was modified in place",
                       "x += ... changes the tensor the caller passed in: write x = x + ...")
            c.ok("input left unchanged")
            if not torch.is_tensor(out):
                c.fail(prop, "a tensor", f"a {type(out).__name__}",
                       "nn.MultiheadAttention returns (output, weights): take [0]")
            return out

        for causal in (False, True):
            out = forward(block, x, causal, "shape (B, T, D) -> (B, T, D)")
            c.require(tuple(out.shape) == tuple(x.shape), "shape (B, T, D) -> (B, T, D)",
                      f"output of shape {tuple(x.shape)}", f"{tuple(out.shape)}",
                      "keep batch first (batch_first=True) and add each branch to the stream")

        _check_identity(c, block, x, forward)
        _check_causal(c, block, forward)

        prop = "gradient reaches every parameter and the input"
        xg = torch.randn(2, T, D, requires_grad=True)
        out = forward(block, xg, True, prop)
        missing = c.run(prop, lambda: gradients_reach(block, out, (xg,)),
                        "backward through the output works",
                        "do not detach tensors or wrap the forward in torch.no_grad()")
        c.require(not missing, prop, "every parameter and the input get a non-zero gradient",
                  f"no gradient for: {', '.join(missing)}",
                  "every sub-layer must be on the path to the output; do not .detach()")

        prop = "matches x + attn(norm1(x)), then + ffn(norm2(x))"
        twin = copy.deepcopy(block)
        with torch.no_grad():
            for norm in (twin.norm1, twin.norm2):
                if norm.weight is not None:
                    norm.weight.copy_(1 + 0.5 * torch.randn_like(norm.weight))
                if norm.bias is not None:
                    norm.bias.copy_(0.5 * torch.randn_like(norm.bias))
            for causal in (False, True):
                got = forward(twin, x, causal, prop)
                want = _prenorm_formula(twin, x, causal)
                c.require(_max_diff(got, want) < 1e-4, prop,
                          f"block(x, causal={causal}) equals the pre-norm formula built from "
                          "its own sub-layers", f"max difference {_max_diff(got, want):.3g}",
                          "norm1 feeds the attention (query, key and value) and norm2 the "
                          "FFN; nothing else is applied to the stream")
    return c.report()


def _check_sublayers(c: Checker, block: Any) -> None:
    prop = "sub-layers attn, ffn, norm1, norm2"
    c.require_module_with(block, prop, ("attn", "ffn", "norm1", "norm2"),
                          "store the given sub-layers as self.attn, self.ffn, self.norm1, "
                          "self.norm2")
    attn = block.attn
    c.require(isinstance(attn, nn.MultiheadAttention) and attn.batch_first, prop,
              "attn is nn.MultiheadAttention(d_model, n_heads, batch_first=True)",
              f"attn is {attn!r}" if not isinstance(attn, nn.MultiheadAttention)
              else "batch_first=False", "use the given attention, with batch_first=True: "
              "the input is (B, T, D)")
    c.require(isinstance(block.ffn, nn.Module) and _last_linear(block.ffn) is not None, prop,
              "ffn is a module ending in nn.Linear", f"ffn is {type(block.ffn).__name__}",
              "use the given 2-layer FFN as self.ffn")
    norms_ok = all(isinstance(n, nn.LayerNorm) for n in (block.norm1, block.norm2))
    c.require(norms_ok, prop, "norm1 and norm2 are nn.LayerNorm(d_model)",
              f"{type(block.norm1).__name__}, {type(block.norm2).__name__}",
              "use two separate nn.LayerNorm(d_model)")


def _check_identity(c: Checker, block: nn.Module, x: torch.Tensor,
                    forward: Callable[..., torch.Tensor]) -> None:
    """With both branches off a pre-norm block returns x exactly."""
    prop = "identity with both branches off"
    off = copy.deepcopy(block)
    _switch_off_(off)
    queries: list[torch.Tensor] = []

    def hook(_module: nn.Module, args: tuple, kwargs: dict) -> None:
        query = args[0] if args else kwargs.get("query")
        if torch.is_tensor(query):
            queries.append(query.detach())

    handle = off.attn.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():  # causal=False: a wrong mask is the causal checks' business
            outs = {False: forward(off, x, False, prop)}
    finally:
        handle.remove()
    expected = "block(x) == x (within 1e-6): both branches add zero to the stream"
    for causal, out in outs.items():
        diff = _max_diff(out, x)
        if diff <= 1e-6:
            continue
        ln_x = F.layer_norm(x, (x.shape[-1],))
        if _max_diff(out, ln_x) < 1e-3:
            if queries and _max_diff(queries[0], x) < 1e-6:
                hint = ("looks like post-norm, x = LN(x + attn(x)): in a pre-norm block the "
                        "LayerNorm goes on the branch's input, x = x + attn(norm1(x)), and "
                        "the stream itself is never normalised")
            else:
                hint = ("a LayerNorm is applied to the stream after the addition as well "
                        "(double norm): normalise only the branch's input, x = x + "
                        "attn(norm1(x)), and leave the sum as it is")
            c.fail(prop, expected, f"output equals LayerNorm(x) (max |out - x| = {diff:.3g})",
                   hint)
        if out.abs().max().item() < 1e-6:
            c.fail(prop, expected, "the output is 0: x is lost", _missing_skip_hint(block, x))
        c.fail(prop, expected, f"max |block(x) - x| = {diff:.3g} (causal={causal})",
               "with out_proj and the FFN's last layer zeroed both branches give 0, so the "
               "block must return x: add each branch to x and use self.attn and self.ffn")
    c.ok(prop)


def _missing_skip_hint(block: nn.Module, x: torch.Tensor) -> str:
    """Which skip is missing: run with only the FFN switched off."""
    ffn_off = copy.deepcopy(block)
    _switch_off_(ffn_off, attn=False)
    try:
        with torch.no_grad():
            out = ffn_off(x, causal=False)
            h = ffn_off.norm1(x)
            branch = ffn_off.attn(h, h, h, need_weights=False)[0]
    except Exception:  # noqa: BLE001 - only a diagnosis; fall back to the general hint
        out = None
    if out is not None and out.abs().max().item() < 1e-6:
        return ("no skip around the FFN: x = ffn(norm2(x)) replaces the stream; write "
                "x = x + ffn(norm2(x))")
    if out is not None and _max_diff(out, branch) < 1e-5:
        return ("no skip around the attention: x = attn(norm1(x)) replaces the stream; write "
                "x = x + attn(norm1(x))")
    return "a skip connection is missing: each branch's output is added to x, x = x + F(...)"


def _check_causal(c: Checker, block: nn.Module,
                  forward: Callable[..., torch.Tensor]) -> None:
    """Causal mode: outputs at <= t ignore tokens > t and depend on tokens < t;
    non-causal mode: every output depends on every token."""
    T, D = _LENGTH, _D_MODEL
    x = torch.randn(1, T, D)
    with torch.no_grad():
        base = forward(block, x, True, "causal: no look-ahead")
        if not torch.isfinite(base).all():
            broken = (~torch.isfinite(base)).any(dim=-1)[0].nonzero().flatten().tolist()
            if broken[0] == 0:      # the first query sees nothing: the diagonal is masked
                hint = ("the diagonal is masked too, so position 0 may attend to nothing: "
                        "every position must see itself; mask only above the diagonal, "
                        ".triu(1), not .triu()")
            else:
                hint = ("in a bool attn_mask True means 'may NOT attend'; the mask should be "
                        "True above the diagonal (.triu(1)). Yours looks reversed (.tril())")
            c.fail("causal: no look-ahead", "finite outputs with causal=True",
                   f"NaN in the output at positions {broken}: some query has every key "
                   "masked", hint)
        leak, past, far_leak = 0.0, float("inf"), 0.0
        leak_at = 0
        for t in range(T):
            if t < T - 1:
                changed = x.clone()
                changed[:, t + 1:] = torch.randn(1, T - t - 1, D)
                d = _max_diff(forward(block, changed, True, "causal: no look-ahead")[:, :t + 1],
                              base[:, :t + 1])
                if d > leak:
                    leak, leak_at = d, t
            if t < T - 2:           # tokens two or more steps ahead
                changed = x.clone()
                changed[:, t + 2:] = torch.randn(1, T - t - 2, D)
                far_leak = max(far_leak, _max_diff(
                    forward(block, changed, True, "causal: no look-ahead")[:, :t + 1],
                    base[:, :t + 1]))
            if t > 0:
                changed = x.clone()
                changed[:, :t] = torch.randn(1, t, D)
                out = forward(block, changed, True, "causal: no look-ahead")
                past = min(past, _max_diff(out[:, t], base[:, t]))
        if leak > 1e-5:
            if far_leak < 1e-6:
                hint = ("off by one: each position sees the next token. Mask every key after "
                        "the query: True strictly above the diagonal, .triu(1) (not .triu(2))")
            elif past < 1e-6:
                hint = ("the mask is reversed: it lets positions see the future and hides the "
                        "past. In a bool attn_mask True means 'may NOT attend': use "
                        "torch.ones(T, T, dtype=torch.bool).triu(1), not .tril()")
            else:
                hint = ("the mask is not applied: with causal=True pass attn_mask=torch.ones(T,"
                        " T, dtype=torch.bool).triu(1) to self.attn")
            c.fail("causal: no look-ahead",
                   "with causal=True, outputs at positions <= t ignore tokens after t",
                   f"output at position {leak_at} changed by {leak:.3g} when only later "
                   "tokens changed", hint)
        c.ok("causal: no look-ahead")
        c.require(past > 1e-5, "causal: sees earlier tokens",
                  "with causal=True, the output at t depends on the tokens before t",
                  f"changing earlier tokens moved some position by only {past:.3g}",
                  "the mask blocks the past: True in a bool attn_mask means 'may NOT attend', "
                  "so only entries above the diagonal (.triu(1)) are True")

        base = forward(block, x, False, "non-causal: sees every token")
        changed = x.clone()
        changed[:, -1] = torch.randn(D)
        d = (forward(block, changed, False, "non-causal: sees every token")[:, :-1]
             - base[:, :-1]).abs().amax(dim=-1).min().item()
        c.require(d > 1e-5, "non-causal: sees every token",
                  "with causal=False, every position depends on the last token",
                  f"some position changed by only {d:.3g} when the last token changed",
                  "apply the mask only when causal=True (attn_mask=None otherwise)")


# --------------------------------------------------------------------------------------------
# 3. Gated (ReZero-style) head
# --------------------------------------------------------------------------------------------

_HEAD_DIM, _HEAD_BATCH = 6, 5


def check_gated_head(head_cls: Callable[[int], nn.Module]) -> str:
    """Check a student's gated skip head, y = x + g * fc(x), with a gate g that starts at 0.

    The exercise: ``head_cls(dim)`` returns an ``nn.Module`` mapping (B, dim) -> (B, dim),
    with attributes ``fc`` (an ``nn.Linear(dim, dim)``, bias optional, default init) and
    ``gate`` (an ``nn.Parameter`` of shape (), (1,) or (dim,), starting at exactly 0). The
    library's version is :class:`skiplab.heads.SkipConnectionHead` with ``gate="zero"``.
    ``y = x + fc(x) * gate`` is the same thing.

    Properties (dim 6): builds with ``fc`` and a trainable ``gate``; shape; identity at
    initialisation (|y - x| <= 1e-6; diagnoses an open gate, a sigmoid(0) = 0.5 gate, a
    missing skip, a gate on the skip path); learning starts (at step 0 the gate gets a
    non-zero gradient, and after one SGD step the head is no longer the identity); after
    that step the output depends on ``fc``.
    """
    c = _Checker("gated head")
    dim, batch = _HEAD_DIM, _HEAD_BATCH
    with _seeded(0):
        head = c.run("builds", lambda: head_cls(dim), f"head_cls({dim}) builds a head",
                     "the constructor takes dim and creates self.fc and self.gate")
        _check_head_parts(c, head)
        x = torch.randn(batch, dim) * 2

        def forward(inp: torch.Tensor, prop: str) -> torch.Tensor:
            out = c.run(prop, lambda: head(inp), f"head(x) runs on x of shape {tuple(inp.shape)}",
                        "forward(x) should return x + self.gate * self.fc(x)")
            if not torch.is_tensor(out):
                c.fail(prop, "a tensor", f"a {type(out).__name__}", "return the tensor y")
            return out

        y = forward(x, "shape (B, dim) -> (B, dim)")
        c.require(tuple(y.shape) == (batch, dim), "shape (B, dim) -> (B, dim)",
                  f"output of shape {(batch, dim)}", f"{tuple(y.shape)}",
                  "the gate must broadcast over the batch: shape (), (1,) or (dim,)")

        prop = "identity at initialisation"
        diff = _max_diff(y, x)
        if diff > 1e-6:
            with torch.no_grad():
                branch = head.fc(x)
            c.fail(prop, "head(x) == x at initialisation (within 1e-6)",
                   f"max |head(x) - x| = {diff:.3g}", _diagnose_head_init(x, y, branch))
        c.ok(prop)

        prop = "learning starts"
        target = torch.randn(batch, dim)
        head.zero_grad()
        loss = F.mse_loss(forward(x, prop), target)
        c.run(prop, loss.backward, "backward through the head works",
              "do not detach tensors or wrap the forward in torch.no_grad()")
        gate_grad = head.gate.grad
        grads = [p.grad for p in head.parameters()]
        if all(g is None or not torch.any(g != 0) for g in grads):
            c.fail(prop, "non-zero gradients at step 0", "every gradient is zero",
                   "learning never starts: with both the gate and fc at zero, the gate's "
                   "gradient (which needs fc(x)) and fc's (which needs the gate) are both 0; "
                   "keep fc's default initialisation and start only the gate at zero")
        if gate_grad is None:
            c.fail(prop, "the gate gets a gradient at step 0", "gate.grad is None",
                   "use self.gate in forward: y = x + self.gate * self.fc(x)")
        if not torch.any(gate_grad != 0):
            c.fail(prop, "a non-zero gradient for the gate at step 0",
                   "the gate's gradient is exactly 0",
                   "dL/dgate = dL/dy * fc(x) is 0 when fc starts at zero: keep fc's default "
                   "initialisation; only the gate starts at zero")
        c.run(prop, torch.optim.SGD(head.parameters(), lr=0.5).step,
              "an SGD step works", "all parameters must be ordinary float tensors")
        with torch.no_grad():
            moved = _max_diff(forward(x, prop), x)
        c.require(moved > 1e-6, prop, "after one SGD step head(x) is no longer x",
                  f"max |head(x) - x| = {moved:.3g} after the step",
                  "the gate must be trainable and multiply fc(x): y = x + gate * fc(x)")

        prop = "output depends on fc after the step"
        with torch.no_grad():
            before = forward(x, prop)
            for p in head.fc.parameters():
                p.add_(0.5 * torch.randn_like(p))
            after = forward(x, prop)
        c.require(_max_diff(before, after) > 1e-6, prop,
                  "changing fc's weights changes head(x) once the gate is open",
                  f"max change {_max_diff(before, after):.3g}",
                  "the branch must be fc(x): y = x + gate * self.fc(x)")
    return c.report()


def _check_head_parts(c: Checker, head: Any) -> None:
    prop = "has fc and a trainable gate"
    c.require_module_with(head, prop, ("fc", "gate"),
                          "store the layer as self.fc and the gate as self.gate = "
                          "nn.Parameter(...)")
    c.require(isinstance(head.fc, nn.Module), prop, "fc is an nn.Linear(dim, dim)",
              f"fc is a {type(head.fc).__name__}", "self.fc = nn.Linear(dim, dim)")
    gate = head.gate
    registered = torch.is_tensor(gate) and any(p is gate for p in head.parameters())
    c.require(registered and gate.requires_grad, prop,
              "gate is an nn.Parameter registered on the head",
              f"gate is a {type(gate).__name__}" + ("" if not torch.is_tensor(gate) else
                                                     " that is not a trainable parameter"),
              "self.gate = nn.Parameter(torch.zeros(1)) (or torch.zeros(dim)); a plain "
              "tensor or a buffer is never trained")
    c.require(gate.numel() in (1, _HEAD_DIM), prop, f"gate of shape (), (1,) or ({_HEAD_DIM},)",
              f"shape {tuple(gate.shape)}", "one scalar gate or one gate per dimension")


def _diagnose_head_init(x: torch.Tensor, y: torch.Tensor, branch: torch.Tensor) -> str:
    """Hint for a head that is not the identity at initialisation."""
    if y.abs().max().item() < 1e-6:
        return "the output is 0: the skip is missing; y = x + gate * fc(x), not gate * fc(x)"
    if _max_diff(y, branch) < 1e-5:
        return ("the output is fc(x): the gate multiplies the skip path; gate the branch "
                "instead, y = x + gate * fc(x)")
    delta = (y - x).detach().double()
    f = branch.detach().double()
    scale = ((delta * f).sum() / (f * f).sum().clamp_min(1e-30)).item()
    if _max_diff(delta, scale * f) < 1e-5:
        if abs(scale - 1) < 1e-4:
            return ("the gate starts open (1): start it at zero, nn.Parameter(torch.zeros(1)), "
                    "so the head starts as the identity")
        if abs(scale - 0.5) < 1e-4:
            return ("the gate starts at 0.5, as sigmoid(0) does: use the raw parameter as "
                    "the gate (ReZero), starting at exactly 0")
        return f"the gate starts at {scale:.3g}: it must start at exactly 0"
    return "at initialisation the head must return x unchanged: y = x + gate * fc(x), gate = 0"


# --------------------------------------------------------------------------------------------
# 4. Permutation symmetry
# --------------------------------------------------------------------------------------------

#: The permutation the checker applies (width 8): no fixed points and not its own inverse,
#: so using the inverse for the next layer's columns is caught.
PERMUTATION: tuple[int, ...] = (3, 0, 6, 1, 7, 2, 4, 5)

_PERM_CONFIG = dict(in_features=5, n_classes=3, depth=5, width=8, activation="tanh")


def permutation_test_model(architecture: str = "plain", seed: int = 0) -> DeepMLP:
    """The tiny MLP the permutation check uses: 5 inputs, 4 hidden layers of width 8 (tanh),
    3 outputs, (B, 5) -> (B, 3), with random non-zero biases (so a forgotten bias shows)."""
    with _seeded(seed):
        model = DeepMLP(MLPConfig(**_PERM_CONFIG, architecture=architecture))
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


def check_permutation(permute_fn: Callable[[nn.Module, int, torch.Tensor], Any]) -> str:
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
    its own inverse): the function is unchanged (max difference < 1e-5); the parameters
    changed; the result is the one for the given ``perm`` (same as ``permute_units_``), for
    the first, a middle and the last hidden layer; and, applied to the residual twin of the
    model, the function changes by more than 1e-3 (:func:`skip_net_changes`).
    """
    c = _Checker("permutation symmetry")
    perm = torch.tensor(PERMUTATION)
    model = permutation_test_model("plain")
    with _seeded(1):
        x = torch.randn(32, _PERM_CONFIG["in_features"])
    n_hidden = model.config.depth - 1
    for k in (1, 0, n_hidden - 1):
        student = copy.deepcopy(model)
        returned = c.run("runs without error",
                         lambda: permute_fn(student, k, perm.clone()),
                         f"permute_fn(model, {k}, perm) runs",
                         "layer k's units are the rows of model.weight_layers()[k] and the "
                         "columns of model.weight_layers()[k + 1]; edit the weights under "
                         "torch.no_grad()")
        c.ok("runs without error")
        with torch.no_grad():
            diff = _max_diff(student(x), model(x))
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


def check_function_change(fn: Callable[..., Any]) -> str:
    """Check a student's measure of how much a permutation changes a network's function.

    The exercise: ``fn(model, permute_fn, layer_index, perm, x)`` applies
    ``permute_fn(copy, layer_index, perm)`` to a deep copy of ``model`` (``model`` itself is
    left untouched) and returns the largest absolute difference between the two networks'
    outputs on ``x`` (B, in_features): max |f(x) - f'(x)|, a float (a 0-dim tensor is
    accepted). With it, the proof by code is two numbers: about 0 for a plain net, clearly
    above 0 for its residual twin.

    Properties (the permutation check's width-8 tanh MLPs, the checker's own correct
    ``permute_fn``): runs and returns a number; uses the ``permute_fn``, ``layer_index`` and
    ``perm`` it is given; leaves ``model`` unchanged; gives < 1e-5 on the plain net; gives
    the largest absolute output difference on the residual twin (rtol 1e-4; diagnoses a copy
    compared with itself, a mean or a sum instead of the maximum, a signed maximum).
    """
    c = _Checker("function change")
    perm = torch.tensor(PERMUTATION)
    plain, residual = permutation_test_model("plain"), permutation_test_model("residual")
    with _seeded(1):
        x = torch.randn(32, _PERM_CONFIG["in_features"])
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
        try:
            number = float(value.item() if isinstance(value, torch.Tensor) else value)
        except (TypeError, ValueError, RuntimeError):
            c.fail("runs and returns a number", "a float, the largest absolute difference",
                   f"returned {type(value).__name__}", "return a number, e.g. "
                   "(f_before - f_after).abs().max().item()")
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
    for k in (2, 3):
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
    return c.report()
