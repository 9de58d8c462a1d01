"""Heads, the tailor, and the fine-tuning tools (loss, retrieval metrics, training loop)."""

import pytest
import torch
import torchvision

from skiplab import load_digits
from skiplab.finetune import retrieval_metrics, supervised_contrastive_loss, train_embedding
from skiplab.heads import (HEADS, EmptyHead, GatedHead, LinearHead, ProjectionHead,
                           SequentialHead, SkipConnectionHead, WideningHead, load_head)
from skiplab.models import CifarNet, CifarNetConfig, resnet50
from skiplab.tailor import (cache_embeddings, dense_layers, list_layers, to_embedding_model)

D = 16


def all_heads():
    return [EmptyHead(D), LinearHead(D, 8), GatedHead(D), WideningHead(D),
            SkipConnectionHead(D), SkipConnectionHead(D, gate="zero", n_layers=2),
            ProjectionHead(D, 12), SequentialHead(GatedHead(D), ProjectionHead(D, 4))]


@pytest.mark.parametrize("head", all_heads(), ids=lambda h: type(h).__name__)
def test_heads_map_embeddings_and_round_trip_through_a_folder(head, tmp_path):
    torch.manual_seed(0)
    x = torch.randn(6, D)
    head.train()
    with torch.no_grad():
        head(x)                       # one batch's worth of BatchNorm statistics too
    head.eval()
    y = head(x)
    assert y.shape == (6, head.output_dim)
    head.save(tmp_path / "head")
    loaded = load_head(tmp_path / "head").eval()
    assert type(loaded) is type(head)
    assert torch.equal(loaded(x), y)
    with pytest.raises(ValueError, match=f"expects \\(B, {D}\\)"):
        head(torch.randn(6, D + 1))


def test_every_head_class_is_registered():
    assert {"EmptyHead", "LinearHead", "GatedHead", "WideningHead", "SkipConnectionHead",
            "ProjectionHead", "SequentialHead"} <= set(HEADS)


def test_skip_head_identity_at_initialisation():
    torch.manual_seed(0)
    x = torch.randn(32, D)
    zero = SkipConnectionHead(D, gate="zero", n_layers=3)
    assert torch.equal(zero(x), x)
    sigmoid = SkipConnectionHead(D)
    bound = sigmoid.initial_gate * sigmoid.fcs[0](x).abs()
    assert sigmoid.initial_gate == pytest.approx(0.01799, abs=1e-5)
    assert ((sigmoid(x) - x).abs() <= bound + 1e-6).all()
    assert not torch.equal(sigmoid(x), x)


def test_zero_gate_gets_a_gradient_at_step_zero_and_its_linear_layer_does_not():
    torch.manual_seed(0)
    head = SkipConnectionHead(D, gate="zero")
    head(torch.randn(8, D)).pow(2).sum().backward()
    assert head.fcs[0].weight.grad.abs().max() == 0
    assert head.gates[0].grad.abs().max() > 0
    opt = torch.optim.SGD(head.parameters(), lr=0.1)
    opt.step()
    opt.zero_grad()
    head(torch.randn(8, D)).pow(2).sum().backward()
    assert head.fcs[0].weight.grad.abs().max() > 0      # after one step it learns


def test_sigmoid_gate_head_trains_both_parts_from_the_start():
    torch.manual_seed(0)
    head = SkipConnectionHead(D)
    head(torch.randn(8, D)).pow(2).sum().backward()
    assert head.fcs[0].weight.grad.abs().max() > 0 and head.gates[0].grad.abs().max() > 0


def test_head_configuration_errors():
    with pytest.raises(ValueError, match="gate='open' is not known; accepted: 'sigmoid', 'zero'"):
        SkipConnectionHead(D, gate="open")
    with pytest.raises(ValueError, match="activation='elu' is not known; accepted: 'relu'"):
        WideningHead(D, activation="elu")
    with pytest.raises(ValueError, match="outputs 8 dimensions"):
        SequentialHead(LinearHead(D, 8), GatedHead(D))
    with pytest.raises(ValueError, match="input_dim"):
        LinearHead(0)


def test_load_head_names_an_unknown_head(tmp_path):
    folder = GatedHead(D).save(tmp_path / "h")
    (folder / "config.json").write_text('{"head": "Nope", "config": {}}')
    with pytest.raises(ValueError, match="known heads"):
        load_head(folder)


@pytest.mark.parametrize("maker, expected", [
    (lambda: torchvision.models.resnet50(), 2048), (lambda: resnet50(), 2048),
    (lambda: CifarNet(CifarNetConfig(depth=8, widths=(4, 8, 16))), 16)])
def test_tailor_cuts_before_the_classifier_and_freezes(maker, expected):
    torch.manual_seed(0)
    model = to_embedding_model(maker(), freeze=True, head=SkipConnectionHead(expected))
    assert model.embedding_dim == expected
    x = torch.randn(2, 3, 64, 64) if expected == 2048 else torch.randn(2, 3, 16, 16)
    model.train()
    model(x).pow(2).sum().backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(p.grad is not None for p in model.head.parameters())
    assert not model.encoder.training           # a frozen encoder stays in eval mode


def test_tailor_output_dim_attaches_a_projection_head_and_partial_freeze_by_prefix():
    model = to_embedding_model(resnet50(), output_dim=1024, freeze=["stem", "stages.0"])
    assert isinstance(model.head, ProjectionHead) and model.output_dim == 1024
    frozen = {n for n, p in model.encoder.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith(("stem.", "stages.0.")) for n in frozen)
    assert model.encoder.stages[1][0].branch[0].conv.weight.requires_grad


def test_tailor_cut_after_a_named_layer_matches_the_features():
    torch.manual_seed(0)
    net = resnet50().eval()
    model = to_embedding_model(net, "pool", example=torch.randn(1, 3, 64, 64)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net.features(x))
    assert model.embedding_dim == 2048


def test_tailor_refuses_bad_requests_clearly():
    with pytest.raises(ValueError, match="did you mean 'stages.3'"):
        to_embedding_model(resnet50(), "stagse.3")
    with pytest.raises(ValueError, match="leaves nothing to train"):
        to_embedding_model(resnet50(), freeze=True)
    with pytest.raises(ValueError, match="not both"):
        to_embedding_model(resnet50(), head=EmptyHead(2048), output_dim=8)
    with pytest.raises(ValueError, match="needs an example"):
        to_embedding_model(resnet50(), "pool")
    with pytest.raises(ValueError, match="matches no parameter"):
        to_embedding_model(resnet50(), freeze=["stemm"])
    net = resnet50()
    with pytest.raises(ValueError, match="head expects 512 dimensions but the cut .* 2048"):
        to_embedding_model(net, head=EmptyHead(512), freeze=True)
    assert all(p.requires_grad for p in net.parameters())    # a refused request changes nothing


def test_list_and_dense_layers():
    net = torchvision.models.resnet18()
    assert dense_layers(net) == ["fc"]
    layers = list_layers(net, torch.randn(1, 3, 64, 64))
    assert layers[0].name == "conv1" and layers[-1].name == "fc"
    assert layers[-1].output_shape == (1, 1000) and layers[-1].parameters == 513_000


def test_cached_embeddings_equal_the_frozen_encoders_and_train_the_same_head():
    torch.manual_seed(0)
    data = load_digits(images=True, seed=0, device="cpu")
    encoder = CifarNet(CifarNetConfig(depth=8, widths=(4, 8, 16), in_channels=1))
    plain = to_embedding_model(encoder, freeze=True, output_dim=8)
    cached = to_embedding_model(
        CifarNet(CifarNetConfig(depth=8, widths=(4, 8, 16), in_channels=1)),
        freeze=True, output_dim=8)
    cached.load_state_dict(plain.state_dict())
    x, y = data.x_train[:200], data.y_train[:200]
    cache = cache_embeddings(cached, x, batch_size=64)
    plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(cache, plain.embed(x))
    kw = dict(steps=5, evaluate=lambda m: {}, batch_size=32, seed=0, show_progress=False)
    train_embedding(plain, x, y, **kw)
    train_embedding(cached.head, cache, y, **kw)
    for a, b in zip(plain.head.parameters(), cached.head.parameters()):
        torch.testing.assert_close(a, b)


def test_supervised_contrastive_loss_prefers_clustered_classes():
    labels = torch.tensor([0, 0, 1, 1])
    clustered = torch.tensor([[1.0, 0], [0.9, 0.1], [0, 1.0], [0.1, 0.9]])
    mixed = torch.tensor([[1.0, 0], [0, 1.0], [0.9, 0.1], [0.1, 0.9]])
    assert supervised_contrastive_loss(clustered, labels) < supervised_contrastive_loss(
        mixed, labels)
    with pytest.raises(ValueError, match="no anchor"):
        supervised_contrastive_loss(torch.randn(3, 2), torch.tensor([0, 1, 2]))


def test_retrieval_metrics_on_a_hand_example():
    # 1-D positions on a circle: each point's nearest neighbours are known
    z = torch.tensor([[1.0, 0.0], [0.99, 0.14], [0.0, 1.0], [-0.1, 0.99]])
    labels = torch.tensor([0, 0, 1, 0])
    m = retrieval_metrics(z, labels, k=1)
    # queries: 0 -> 1 (hit), 1 -> 0 (hit), 2 -> 3 (miss), 3 -> 2 (miss; first hit: 1 at rank 2)
    assert m["precision@1"] == pytest.approx(0.5)
    assert m["mrr"] == pytest.approx((1 + 1 + 0 + 0.5) / 4)


def test_train_embedding_records_step_zero_and_improves_retrieval():
    torch.manual_seed(0)
    data = load_digits(seed=0, device="cpu")
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(),
                                torch.nn.Linear(32, 16))
    history = train_embedding(
        model, data.x_train, data.y_train, steps=60, record_every=30, seed=0,
        evaluate=lambda m: retrieval_metrics(m(data.x_test), data.y_test, k=5),
        show_progress=False)
    assert history.step == [0, 30, 60]
    assert history.metrics["precision@5"][-1] > history.metrics["precision@5"][0]
    with pytest.raises(ValueError, match="optimizer"):
        train_embedding(model, data.x_train, data.y_train, steps=1, optimizer="lbfgs",
                        evaluate=lambda m: {}, show_progress=False)


def test_data_classes_selects_and_relabels():
    data = load_digits(images=True, seed=0, device="cpu")
    target = data.classes([5, 6, 7, 8, 9])
    assert target.n_classes == 5 and set(target.y_train.tolist()) == set(range(5))
    assert len(target.y_train) == int((data.y_train >= 5).sum())
    with pytest.raises(ValueError, match="distinct"):
        data.classes([1, 1])


def test_tailor_refuses_a_shared_module_and_drops_the_classifier():
    net = torchvision.models.resnet50()
    with pytest.raises(ValueError, match="runs 3 times"):
        to_embedding_model(net, "layer4.2.relu", example=torch.randn(1, 3, 64, 64))
    model = to_embedding_model(torchvision.models.resnet18())
    assert isinstance(model.encoder.fc, torch.nn.Identity)
    assert model.trainable_parameters() == 11_689_512 - 513_000


def test_partially_frozen_batchnorm_keeps_its_statistics():
    torch.manual_seed(0)
    model = to_embedding_model(CifarNet(CifarNetConfig(depth=8, widths=(4, 8, 16))),
                               freeze=["stem"], head=SkipConnectionHead(16))
    model.train()
    before = model.encoder.stem.norm.running_mean.clone()
    model(torch.randn(8, 3, 16, 16))
    assert torch.equal(model.encoder.stem.norm.running_mean, before)
    assert model.encoder.stages[0][0].branch[0].norm.training    # trainable parts train


def test_cache_embeddings_refuses_a_trainable_encoder():
    model = to_embedding_model(CifarNet(CifarNetConfig(depth=8, widths=(4, 8, 16))))
    with pytest.raises(ValueError, match="frozen encoder"):
        cache_embeddings(model, torch.randn(4, 3, 16, 16))


def test_retrieval_metrics_break_ties_by_order():
    z = torch.ones(3, 2)                    # identical embeddings: all similarities tie
    labels = torch.tensor([0, 1, 0])
    a = retrieval_metrics(z, labels, k=1)
    b = retrieval_metrics(z, labels, k=1)
    assert a == b
    # stable order: query 0 sees 1 then 2; query 1 sees 0; query 2 sees 0 (a hit)
    assert a["precision@1"] == pytest.approx(1 / 3)


def test_without_head_shares_the_encoder():
    model = to_embedding_model(CifarNet(CifarNetConfig(depth=8, widths=(4, 8, 16))),
                               head=SkipConnectionHead(16, gate="zero"))
    bare = model.without_head()
    assert bare.encoder is model.encoder and isinstance(bare.head, EmptyHead)
    x = torch.randn(2, 3, 16, 16)
    model.eval()
    bare.eval()
    with torch.no_grad():
        torch.testing.assert_close(bare(x), model(x))     # zero gate: identity head


def test_finetune_figures_have_their_controls_and_traces():
    import numpy as np

    from skiplab.figures import (embedding_scatter_figure, forgetting_figure,
                                 retrieval_curves_figure)
    from skiplab.finetune import EmbeddingHistory

    histories = {}
    for name in ("a", "b"):
        h = EmbeddingHistory()
        h.record(0, float("nan"), {"precision@5": 0.5, "mrr": 0.6})
        h.record(10, 1.0, {"precision@5": 0.7, "mrr": 0.8})
        histories[name] = h
    fig = retrieval_curves_figure(histories, reference=0.5)
    assert len(fig.data) == 4 and [t.visible for t in fig.data] == [True, True, False, False]
    (menu,) = fig.layout.updatemenus
    assert [b.label for b in menu.buttons] == ["precision@5", "mrr"]
    assert menu.buttons[1].args[0]["visible"] == [False, False, True, True]
    bars = forgetting_figure({"a": {"x": 1.0, "y": 0.5}, "b": {"x": 0.2}})
    assert [t.name for t in bars.data] == ["x", "y"] and np.isnan(bars.data[1].y[1])
    scatter = embedding_scatter_figure({"p": np.zeros((4, 2)), "q": np.ones((4, 2))},
                                       np.array([0, 0, 1, 1]))
    assert len(scatter.data) == 4


def small_encoder() -> CifarNet:
    torch.manual_seed(0)
    return CifarNet(CifarNetConfig(depth=8, widths=(4, 8, 16)))


@pytest.mark.parametrize("attach", [dict(output_dim=8), dict(head=SkipConnectionHead(16)),
                                    dict(head=SequentialHead(GatedHead(16), LinearHead(16, 4)))],
                         ids=["output_dim", "head", "sequential"])
def test_tailor_puts_the_head_on_the_encoders_device(attach):
    """A GPU encoder must get a GPU head; the meta device stands in for the GPU here."""
    model = to_embedding_model(small_encoder().to("meta"), freeze=True, **attach)
    tensors = dict(model.named_parameters()) | dict(model.named_buffers())
    assert {name for name, t in tensors.items() if t.device.type != "meta"} == set()
    assert model(torch.randn(2, 3, 16, 16, device="meta")).device.type == "meta"


def test_tailor_puts_the_head_in_the_encoders_dtype():
    model = to_embedding_model(small_encoder().double(), output_dim=8)
    assert {p.dtype for p in model.parameters()} == {torch.float64}
    assert model(torch.randn(2, 3, 16, 16, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.parametrize("head", all_heads(), ids=lambda h: type(h).__name__)
def test_every_head_moves_whole_to_another_device(head):
    """Nothing a head computes with is created on the CPU in forward."""
    head = head.to("meta").eval()
    assert head(torch.randn(3, D, device="meta")).device.type == "meta"


def test_skip_dropout_keeps_the_zero_gate_start_and_dropout_does_not():
    torch.manual_seed(0)
    x = torch.randn(64, D)
    skip = SkipConnectionHead(D, gate="zero", skip_dropout=0.5).train()
    assert torch.equal(skip(x), x)               # the identity route is never dropped
    plain = SkipConnectionHead(D, gate="zero", dropout=0.5).train()
    assert not torch.equal(plain(x), x)          # dropout before the split hits x itself
    assert torch.equal(plain.eval()(x), x)


def test_gate_shift_measures_the_gate_parameter_from_its_start():
    head = SkipConnectionHead(D, n_layers=2)
    assert head.gate_shift() == [0.0, 0.0]
    with torch.no_grad():
        head.gates[0].add_(0.5)
        head.gates[1][:D // 2] -= 1.0
    assert head.gate_shift() == pytest.approx([0.5, 0.5])
    zero = SkipConnectionHead(D, gate="zero")
    with torch.no_grad():
        zero.gates[0].fill_(-0.25)
    assert zero.gate_shift() == pytest.approx([0.25])


def test_sigmoid_pre_activation_moves_like_a_zero_gate_under_adam_not_under_sgd():
    # the same data and steps: SGD moves the sigmoid's pre-activation far less than a zero
    # gate (slope 0.018), Adam moves the two by comparable amounts
    def shift(gate, optimizer):
        torch.manual_seed(0)
        head = SkipConnectionHead(D, gate=gate)
        x, target = torch.randn(128, D), torch.randn(128, D)
        opt = (torch.optim.SGD(head.parameters(), lr=0.05) if optimizer == "sgd"
               else torch.optim.Adam(head.parameters(), lr=1e-2))
        for _ in range(20):
            opt.zero_grad()
            torch.nn.functional.mse_loss(head(x), target).backward()
            opt.step()
        return head.gate_shift()[0]
    assert shift("sigmoid", "sgd") < 0.1 * shift("zero", "sgd")
    assert 0.33 < shift("sigmoid", "adam") / shift("zero", "adam") < 3


def test_embedding_retrieval_restores_the_mode_and_gap_uses_equal_sets():
    from skiplab.finetune import embedding_retrieval, retrieval_gap
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.5)).train()
    x = torch.randn(30, 4)
    y = torch.arange(30) % 3
    first = embedding_retrieval(model, x, y, k=3)
    assert model.training and first == embedding_retrieval(model, x, y, k=3)  # eval mode
    # identical train and test data: the gap is 0 (the subset is the whole set)
    gap = retrieval_gap(model, x, y, x, y, k=3, seed=1)
    assert gap["gap"] == 0.0 and gap["train"] == first["precision@3"]
    with pytest.raises(ValueError, match="larger than the training set"):
        retrieval_gap(model, x[:10], y[:10], x, y)


def test_linear_probe_then_finetune_freezes_the_encoder_only_during_the_probe():
    from skiplab.finetune import train_linear_probe_then_finetune
    data = load_digits(images=True, seed=0, device="cpu")
    torch.manual_seed(0)
    model = to_embedding_model(CifarNet(CifarNetConfig(depth=8, widths=(4, 8, 16),
                                                       in_channels=1)), head=LinearHead(16))
    x, y = data.x_train[:200], data.y_train[:200]
    before = {n: p.detach().clone() for n, p in model.encoder.named_parameters()}
    head_before = model.head.fc.weight.detach().clone()
    seen = []

    def evaluate(m):
        assert m is model
        seen.append(({n: p.detach().clone() for n, p in m.encoder.named_parameters()},
                     m.head.fc.weight.detach().clone()))
        return {"one": 1.0}

    probe, tune = train_linear_probe_then_finetune(
        model, x, y, probe_steps=4, steps=3, evaluate=evaluate, batch_size=32, lr=0.05,
        optimizer="sgd", record_every=2, seed=0, show_progress=False)
    assert probe.step == [0, 2, 4] and tune.step == [0, 2, 3]
    encoder_after_probe, head_after_probe = seen[len(probe.step) - 1]
    assert all(torch.equal(encoder_after_probe[n], before[n]) for n in before)
    assert not torch.equal(head_after_probe, head_before)            # the probe trained
    assert torch.equal(seen[len(probe.step)][1], head_after_probe)   # FT starts there
    assert all(p.requires_grad for p in model.encoder.parameters())
    assert any(not torch.equal(p, before[n]) for n, p in model.encoder.named_parameters())
    with pytest.raises(ValueError, match="already frozen"):
        frozen = to_embedding_model(small_encoder(), freeze=True, head=LinearHead(16))
        train_linear_probe_then_finetune(frozen, torch.randn(8, 3, 8, 8), torch.zeros(8),
                                         probe_steps=1, steps=1, evaluate=lambda m: {})


def test_random_head_retrieval_draws_fresh_heads_reproducibly():
    from skiplab.finetune import random_head_retrieval
    torch.manual_seed(0)
    z = torch.randn(40, D)
    y = torch.arange(40) % 4
    identity = random_head_retrieval(z, y, lambda: EmptyHead(D), draws=3, k=3)
    assert identity.shape == (3,)
    assert torch.all(identity == retrieval_metrics(z, y, k=3)["precision@3"])
    state = torch.random.get_rng_state()
    a = random_head_retrieval(z, y, lambda: LinearHead(D), draws=5, k=3, seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)        # caller's state kept
    assert torch.equal(a, random_head_retrieval(z, y, lambda: LinearHead(D), draws=5, k=3,
                                                seed=1))
    assert len(set(a.tolist())) > 1 and ((a >= 0) & (a <= 1)).all()  # different draws
    with pytest.raises(ValueError, match="draws"):
        random_head_retrieval(z, y, lambda: LinearHead(D), draws=0)
