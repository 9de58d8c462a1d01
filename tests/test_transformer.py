"""Transformer blocks: attention paths, parity with torch.nn, symmetry, causality, tasks."""

import pytest
import torch
from torch import nn

from skiplab.blocks.attention import MultiHeadAttention, attention, causal_mask, merge_masks
from skiplab.blocks.transformer import EncoderBlock, PositionalEncoding
from skiplab.data import DataSplit
from skiplab.models.transformer import (EncoderDecoder, SequenceModel, TransformerConfig,
                                        decoder_block_from_torch, encoder_block_from_torch)
from skiplab.probes.attention import collapse_profile, stream_grad_norms, token_uniformity
from skiplab.sequences import make_sequence_task, sequence_target
from skiplab.train import evaluate, train

B, T, D, H = 3, 7, 32, 4
TOL = dict(atol=2e-5, rtol=1e-5)


def padding_mask() -> torch.Tensor:
    pad = torch.zeros(B, T, dtype=torch.bool)
    pad[0, -2:] = True
    pad[2, -3:] = True
    return pad


# --- attention ---------------------------------------------------------------------------

def test_written_out_attention_rows_are_distributions_and_a_one_hot_score_copies_a_value():
    q = torch.randn(2, 5, 8)
    k = torch.randn(2, 6, 8)
    v = torch.randn(2, 6, 3)
    out, w = attention(q, k, v)
    assert out.shape == (2, 5, 3) and w.shape == (2, 5, 6)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 5))
    # a mask that leaves one key per query: the output is that key's value
    mask = torch.full((5, 6), float("-inf"))
    mask[:, 2] = 0
    out, _ = attention(q, k, v, mask)
    torch.testing.assert_close(out, v[:, 2:3].expand(2, 5, 3))


@pytest.mark.parametrize("masks", ["none", "causal", "bool", "float", "padding", "all"])
def test_fast_path_equals_the_written_out_path_in_outputs_and_gradients(masks):
    torch.manual_seed(0)
    x = torch.randn(B, T, D, requires_grad=True)
    fast = MultiHeadAttention(D, H, fast=True)
    slow = MultiHeadAttention(D, H, fast=False)
    slow.load_state_dict(fast.state_dict())
    bool_mask = torch.rand(T, T) > 0.7
    bool_mask.fill_diagonal_(False)            # every query keeps at least itself
    kw = {"none": {}, "causal": dict(is_causal=True), "bool": dict(attn_mask=bool_mask),
          "float": dict(attn_mask=torch.randn(T, T)), "padding": dict(key_padding_mask=padding_mask()),
          "all": dict(is_causal=True, attn_mask=bool_mask, key_padding_mask=padding_mask())}[masks]
    a, b = fast(x, **kw), slow(x, **kw)
    keep = ~a.isnan()                          # "all" can mask every key of a padded query
    assert keep.any()
    torch.testing.assert_close(a[keep], b[keep], **TOL)
    ga = torch.autograd.grad(a[keep].sum(), [x, *fast.parameters()])
    gb = torch.autograd.grad(b[keep].sum(), [x, *slow.parameters()])
    for u, w in zip(ga, gb):
        torch.testing.assert_close(u, w, **TOL)


def test_causal_attention_with_more_keys_than_queries_agrees_on_both_paths():
    torch.manual_seed(0)
    fast, slow = MultiHeadAttention(D, H, fast=True), MultiHeadAttention(D, H, fast=False)
    slow.load_state_dict(fast.state_dict())
    q, kv = torch.randn(B, 4, D), torch.randn(B, 9, D)
    torch.testing.assert_close(fast(q, kv, is_causal=True), slow(q, kv, is_causal=True), **TOL)
    assert causal_mask(2, 3).tolist() == [[False, True, True], [False, False, True]]


def test_mask_conventions_true_means_may_not_attend():
    torch.manual_seed(0)
    mha = MultiHeadAttention(D, H, fast=False)
    x = torch.randn(B, T, D)
    _, w = mha(x, attn_mask=causal_mask(T), need_weights=True)
    assert w.shape == (B, H, T, T)
    assert (w[..., causal_mask(T)] == 0).all() and (w[..., ~causal_mask(T)] > 0).all()
    _, w = mha(x, key_padding_mask=padding_mask(), need_weights=True)
    assert (w[0, :, :, -2:] == 0).all() and (w[1] > 0).all()
    # a float mask is added: -inf removes, 0 keeps
    float_mask = torch.zeros(T, T).masked_fill(causal_mask(T), float("-inf"))
    torch.testing.assert_close(mha(x, attn_mask=float_mask), mha(x, is_causal=True))


def test_wrong_shapes_are_named():
    mha = MultiHeadAttention(D, H)
    with pytest.raises(ValueError, match=r"query has shape \(7, 32\); expected \(batch, length, 32\)"):
        mha(torch.randn(T, D))
    with pytest.raises(ValueError, match="key_padding_mask has shape"):
        mha(torch.randn(B, T, D), key_padding_mask=torch.zeros(B, T + 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="attn_mask has shape"):
        merge_masks(torch.zeros(T, T + 1, dtype=torch.bool), None, False, batch=B, heads=H,
                    queries=T, keys=T, dtype=torch.float32, device=torch.device("cpu"))
    with pytest.raises(ValueError, match="not divisible"):
        MultiHeadAttention(30, 4)
    with pytest.raises(ValueError, match="norm='middle' is not known"):
        EncoderBlock(D, H, norm="middle")
    with pytest.raises(ValueError, match=r"expected \(batch, length, 32\)"):
        EncoderBlock(D, H)(torch.randn(B, T, 16))


# --- parity with torch.nn ----------------------------------------------------------------

MASK_CASES = ["none", "causal", "padding"]


def torch_kwargs(case, prefix="src"):
    if case == "causal":
        return {f"{prefix}_mask": causal_mask(T), f"{prefix}_is_causal": True} \
            if prefix == "tgt" else dict(src_mask=causal_mask(T), is_causal=True)
    if case == "padding":
        return {f"{prefix}_key_padding_mask": padding_mask()}
    return {}


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("case", MASK_CASES)
@pytest.mark.parametrize("fast", [True, False])
def test_encoder_block_equals_torchs_encoder_layer(norm_first, mode, case, fast):
    torch.manual_seed(1)
    layer = nn.TransformerEncoderLayer(D, H, 64, dropout=0.0, batch_first=True,
                                       norm_first=norm_first)
    block = encoder_block_from_torch(layer, fast=fast)
    assert block.norm == ("pre" if norm_first else "post")
    layer.train(mode == "train")
    block.train(mode == "train")
    x = torch.randn(B, T, D)
    ours = {"none": {}, "causal": dict(is_causal=True),
            "padding": dict(key_padding_mask=padding_mask())}[case]
    with torch.no_grad():                    # in eval mode torch may take its fused fast path
        expected = layer(x, **torch_kwargs(case))
        got = block(x, **ours)
    torch.testing.assert_close(got, expected, **TOL)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("case", MASK_CASES)
def test_decoder_block_equals_torchs_decoder_layer(norm_first, mode, case):
    torch.manual_seed(2)
    layer = nn.TransformerDecoderLayer(D, H, 64, dropout=0.0, batch_first=True,
                                       norm_first=norm_first, activation="gelu")
    block = decoder_block_from_torch(layer)
    layer.train(mode == "train")
    block.train(mode == "train")
    x, memory = torch.randn(B, T, D), torch.randn(B, 5, D)
    memory_pad = torch.zeros(B, 5, dtype=torch.bool)
    memory_pad[1, -2:] = True
    ours = {"none": {}, "causal": dict(tgt_is_causal=True),
            "padding": dict(tgt_key_padding_mask=padding_mask())}[case]
    with torch.no_grad():
        expected = layer(x, memory, memory_key_padding_mask=memory_pad,
                         **torch_kwargs(case, "tgt"))
        got = block(x, memory, memory_key_padding_mask=memory_pad, **ours)
    torch.testing.assert_close(got, expected, **TOL)


def test_parity_holds_for_gradients_too():
    torch.manual_seed(3)
    layer = nn.TransformerEncoderLayer(D, H, 64, dropout=0.0, batch_first=True)
    block = encoder_block_from_torch(layer)
    x = torch.randn(B, T, D)
    g_torch = torch.autograd.grad(layer(x, src_key_padding_mask=padding_mask()).sum(),
                                  layer.linear1.weight)[0]
    g_ours = torch.autograd.grad(block(x, key_padding_mask=padding_mask()).sum(),
                                 block.ff.linear1.weight)[0]
    torch.testing.assert_close(g_ours, g_torch, **TOL)


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors")
def test_torchs_encoder_stack_zeroes_padded_positions_in_eval_and_skiplab_does_not():
    """The documented difference: nn.TransformerEncoder's nested-tensor fast path (eval,
    no grad) returns 0 at padded positions; skiplab (and torch in train mode) computes a
    value there. Valid positions agree."""
    torch.manual_seed(4)
    layer = nn.TransformerEncoderLayer(D, H, 64, dropout=0.0, batch_first=True)
    stack = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=True).eval()
    blocks = [encoder_block_from_torch(m).eval() for m in stack.layers]
    x, pad = torch.randn(B, T, D), padding_mask()
    with torch.no_grad():
        expected = stack(x, src_key_padding_mask=pad)
        got = x
        for block in blocks:
            got = block(got, key_padding_mask=pad)
    torch.testing.assert_close(got[~pad], expected[~pad], **TOL)
    assert (expected[pad] == 0).all() and (got[pad] != 0).any()


def test_converter_refuses_what_it_cannot_convert():
    with pytest.raises(TypeError, match="TransformerEncoderLayer"):
        encoder_block_from_torch(nn.Linear(2, 2))
    layer = nn.TransformerEncoderLayer(D, H, 64, batch_first=True, activation=torch.tanh)
    with pytest.raises(ValueError, match="no skiplab equivalent"):
        encoder_block_from_torch(layer)


# --- blocks and models -------------------------------------------------------------------

@pytest.mark.parametrize("norm", ["post", "pre"])
@pytest.mark.parametrize("skip", ["residual", "none"])
def test_every_parameter_receives_a_gradient(norm, skip):
    torch.manual_seed(0)
    for model, args in (
        (SequenceModel(TransformerConfig(vocab_size=11, d_model=D, n_heads=H, n_layers=2,
                                         norm=norm, skip=skip)),
         (torch.randint(0, 11, (B, T)),)),
        (EncoderDecoder(TransformerConfig(vocab_size=11, d_model=D, n_heads=H, n_layers=2,
                                          norm=norm, skip=skip)),
         (torch.randint(0, 11, (B, 5)), torch.randint(0, 11, (B, T)))),
    ):
        out = model(*args)
        assert out.shape == (B, T, 11)
        out.pow(2).mean().backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
        assert not missing, missing


def test_skip_switch_changes_only_the_addition():
    torch.manual_seed(0)
    x = torch.randn(B, T, D)
    with_skip = EncoderBlock(D, H, norm="post")
    without = EncoderBlock(D, H, norm="post", skip="none")
    assert with_skip.residual and not without.residual
    without.load_state_dict(with_skip.state_dict())
    h = with_skip.norm1(x + with_skip.self_attn(x))
    torch.testing.assert_close(with_skip(x), with_skip.norm2(h + with_skip.ff(h)))
    g = without.norm1(without.self_attn(x))
    torch.testing.assert_close(without(x), without.norm2(without.ff(g)))
    pre = EncoderBlock(D, H, norm="pre")
    h = x + pre.self_attn(pre.norm1(x))
    torch.testing.assert_close(pre(x), h + pre.ff(pre.norm2(h)))


def test_without_positions_self_attention_is_permutation_equivariant_and_with_them_not():
    torch.manual_seed(0)
    tokens = torch.randint(0, 20, (B, 10))
    perm = torch.randperm(10)
    for norm in ("post", "pre"):
        config = TransformerConfig(vocab_size=20, d_model=D, n_heads=H, n_layers=3, norm=norm,
                                   positional=False)
        model = SequenceModel(config).eval()
        with torch.no_grad():
            torch.testing.assert_close(model(tokens[:, perm]), model(tokens)[:, perm], **TOL)
        positional = SequenceModel(TransformerConfig(**{**config.__dict__, "positional": True}))
        positional.load_state_dict(model.state_dict())
        with torch.no_grad():
            gap = (positional(tokens[:, perm]) - positional(tokens)[:, perm]).abs().max()
        assert gap > 1e-2


def test_a_causal_block_does_not_look_ahead():
    torch.manual_seed(0)
    model = SequenceModel(TransformerConfig(vocab_size=20, d_model=D, n_heads=H, n_layers=3,
                                            causal=True))
    tokens = torch.randint(0, 20, (B, 10))
    changed = tokens.clone()
    changed[:, 6:] = (changed[:, 6:] + 1) % 20     # change the future of position 5
    with torch.no_grad():
        a, b = model(tokens), model(changed)
    torch.testing.assert_close(a[:, :6], b[:, :6])
    assert (a[:, 6:] - b[:, 6:]).abs().max() > 1e-3
    # the decoder of the encoder-decoder is causal in its target too
    seq2seq = EncoderDecoder(TransformerConfig(vocab_size=20, d_model=D, n_heads=H, n_layers=2))
    src = torch.randint(0, 20, (B, 8))
    with torch.no_grad():
        a, b = seq2seq(src, tokens), seq2seq(src, changed)
    torch.testing.assert_close(a[:, :6], b[:, :6])


def test_positional_encoding_is_the_papers_table():
    pe = PositionalEncoding(8, max_len=16)
    x = torch.zeros(1, 16, 8)
    table = pe(x)[0]
    t, i = 5, 1
    assert table[t, 2 * i].item() == pytest.approx(torch.sin(torch.tensor(t / 10000 ** (2 * i / 8))).item())
    assert table[t, 2 * i + 1].item() == pytest.approx(torch.cos(torch.tensor(t / 10000 ** (2 * i / 8))).item())
    with pytest.raises(ValueError, match="length <= 16"):
        pe(torch.zeros(1, 17, 8))


def test_without_blocks_deletes_only_the_named_blocks():
    model = SequenceModel(TransformerConfig(vocab_size=5, d_model=D, n_heads=H, n_layers=4))
    smaller = model.without_blocks([1, 3])
    assert len(smaller.blocks) == 2 and len(model.blocks) == 4
    assert smaller.blocks[1].self_attn.q_proj.weight.data_ptr() != model.blocks[2].self_attn.q_proj.weight.data_ptr()
    torch.testing.assert_close(smaller.blocks[1].self_attn.q_proj.weight,
                               model.blocks[2].self_attn.q_proj.weight)
    with pytest.raises(IndexError):
        model.without_blocks([4])


def test_xavier_init_is_xavier_and_pytorch_init_is_torchs():
    model = SequenceModel(TransformerConfig(vocab_size=5, d_model=64, n_heads=4, n_layers=1))
    w = model.blocks[0].ff.linear2.weight         # (64, 256): Xavier bound sqrt(6 / 320)
    assert w.abs().max() <= (6 / 320) ** 0.5 and w.abs().max() > 0.9 * (6 / 320) ** 0.5
    assert (model.blocks[0].ff.linear2.bias == 0).all()
    torch_model = SequenceModel(TransformerConfig(vocab_size=5, d_model=64, n_heads=4,
                                                  n_layers=1, init="pytorch"))
    w = torch_model.blocks[0].ff.linear2.weight   # Kaiming-uniform a=sqrt(5): bound 1/sqrt(256)
    assert w.abs().max() <= 1 / 16 and w.abs().max() > 0.9 / 16
    with pytest.raises(ValueError, match="init='he' is not known"):
        TransformerConfig(vocab_size=5, init="he")


# --- probes and tasks --------------------------------------------------------------------

def test_token_uniformity_is_zero_for_equal_tokens_and_scale_free():
    x = torch.randn(2, 1, 6).expand(2, 5, 6)
    assert token_uniformity(x).abs().max() < 1e-6
    y = torch.randn(2, 5, 6)
    torch.testing.assert_close(token_uniformity(3 * y), token_uniformity(y))
    assert ((token_uniformity(y) > 0) & (token_uniformity(y) <= 1)).all()


def test_pure_attention_collapses_and_the_skip_keeps_it_apart():
    torch.manual_seed(0)
    x = torch.randn(4, 16, D, dtype=torch.float64)
    layers = [MultiHeadAttention(D, H).double() for _ in range(6)]
    plain = collapse_profile(layers, x)
    skip = collapse_profile(layers, x, skip=True)
    assert plain.shape == (7,)
    assert plain[-1] < 1e-10 and skip[-1] > 0.5


def test_stream_grad_norms_leaves_grads_alone():
    model = SequenceModel(TransformerConfig(vocab_size=7, d_model=D, n_heads=H, n_layers=2))
    tokens = torch.randint(0, 7, (B, T))
    norms = stream_grad_norms(model, tokens, tokens, [b.ff.linear2.weight for b in model.blocks])
    assert norms.shape == (2,) and (norms > 0).all()
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("task", ["reverse", "sort", "shift", "prefix_sum"])
def test_sequence_tasks_are_deterministic_and_correct(task):
    a = make_sequence_task(task, length=6, vocab=7, n_train=20, n_test=5, seed=3, offset=2)
    b = make_sequence_task(task, length=6, vocab=7, n_train=20, n_test=5, seed=3, offset=2)
    c = make_sequence_task(task, length=6, vocab=7, n_train=20, n_test=5, seed=4, offset=2)
    assert torch.equal(a.x_train, b.x_train) and not torch.equal(a.x_train, c.x_train)
    assert a.x_train.shape == a.y_train.shape == (20, 6) and a.x_test.shape == (5, 6)
    x = a.x_train[0].tolist()
    expected = {"reverse": x[::-1], "sort": sorted(x), "shift": x[-2:] + x[:-2],
                "prefix_sum": [sum(x[:t + 1]) % 7 for t in range(6)]}[task]
    assert a.y_train[0].tolist() == expected
    assert torch.equal(sequence_target(task, a.x_test, 7, 2), a.y_test)


def test_unknown_task_is_named():
    with pytest.raises(ValueError, match="task='copy' is not known; accepted: '?reverse"):
        make_sequence_task("copy")


def test_train_and_evaluate_handle_per_token_targets_and_linear_warmup():
    torch.manual_seed(0)
    device = torch.device("cpu")     # data and model on one explicit device, whatever the machine
    data = make_sequence_task("shift", length=6, vocab=5, n_train=256, n_test=64, seed=0,
                              device=device)
    model = SequenceModel(TransformerConfig(vocab_size=5, d_model=D, n_heads=H,
                                            n_layers=1)).to(device)
    history = train(model, data, steps=150, batch_size=32, optimizer="adam", lr=1e-2,
                    warmup=(10, "linear"), record_every=50, show_progress=False)
    assert history.test_acc[-1] > 0.9            # copying from one position back is easy
    loss, acc = evaluate(model, data.x_test, data.y_test)
    assert acc == pytest.approx(history.test_acc[-1])
    bad = DataSplit(data.x_train, data.y_train[:, :3], data.x_test, data.y_test, 5)
    with pytest.raises(ValueError, match="do not fit targets"):
        train(model, bad, steps=1, show_progress=False)


@pytest.mark.parametrize("norm_first", [False, True])
def test_eval_parity_is_against_torchs_fused_fast_path(norm_first, monkeypatch):
    """The eval-mode comparisons above really meet torch's fused encoder-layer kernel."""
    calls = []
    fused = torch._transformer_encoder_layer_fwd

    def spy(*args, **kwargs):
        calls.append(1)
        return fused(*args, **kwargs)

    monkeypatch.setattr(torch, "_transformer_encoder_layer_fwd", spy)
    torch.manual_seed(5)
    layer = nn.TransformerEncoderLayer(D, H, 64, dropout=0.0, batch_first=True,
                                       norm_first=norm_first).eval()
    block = encoder_block_from_torch(layer).eval()
    x = torch.randn(B, T, D)
    for case in MASK_CASES:
        calls.clear()
        ours = {"none": {}, "causal": dict(is_causal=True),
                "padding": dict(key_padding_mask=padding_mask())}[case]
        with torch.no_grad():
            expected = layer(x, **torch_kwargs(case))
            got = block(x, **ours)
        assert calls, f"torch did not take its fast path for {case}"
        keep = ~padding_mask() if case == "padding" else torch.ones(B, T, dtype=torch.bool)
        torch.testing.assert_close(got[keep], expected[keep], **TOL)
