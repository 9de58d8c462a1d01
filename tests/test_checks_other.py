"""The model-exercise checkers: reference solutions and valid variants pass, plausible
student mistakes are rejected with the message meant for them."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from checkhelp import rejects as _rejects
from torch import nn

from skiplab.checks.models import (
    PERMUTATION,
    check_function_change,
    check_gated_head,
    check_gradient_probe,
    check_permutation,
    check_prenorm_block,
    skip_net_changes,
)
from skiplab.heads import SkipConnectionHead
from skiplab.probes import permute_units_

# --------------------------------------------------------------------------------------------
# 1. Gradient probe
# --------------------------------------------------------------------------------------------

def probe_reference(model, x, y):
    weights = [layer.weight for layer in model.weight_layers()]
    grads = torch.autograd.grad(F.cross_entropy(model(x), y), weights)
    return [g.norm().item() for g in grads]


def probe_backward(model, x, y):
    """Valid: zero_grad, backward, read .grad; finds the Linear layers through modules()."""
    model.zero_grad()
    nn.CrossEntropyLoss()(model(x), y).backward()
    return torch.stack([m.weight.grad.norm() for m in model.modules()
                        if isinstance(m, nn.Linear)])


def probe_manual_loss(model, x, y):
    """Valid: the loss written out, a tensor of norms returned."""
    log_probs = torch.log_softmax(model(x), dim=1)
    loss = -log_probs[torch.arange(len(y)), y].mean()
    grads = torch.autograd.grad(loss, [m.weight for m in model.weight_layers()])
    return torch.stack([g.pow(2).sum().sqrt() for g in grads])


def probe_weight_norms(model, x, y):
    return [layer.weight.norm().item() for layer in model.weight_layers()]


def probe_reversed(model, x, y):
    return probe_reference(model, x, y)[::-1]


def probe_squared(model, x, y):
    return [v ** 2 for v in probe_reference(model, x, y)]


def probe_with_biases(model, x, y):
    params = [p for layer in model.weight_layers() for p in (layer.weight, layer.bias)]
    grads = torch.autograd.grad(F.cross_entropy(model(x), y), params)
    return [g.norm().item() for g in grads]


def probe_accumulating(model, x, y):
    F.cross_entropy(model(x), y).backward()
    return [layer.weight.grad.norm().item() for layer in model.weight_layers()]


def probe_summed_loss(model, x, y):
    weights = [layer.weight for layer in model.weight_layers()]
    grads = torch.autograd.grad(F.cross_entropy(model(x), y, reduction="sum"), weights)
    return [g.norm().item() for g in grads]


def probe_zero_grad_after(model, x, y):
    """Clears .grad only after reading it: wrong when .grad held something before."""
    F.cross_entropy(model(x), y).backward()
    values = [layer.weight.grad.norm().item() for layer in model.weight_layers()]
    model.zero_grad()
    return values


def probe_steps(model, x, y):
    values = probe_backward(model, x, y)
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    return values


def probe_crashes(model, x, y):
    return [layer.weight.grad.norm().item() for layer in model.weight_layers()]


@pytest.mark.parametrize("fn", [probe_reference, probe_backward, probe_manual_loss])
def test_gradient_probe_accepts(fn):
    report = check_gradient_probe(fn)
    assert "all 7 checks passed" in report


@pytest.mark.parametrize("fn, prop, hint", [
    (probe_weight_norms, "matches layer_grad_norms", "not of the weight"),
    (probe_reversed, "input layer first", "reverse order"),
    (probe_squared, "matches layer_grad_norms", "not the squared norm"),
    (probe_with_biases, "one value per weight layer", "biases"),
    (probe_accumulating, "no leftover gradients", "pile up"),
    (probe_summed_loss, "matches layer_grad_norms", "reduction='sum'"),
    (probe_zero_grad_after, "no leftover gradients", "depends on what was in .grad"),
    (probe_steps, "weights unchanged", "no optimizer.step()"),
    (probe_crashes, "runs without error", "F.cross_entropy"),
])
def test_gradient_probe_rejects(fn, prop, hint):
    error = _rejects(check_gradient_probe, fn, prop, hint)
    if fn is probe_summed_loss:
        assert "batch size (12)" in error.measured
    if fn is probe_accumulating:
        assert "2.00 times the first" in error.measured
    if fn is probe_crashes:
        assert "AttributeError" in error.measured


def probe_first_six(model, x, y):
    """Written for the public nets of depth 6: returns at most 6 values."""
    return probe_reference(model, x, y)[:6]


def probe_strings(model, x, y):
    return [f"{v:.6f}" for v in probe_reference(model, x, y)]


def probe_half(model, x, y):
    return torch.tensor(probe_reference(model, x, y)).half()


def probe_int_tensor(model, x, y):
    return torch.tensor(probe_reference(model, x, y)).int()


def probe_numpy(model, x, y):
    """Valid: NumPy float64 scalars, computed in float64."""
    import numpy as np
    return [np.float64(v) for v in probe_reference(model.double(), x.double(), y)]


def probe_zero_dim_tensors(model, x, y):
    """Valid: a list of 0-dim float tensors."""
    weights = [layer.weight for layer in model.weight_layers()]
    return [g.norm() for g in torch.autograd.grad(F.cross_entropy(model(x), y), weights)]


@pytest.mark.parametrize("fn", [probe_numpy, probe_zero_dim_tensors])
def test_gradient_probe_accepts_any_real_numbers(fn):
    assert "all 7 checks passed" in check_gradient_probe(fn)
    assert "all 7 checks passed" in check_gradient_probe(fn, hidden=True)


@pytest.mark.parametrize("fn, prop, hint", [
    (probe_first_six, "one value per weight layer", "depth 8 has 8 Linear layers"),
    (probe_strings, "returns numbers", "not a string"),
    (probe_half, "returns numbers", "float16 rounds them"),
    (probe_int_tensor, "returns numbers", "integers lose them"),
])
def test_gradient_probe_rejects_sizes_and_types(fn, prop, hint):
    _rejects(check_gradient_probe, fn, prop, hint)


# --------------------------------------------------------------------------------------------
# 2. Pre-norm transformer block
# --------------------------------------------------------------------------------------------

class PreNormBlock(nn.Module):
    """The reference solution."""

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(d_model, n_heads, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.ReLU(),
                                 nn.Linear(4 * d_model, d_model))
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def mask(self, x: torch.Tensor, causal: bool) -> torch.Tensor | None:
        T = x.shape[1]
        return torch.ones(T, T, dtype=torch.bool).triu(1) if causal else None

    def attend(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        h = self.norm1(x)
        return self.attn(h, h, h, attn_mask=self.mask(x, causal), need_weights=False)[0]

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        x = x + self.attend(x, causal)
        return x + self.ffn(self.norm2(x))


class FloatMaskBlock(PreNormBlock):
    """Valid: PyTorch's float mask (-inf above the diagonal) plus the is_causal hint."""

    def forward(self, x, causal=False):
        h = self.norm1(x)
        mask = nn.Transformer.generate_square_subsequent_mask(x.shape[1]) if causal else None
        x = x + self.attn(h, h, h, attn_mask=mask, is_causal=causal)[0]
        return x + self.ffn(self.norm2(x))


class BufferMaskBlock(PreNormBlock):
    """Valid: a stored mask cut to length, a GELU FFN, sub-layers named in another order."""

    def __init__(self, d_model, n_heads, max_len=32):
        super().__init__(d_model, n_heads)
        self.ffn = nn.Sequential(nn.Linear(d_model, 2 * d_model), nn.GELU(),
                                 nn.Linear(2 * d_model, d_model))
        self.register_buffer("future", torch.ones(max_len, max_len, dtype=torch.bool).triu(1))

    def forward(self, x, causal=False):
        T = x.shape[1]
        h = self.norm1(x)
        a, _ = self.attn(query=h, key=h, value=h,
                         attn_mask=self.future[:T, :T] if causal else None)
        x = a + x
        return self.ffn(self.norm2(x)) + x


class PostNormBlock(PreNormBlock):
    def forward(self, x, causal=False):
        x = self.norm1(x + self.attn(x, x, x, attn_mask=self.mask(x, causal))[0])
        return self.norm2(x + self.ffn(x))


class NoFFNSkipBlock(PreNormBlock):
    def forward(self, x, causal=False):
        x = x + self.attend(x, causal)
        return self.ffn(self.norm2(x))


class NoAttnSkipBlock(PreNormBlock):
    def forward(self, x, causal=False):
        x = self.attend(x, causal)
        return x + self.ffn(self.norm2(x))


class MaskIgnoredBlock(PreNormBlock):
    def forward(self, x, causal=False):
        return super().forward(x, causal=False)


class MaskInvertedBlock(PreNormBlock):
    """True where attending is allowed: the opposite of nn.MultiheadAttention's convention."""

    def mask(self, x, causal):
        T = x.shape[1]
        return torch.ones(T, T, dtype=torch.bool).tril() if causal else None


class MaskDiagonalBlock(PreNormBlock):
    """.triu() instead of .triu(1): a position may not even attend to itself."""

    def mask(self, x, causal):
        T = x.shape[1]
        return torch.ones(T, T, dtype=torch.bool).triu() if causal else None


class MaskOffByOneBlock(PreNormBlock):
    """.triu(2): every position also sees the next token."""

    def mask(self, x, causal):
        T = x.shape[1]
        return torch.ones(T, T, dtype=torch.bool).triu(2) if causal else None


class InPlaceAddBlock(PreNormBlock):
    """x += ...: right values, but the caller's tensor is changed."""

    def forward(self, x, causal=False):
        x += self.attend(x, causal)
        x += self.ffn(self.norm2(x))
        return x


class TupleAddBlock(PreNormBlock):
    """Forgot [0]: adds the (output, weights) tuple to the stream."""

    def forward(self, x, causal=False):
        h = self.norm1(x)
        x = x + self.attn(h, h, h, attn_mask=self.mask(x, causal))
        return x + self.ffn(self.norm2(x))


class MaskTransposedBlock(PreNormBlock):
    """Lower triangle blocked: every position sees itself and the future, never the past."""

    def mask(self, x, causal):
        T = x.shape[1]
        return torch.ones(T, T, dtype=torch.bool).tril(-1) if causal else None


class DoubleNormBlock(PreNormBlock):
    def forward(self, x, causal=False):
        x = self.norm1(x + self.attend(x, causal))
        return self.norm2(x + self.ffn(self.norm2(x)))


class SwappedNormsBlock(PreNormBlock):
    def forward(self, x, causal=False):
        h = self.norm2(x)
        x = x + self.attn(h, h, h, attn_mask=self.mask(x, causal))[0]
        return x + self.ffn(self.norm1(x))


class AlwaysCausalBlock(PreNormBlock):
    def forward(self, x, causal=False):
        return super().forward(x, causal=True)


class HintOnlyBlock(PreNormBlock):
    """is_causal=True without a mask: nn.MultiheadAttention raises."""

    def forward(self, x, causal=False):
        h = self.norm1(x)
        x = x + self.attn(h, h, h, is_causal=causal)[0]
        return x + self.ffn(self.norm2(x))


class OwnAttentionBlock(PreNormBlock):
    """Builds its own (unexposed) attention: the checker cannot switch the branch off."""

    def __init__(self, d_model, n_heads):
        super().__init__(d_model, n_heads)
        self.hidden_attn = nn.MultiheadAttention(d_model, n_heads, batch_first=True)

    def attend(self, x, causal):
        h = self.norm1(x)
        return self.hidden_attn(h, h, h, attn_mask=self.mask(x, causal))[0]


class NoAttributesBlock(nn.Module):
    def __init__(self, d_model, n_heads):
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(d_model, n_heads, batch_first=True,
                                                norm_first=True)

    def forward(self, x, causal=False):
        return self.layer(x)


@pytest.mark.parametrize("cls", [PreNormBlock, FloatMaskBlock, BufferMaskBlock])
def test_prenorm_block_accepts(cls):
    report = check_prenorm_block(cls)
    assert "all 12 checks passed" in report
    assert "all 12 checks passed" in check_prenorm_block(cls, hidden=True)


@pytest.mark.parametrize("cls, prop, hint", [
    (PostNormBlock, "identity with both branches off", "looks like post-norm"),
    (DoubleNormBlock, "identity with both branches off", "double norm"),
    (NoFFNSkipBlock, "identity with both branches off", "no skip around the FFN"),
    (NoAttnSkipBlock, "identity with both branches off", "no skip around the attention"),
    (MaskIgnoredBlock, "causal: no look-ahead", "the mask is not applied"),
    (MaskInvertedBlock, "causal: no look-ahead", "reversed"),
    (MaskTransposedBlock, "causal: no look-ahead", "hides the past"),
    (MaskDiagonalBlock, "causal: no look-ahead", "not .triu()"),
    (MaskOffByOneBlock, "causal: no look-ahead", "off by one"),
    (InPlaceAddBlock, "input left unchanged", "x = x + ..."),
    (TupleAddBlock, "forward runs", "[0]"),
    (AlwaysCausalBlock, "non-causal: sees every token", "only when causal=True"),
    (SwappedNormsBlock, "matches x + attn(norm1(x)), then + ffn(norm2(x))", "norm1 feeds the"),
    (HintOnlyBlock, "forward runs", "is_causal=True alone"),
    (OwnAttentionBlock, "identity with both branches off", "use self.attn and self.ffn"),
    (NoAttributesBlock, "sub-layers attn, ffn, norm1, norm2", "self.attn"),
])
def test_prenorm_block_rejects(cls, prop, hint):
    _rejects(check_prenorm_block, cls, prop, hint)


def test_prenorm_block_crash_is_reported():
    error = _rejects(check_prenorm_block, HintOnlyBlock, "forward runs",
                     "is_causal=True alone")
    assert "RuntimeError" in error.measured


class MaskForSixTokens(PreNormBlock):
    """Hard-codes the public check's length, T = 6."""

    def mask(self, x, causal):
        return torch.ones(6, 6, dtype=torch.bool).triu(1) if causal else None


class NoReturnBlock(PreNormBlock):
    def forward(self, x, causal=False):
        x = x + self.attend(x, causal)
        x = x + self.ffn(self.norm2(x))


class DetachedStreamBlock(PreNormBlock):
    def forward(self, x, causal=False):
        x = x.detach() + self.attend(x, causal)
        return x + self.ffn(self.norm2(x))


class LazyFFNBlock(PreNormBlock):
    """Valid: a lazy first FFN layer."""

    def __init__(self, d_model, n_heads):
        super().__init__(d_model, n_heads)
        self.ffn = nn.Sequential(nn.LazyLinear(4 * d_model), nn.ReLU(),
                                 nn.Linear(4 * d_model, d_model))


@pytest.mark.parametrize("cls, prop, hint", [
    (MaskForSixTokens, "forward runs", "build it from T = x.shape[1]"),
    (NoReturnBlock, "shape (B, T, D) -> (B, T, D)", "did it miss a `return`"),
    (DetachedStreamBlock, "gradient with respect to x is the true slope",
     "the residual stream must carry it"),
])
def test_prenorm_block_rejects_what_used_to_pass(cls, prop, hint):
    error = _rejects(check_prenorm_block, cls, prop, hint)
    if cls is NoReturnBlock:
        assert "[0]" not in error.hint


def test_prenorm_block_accepts_lazy_layers():
    assert "all 12 checks passed" in check_prenorm_block(LazyFFNBlock)


# --------------------------------------------------------------------------------------------
# 3. Gated head
# --------------------------------------------------------------------------------------------

class GatedHead(nn.Module):
    """The reference solution: a ReZero scalar gate."""

    def __init__(self, dim: int):
        super().__init__()
        self.fc = nn.Linear(dim, dim)
        self.gate = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.gate * self.fc(x)


class VectorGateHead(GatedHead):
    """Valid: a per-dimension gate, fc without bias, gate written on the right."""

    def __init__(self, dim):
        super().__init__(dim)
        self.fc = nn.Linear(dim, dim, bias=False)
        self.gate = nn.Parameter(torch.zeros(dim))

    def forward(self, x):
        return x + self.fc(x) * self.gate


class LibraryHead(SkipConnectionHead):
    """Valid: the library's head with a zero gate, exposing its single layer and gate."""

    def __init__(self, dim):
        super().__init__(dim, gate="zero")

    @property
    def fc(self):
        return self.fcs[0]

    @property
    def gate(self):
        return self.gates[0]


class OpenGateHead(GatedHead):
    def __init__(self, dim):
        super().__init__(dim)
        self.gate = nn.Parameter(torch.ones(1))


class SigmoidGateHead(GatedHead):
    def forward(self, x):
        return x + torch.sigmoid(self.gate) * self.fc(x)


class NoSkipHead(GatedHead):
    def forward(self, x):
        return self.gate * self.fc(x)


class AllZeroHead(GatedHead):
    def __init__(self, dim):
        super().__init__(dim)
        nn.init.zeros_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)


class GateOnSkipHead(GatedHead):
    def forward(self, x):
        return self.gate * x + self.fc(x)


class ZeroFcOpenGateHead(GatedHead):
    """Identity at init through a zero fc, the gate open: the gate gets no gradient."""

    def __init__(self, dim):
        super().__init__(dim)
        self.gate = nn.Parameter(torch.ones(()))
        nn.init.zeros_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)


class BufferGateHead(GatedHead):
    def __init__(self, dim):
        super().__init__(dim)
        del self.gate
        self.register_buffer("gate", torch.zeros(1))


class CrashingHead(GatedHead):
    def forward(self, x):
        return x + self.gate * self.fc(x.T)


@pytest.mark.parametrize("cls", [GatedHead, VectorGateHead, LibraryHead])
def test_gated_head_accepts(cls):
    report = check_gated_head(cls)
    assert "all 9 checks passed" in report
    assert "all 9 checks passed" in check_gated_head(cls, hidden=True)


@pytest.mark.parametrize("cls, prop, hint", [
    (OpenGateHead, "identity at initialisation", "starts open"),
    (SigmoidGateHead, "identity at initialisation", "sigmoid(0)"),
    (NoSkipHead, "identity at initialisation", "the skip is missing"),
    (AllZeroHead, "learning starts", "learning never starts"),
    (GateOnSkipHead, "identity at initialisation", "multiplies the skip"),
    (ZeroFcOpenGateHead, "learning starts", "keep fc's default initialisation"),
    (BufferGateHead, "has fc and a trainable gate", "never trained"),
    (CrashingHead, "shape (B, dim) -> (B, dim)", "x + self.gate * self.fc(x)"),
])
def test_gated_head_rejects(cls, prop, hint):
    _rejects(check_gated_head, cls, prop, hint)


class AddsInputTwiceHead(GatedHead):
    def forward(self, x):
        return x + self.gate * (self.fc(x) + x)


class DetachedFcHead(GatedHead):
    def forward(self, x):
        return x + self.gate * self.fc(x).detach()


class DetachedInputHead(GatedHead):
    def forward(self, x):
        return x.detach() + self.gate * self.fc(x)


class GateForSixHead(GatedHead):
    """A per-dimension gate sized for the public check's width, 6."""

    def __init__(self, dim):
        super().__init__(dim)
        self.gate = nn.Parameter(torch.zeros(6))


class DataGateHead(GatedHead):
    def forward(self, x):
        return x + self.gate.data * self.fc(x)


class ReluGateHead(GatedHead):
    def forward(self, x):
        return x + torch.relu(self.gate) * self.fc(x)


class SquaredGateHead(GatedHead):
    def forward(self, x):
        return x + self.gate ** 2 * self.fc(x)


class EinsumHead(GatedHead):
    """Valid: fc written out with einsum on fc's own weight and bias."""

    def forward(self, x):
        return x + self.gate * (torch.einsum("bi,oi->bo", x, self.fc.weight) + self.fc.bias)


class FunctionalHead(GatedHead):
    """Valid: F.linear with fc's parameters, the gate on the right."""

    def forward(self, x):
        return torch.add(x, F.linear(x, self.fc.weight, self.fc.bias) * self.gate)


@pytest.mark.parametrize("cls", [EinsumHead, FunctionalHead])
def test_gated_head_accepts_other_styles(cls):
    assert "all 9 checks passed" in check_gated_head(cls)


@pytest.mark.parametrize("cls, prop, hint", [
    (AddsInputTwiceHead, "matches x + gate * fc(x) with the gate open", "added twice"),
    (DetachedFcHead, "gradients reach fc, the gate and the input", "fc's output is detached"),
    (DetachedInputHead, "gradient with respect to x is the true slope", "add x itself"),
    (GateForSixHead, "has fc and a trainable gate", "its size follows dim"),
])
def test_gated_head_rejects_what_used_to_pass(cls, prop, hint):
    _rejects(check_gated_head, cls, prop, hint)


@pytest.mark.parametrize("cls, hint", [
    (DataGateHead, "used through .data or .detach()"),
    (ReluGateHead, "the gate goes through a ReLU"),
    (SquaredGateHead, "the gate is squared"),
])
def test_gated_head_names_why_the_gate_does_not_learn(cls, hint):
    """fc is not zero here: the hint must not blame a zero-initialised fc."""
    _rejects(check_gated_head, cls, "learning starts", hint, avoid="fc's default")


# --------------------------------------------------------------------------------------------
# 4. Permutation symmetry
# --------------------------------------------------------------------------------------------

def permute_reference(model, layer_index, perm):
    incoming = model.weight_layers()[layer_index]
    outgoing = model.weight_layers()[layer_index + 1]
    with torch.no_grad():
        incoming.weight.copy_(incoming.weight[perm])
        incoming.bias.copy_(incoming.bias[perm])
        outgoing.weight.copy_(outgoing.weight[:, perm])


def permute_with_matrix(model, layer_index, perm):
    """Valid: a permutation matrix P, W <- P W, b <- P b, W_next <- W_next P^T."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    incoming, outgoing = linears[layer_index], linears[layer_index + 1]
    P = torch.eye(len(perm))[perm]
    with torch.no_grad():
        incoming.weight.data = P @ incoming.weight
        incoming.bias.data = P @ incoming.bias
        outgoing.weight.data = outgoing.weight @ P.T


def permute_library(model, layer_index, perm):
    layers = model.weight_layers()
    permute_units_(layers[layer_index], layers[layer_index + 1], perm)


def permute_rows_only(model, layer_index, perm):
    layer = model.weight_layers()[layer_index]
    with torch.no_grad():
        layer.weight.copy_(layer.weight[perm])
        layer.bias.copy_(layer.bias[perm])


def permute_same_layer_columns(model, layer_index, perm):
    layer = model.weight_layers()[layer_index]
    with torch.no_grad():
        layer.weight.copy_(layer.weight[perm][:, perm])
        layer.bias.copy_(layer.bias[perm])


def permute_no_bias(model, layer_index, perm):
    incoming = model.weight_layers()[layer_index]
    outgoing = model.weight_layers()[layer_index + 1]
    with torch.no_grad():
        incoming.weight.copy_(incoming.weight[perm])
        outgoing.weight.copy_(outgoing.weight[:, perm])


def permute_inverse_columns(model, layer_index, perm):
    incoming = model.weight_layers()[layer_index]
    outgoing = model.weight_layers()[layer_index + 1]
    with torch.no_grad():
        incoming.weight.copy_(incoming.weight[perm])
        incoming.bias.copy_(incoming.bias[perm])
        outgoing.weight.copy_(outgoing.weight[:, torch.argsort(perm)])


def permute_nothing(model, layer_index, perm):
    weight = model.weight_layers()[layer_index].weight
    weight = weight[perm]  # noqa: F841 - rebinds a local name: the model does not change


def permute_scatter(model, layer_index, perm):
    """Function-preserving, but the inverse convention: new[perm] = old."""
    incoming = model.weight_layers()[layer_index]
    outgoing = model.weight_layers()[layer_index + 1]
    with torch.no_grad():
        w, b, v = incoming.weight.clone(), incoming.bias.clone(), outgoing.weight.clone()
        incoming.weight[perm] = w
        incoming.bias[perm] = b
        outgoing.weight[:, perm] = v


def permute_off_by_one(model, layer_index, perm):
    permute_reference(model, layer_index + 1, perm)


def permute_in_a_loop(model, layer_index, perm):
    """Row by row in place: rows are overwritten before they are read."""
    incoming, outgoing = model.weight_layers()[layer_index], model.weight_layers()[layer_index + 1]
    with torch.no_grad():
        for j, p in enumerate(perm.tolist()):
            incoming.weight[j] = incoming.weight[p]
            incoming.bias[j] = incoming.bias[p]
            outgoing.weight[:, j] = outgoing.weight[:, p]


def permute_returns_copy(model, layer_index, perm):
    import copy
    twin = copy.deepcopy(model)
    permute_reference(twin, layer_index, perm)
    return twin


def test_check_permutation_is_not_an_involution():
    perm = torch.tensor(PERMUTATION)
    assert not torch.equal(perm[perm], torch.arange(len(perm)))
    assert not torch.equal(perm, torch.argsort(perm))


@pytest.mark.parametrize("fn", [permute_reference, permute_with_matrix, permute_library])
def test_permutation_accepts(fn):
    report = check_permutation(fn)
    assert "all 6 checks passed" in report


@pytest.mark.parametrize("fn, prop, hint", [
    (permute_rows_only, "same function", "also permute the columns of the next layer"),
    (permute_same_layer_columns, "same function", "columns of layer k itself"),
    (permute_no_bias, "same function", "bias was not permuted"),
    (permute_inverse_columns, "same function", "inverse permutation"),
    (permute_nothing, "parameters changed", "in place"),
    (permute_returns_copy, "parameters changed", "returned a module"),
    (permute_scatter, "the given permutation", "inverse permutation"),
    (permute_off_by_one, "the given permutation", "check the layer index"),
    (permute_in_a_loop, "same function", "overwrites rows it still has to read"),
])
def test_permutation_rejects(fn, prop, hint):
    _rejects(check_permutation, fn, prop, hint)


def test_skip_net_changes_but_plain_net_does_not():
    assert skip_net_changes(permute_reference) > 1e-3
    assert skip_net_changes(permute_reference, layer_index=0) > 1e-3
    assert skip_net_changes(permute_nothing) == 0.0


def permute_without_no_grad(model, layer_index, perm):
    layer = model.weight_layers()[layer_index]
    layer.weight[:] = layer.weight[perm]


def test_permutation_crash_is_reported():
    error = _rejects(check_permutation, permute_without_no_grad, "runs without error",
                     "torch.no_grad()")
    assert "RuntimeError" in error.measured


def permute_to_half(model, layer_index, perm):
    permute_reference(model, layer_index, perm)
    model.weight_layers()[layer_index].half()


def test_permutation_compares_dtypes():
    _rejects(check_permutation, permute_to_half, "parameters keep their shape and dtype",
             "no .half()")


def test_permutation_hidden_net():
    assert "all 6 checks passed" in check_permutation(permute_reference, hidden=True)

    def for_width_8(model, layer_index, perm):   # ignores perm: the public one, hard-coded
        permute_reference(model, layer_index, torch.tensor(PERMUTATION))

    assert "all 6 checks passed" in check_permutation(for_width_8)
    _rejects(check_permutation, for_width_8, "runs without error", "torch.no_grad()",
             hidden=True)


# --------------------------------------------------------------------------------------------
# 5. Function change (the proof by code that a skip breaks the symmetry)
# --------------------------------------------------------------------------------------------

def change_reference(model, permute_fn, layer_index, perm, x):
    twin = copy.deepcopy(model)
    permute_fn(twin, layer_index, perm)
    with torch.no_grad():
        return (model(x) - twin(x)).abs().max().item()


def change_as_tensor(model, permute_fn, layer_index, perm, x):
    twin = copy.deepcopy(model)
    permute_fn(twin, layer_index, perm)
    return torch.max(torch.abs(model(x).detach() - twin(x).detach()))


def change_permuting_the_original(model, permute_fn, layer_index, perm, x):
    """Valid too: keep an untouched copy, permute the original, then put it back."""
    saved = copy.deepcopy(model.state_dict())
    with torch.no_grad():
        before = model(x)
        permute_fn(model, layer_index, perm)
        after = model(x)
    model.load_state_dict(saved)
    return float((before - after).abs().amax())


@pytest.mark.parametrize("fn", [change_reference, change_as_tensor,
                                change_permuting_the_original])
def test_check_function_change_accepts_valid_solutions(fn):
    report = check_function_change(fn)
    for prop in ("uses the given permute_fn", "model left unchanged", "about 0 for a plain net",
                 "largest output difference"):
        assert prop in report


def _in_place(model, permute_fn, layer_index, perm, x):
    with torch.no_grad():
        before = model(x)
        permute_fn(model, layer_index, perm)
        return (before - model(x)).abs().max().item()


def _with_itself(model, permute_fn, layer_index, perm, x):
    twin = copy.deepcopy(model)
    permute_fn(twin, layer_index, perm)
    with torch.no_grad():
        return (twin(x) - twin(x)).abs().max().item()


def _mean(model, permute_fn, layer_index, perm, x):
    twin = copy.deepcopy(model)
    permute_fn(twin, layer_index, perm)
    with torch.no_grad():
        return (model(x) - twin(x)).abs().mean().item()


def _total(model, permute_fn, layer_index, perm, x):
    twin = copy.deepcopy(model)
    permute_fn(twin, layer_index, perm)
    with torch.no_grad():
        return (model(x) - twin(x)).abs().sum().item()


def _signed(model, permute_fn, layer_index, perm, x):
    twin = copy.deepcopy(model)
    permute_fn(twin, layer_index, perm)
    with torch.no_grad():
        return (model(x) - twin(x)).max().item()


def _own_permutation(model, permute_fn, layer_index, perm, x):
    twin = copy.deepcopy(model)
    permute_units_(twin.weight_layers()[1], twin.weight_layers()[2], perm)
    with torch.no_grad():
        return (model(x) - twin(x)).abs().max().item()


def _difference_tensor(model, permute_fn, layer_index, perm, x):
    twin = copy.deepcopy(model)
    permute_fn(twin, layer_index, perm)
    with torch.no_grad():
        return (model(x) - twin(x)).abs()


@pytest.mark.parametrize("fn, prop, hint", [
    (_in_place, "model left unchanged", "permute a copy"),
    (_with_itself, "largest output difference", "both outputs come from the same network"),
    (_mean, "largest output difference", "mean absolute difference"),
    (_total, "largest output difference", "sum of absolute differences"),
    (_signed, "largest output difference", "absolute value before the maximum"),
    (_own_permutation, "uses the given permute_fn", "apply the permute_fn argument"),
    (_difference_tensor, "runs and returns a number", "return a number"),
])
def test_check_function_change_names_each_mistake(fn, prop, hint):
    _rejects(check_function_change, fn, prop, hint)


def test_check_function_change_leaves_the_random_state_alone():
    state = torch.random.get_rng_state()
    check_function_change(change_reference)
    assert torch.equal(torch.random.get_rng_state(), state)


def _as_string(model, permute_fn, layer_index, perm, x):
    return str(change_reference(model, permute_fn, layer_index, perm, x))


def _as_int_tensor(model, permute_fn, layer_index, perm, x):
    return torch.tensor(change_reference(model, permute_fn, layer_index, perm, x)).int()


def _as_numpy(model, permute_fn, layer_index, perm, x):
    import numpy as np
    return np.float64(change_reference(model, permute_fn, layer_index, perm, x))


def _as_float64_tensor(model, permute_fn, layer_index, perm, x):
    return torch.tensor(change_reference(model, permute_fn, layer_index, perm, x),
                        dtype=torch.float64)


@pytest.mark.parametrize("fn", [_as_numpy, _as_float64_tensor])
def test_check_function_change_accepts_any_real_number(fn):
    assert "all 5 checks passed" in check_function_change(fn)
    assert "all 5 checks passed" in check_function_change(fn, hidden=True)


@pytest.mark.parametrize("fn, hint", [(_as_string, "not a string"),
                                      (_as_int_tensor, "return a number")])
def test_check_function_change_wants_a_number(fn, hint):
    _rejects(check_function_change, fn, "runs and returns a number", hint)
