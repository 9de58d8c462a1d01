"""Checker for the transformer exercise: a pre-norm block's forward from given sub-layers,
x = x + attn(norm1(x)), then x = x + ffn(norm2(x)), with an optional causal mask.

The output is compared with that formula rebuilt from the student's own sub-layers, on two
sizes (a mask built for one sequence length fails on the other); autograd's gradient must
be the block's true slope, so a detached residual stream fails.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..blocks.attention import causal_mask
from .core import Checker, gradients_reach, guarded
from .core import PropertyChecker as _Checker
from .core import max_diff as _max_diff
from .tracing import slope_ok, slopes

__all__ = ["check_prenorm_block"]

# (d_model, n_heads, T): public sizes, then the hidden check's
_SIZES = ((16, 4, 6), (8, 2, 9))
_HIDDEN_SIZES = ((24, 3, 11), (12, 4, 4))


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
    """x + attn(norm1(x)), then + ffn(norm2(.)), built from the block's own sub-layers:
    x (B, T, D) -> (B, T, D)."""
    mask = causal_mask(x.shape[1]) if causal else None   # (T, T) bool, True = may NOT attend
    h = block.norm1(x)
    x = x + block.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
    return x + block.ffn(block.norm2(x))


@guarded("pre-norm block")
def check_prenorm_block(block_cls: Callable[[int, int], nn.Module], *,
                        hidden: bool = False) -> str:
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

    Properties (eval mode), for (d_model, heads, T) = (16, 4, 6) and (8, 2, 9), and with
    ``hidden=True`` also (24, 3, 11) and (12, 4, 4): builds with the sub-layers; forward
    runs (diagnoses adding attn's (output, weights) tuple and a mask built for another
    length); the input is left unchanged (diagnoses ``x += ...``); a tensor of the input's
    dtype and shape (diagnoses a missing ``return``); identity with both branches off
    (diagnoses post-norm, a LayerNorm on the stream after the addition, and a missing skip);
    causal mode hides later tokens and sees earlier ones (diagnoses an ignored, a reversed,
    an off-by-one mask and a masked diagonal); non-causal mode sees every token; gradients
    reach every parameter and the input; the output matches the formula above computed from
    the block's own sub-layers (with random LayerNorm parameters); autograd's gradient with
    respect to x equals the block's true slope (a detached stream fails).
    """
    c = _Checker("pre-norm block")
    for size in _SIZES + (_HIDDEN_SIZES if hidden else ()):
        _check_size(c, block_cls, *size)
    return c.report()


def _forward(c: Checker, b: nn.Module, inp: torch.Tensor, causal: bool,
             prop: str) -> torch.Tensor:
    """b(inp, causal=causal): crashes, in-place edits and non-tensors become failures."""
    T = inp.shape[1]
    before = inp.detach().clone()

    def hint(error: BaseException) -> str:
        text = str(error)
        if isinstance(error, TypeError) and "tuple" in text:
            return ("nn.MultiheadAttention returns a tuple (output, weights): add "
                    "self.attn(...)[0] to the stream")
        if "attn_mask" in text and "shape" in text:
            return (f"the mask must match the sequence length: build it from T = x.shape[1] "
                    f"on every call (here T = {T}), torch.ones(T, T, dtype=torch.bool).triu(1)")
        return ("forward(x, causal) should return x + attn(...) then + ffn(...); for the "
                "causal mask pass attn_mask=torch.ones(T, T, dtype=torch.bool).triu(1) "
                "(is_causal=True alone raises in nn.MultiheadAttention)")

    out = c.run("forward runs", lambda: b(inp, causal=causal),
                f"block(x, causal={causal}) runs on x of shape {tuple(inp.shape)}", hint)
    c.ok("forward runs")
    if not torch.equal(inp.detach(), before):
        c.fail("input left unchanged", "block(x) leaves the caller's x as it was",
               "x was modified in place",
               "x += ... changes the tensor the caller passed in: write x = x + ...")
    c.ok("input left unchanged")
    if out is None:
        c.fail(prop, "a tensor", "forward returned None",
               "forward returned None: did it miss a `return`? Return the stream x")
    if isinstance(out, tuple):
        c.fail(prop, "a tensor", "a tuple",
               "nn.MultiheadAttention returns (output, weights): take [0]")
    return c.tensor(prop, out, "a tensor", like=inp)


def _check_size(c: Checker, block_cls: Callable[[int, int], nn.Module], D: int, H: int,
                T: int) -> None:
    block = c.run("builds", lambda: block_cls(D, H), f"block_cls({D}, {H}) builds a block",
                  "the constructor takes (d_model, n_heads) and creates attn, ffn, norm1 "
                  "and norm2")
    _check_sublayers(c, block)
    block.eval()
    x = torch.randn(2, T, D) * 2 + 0.5

    def forward(b: nn.Module, inp: torch.Tensor, causal: bool, prop: str) -> torch.Tensor:
        return _forward(c, b, inp, causal, prop)

    prop = "shape (B, T, D) -> (B, T, D)"
    for causal in (False, True):
        out = forward(block, x, causal, prop)
        c.require(tuple(out.shape) == tuple(x.shape), prop,
                  f"output of shape {tuple(x.shape)}", f"{tuple(out.shape)}",
                  "keep batch first (batch_first=True) and add each branch to the stream")
    c.ok("output dtype")

    _check_identity(c, block, x, forward)
    _check_causal(c, block, forward, T, D)

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

    prop = "gradient with respect to x is the true slope"
    with torch.no_grad():
        out = forward(twin, x, True, prop)
    auto, true, tol = slopes(twin, (x,), torch.randn_like(out), (torch.randn_like(x),),
                             call=lambda m, xs: m(xs[0], causal=True))
    c.require(slope_ok(auto, true, tol), prop,
              f"autograd's gradient with respect to x equals the slope of block(x) (T = {T})",
              f"autograd {auto:.4g}, true slope {true:.4g}",
              "a path is cut from the gradient: the residual stream must carry it, x = x + "
              "attn(...), not x.detach() or x.data (and no torch.no_grad() in forward)")


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


def _check_causal(c: Checker, block: nn.Module, forward: Callable[..., torch.Tensor],
                  T: int, D: int) -> None:
    """Causal mode: outputs at <= t ignore tokens > t and depend on tokens < t;
    non-causal mode: every output depends on every token."""
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
