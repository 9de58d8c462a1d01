import pytest
import torch

from skiplab import load_digits, seed_everything, train
from skiplab.models import DeepMLP, MLPConfig


@pytest.fixture(scope="module")
def digits():
    return load_digits(device="cpu")


def make_model(seed: int = 0, architecture: str = "plain_bn") -> DeepMLP:
    seed_everything(seed)
    return DeepMLP(MLPConfig(64, 10, depth=4, width=16, activation="relu",
                             architecture=architecture))


def weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_training_reduces_the_loss(digits):
    history = train(make_model(), digits, steps=60, batch_size=64, lr=0.05, record_every=20)
    assert history.step == [20, 40, 60]
    assert history.train_loss[-1] < history.train_loss[0]
    assert history.test_acc[-1] > 0.5


def test_same_seed_repeats_exactly(digits):
    first = make_model()
    train(first, digits, steps=30, batch_size=32, seed=3)
    second = make_model()
    train(second, digits, steps=30, batch_size=32, seed=3)
    for key, value in weights(first).items():
        assert torch.equal(value, second.state_dict()[key]), key
    third = make_model()
    train(third, digits, steps=30, batch_size=32, seed=4)  # another batch order
    assert not torch.equal(third.readout.weight, first.readout.weight)


class Interrupt(Exception):
    pass


def test_resume_after_interruption_matches_an_uninterrupted_run(digits, tmp_path):
    kwargs = dict(steps=40, batch_size=32, lr=0.05, record_every=10, seed=1,
                  lr_milestones=[25], optimizer="sgd")
    reference = make_model()
    reference_history = train(reference, digits, **kwargs)

    path = tmp_path / "run.pt"

    def stop_at_23(step, loss):
        if step == 23:
            raise Interrupt

    interrupted = make_model()
    with pytest.raises(Interrupt):
        train(interrupted, digits, checkpoint=path, checkpoint_every=5, on_step=stop_at_23,
              **kwargs)
    assert path.exists()

    resumed = make_model(seed=99)  # a fresh process would start from other weights
    history = train(resumed, digits, checkpoint=path, checkpoint_every=5, **kwargs)
    for key, value in weights(reference).items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    assert history == reference_history


def test_dropout_rng_is_resumed_too(digits, tmp_path):
    def model():
        seed_everything(0)
        return torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(),
                                   torch.nn.Dropout(0.5), torch.nn.Linear(32, 10))

    kwargs = dict(steps=20, batch_size=32, seed=0, optimizer="adam", lr=1e-3)
    reference = model()
    train(reference, digits, **kwargs)

    def stop(step, loss):
        if step == 12:
            raise Interrupt

    path = tmp_path / "drop.pt"
    with pytest.raises(Interrupt):
        train(model(), digits, checkpoint=path, checkpoint_every=4, on_step=stop, **kwargs)
    torch.manual_seed(12345)  # the new process's global RNG is elsewhere
    resumed = model()
    train(resumed, digits, checkpoint=path, checkpoint_every=4, **kwargs)
    for key, value in reference.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_checkpoint_of_another_run_is_refused(digits, tmp_path):
    path = tmp_path / "run.pt"
    train(make_model(), digits, steps=5, batch_size=32, checkpoint=path)
    with pytest.raises(ValueError, match="belongs to another run"):
        train(make_model(), digits, steps=10, batch_size=32, checkpoint=path)


def test_bad_arguments_are_clear_errors(digits):
    with pytest.raises(ValueError, match="optimizer='rmsprop'"):
        train(make_model(), digits, steps=1, optimizer="rmsprop")
    with pytest.raises(ValueError, match="steps=0"):
        train(make_model(), digits, steps=0)


def test_warmup_and_milestones_set_the_learning_rate_per_step(monkeypatch):
    from skiplab.train import Optimization

    optimisers = []
    original = Optimization.build

    def keep(self, params):
        opt, schedule = original(self, params)
        optimisers.append(opt)
        return opt, schedule

    monkeypatch.setattr(Optimization, "build", keep)
    data = load_digits(seed=0, device="cpu")
    seed_everything(0)
    model = DeepMLP(MLPConfig(64, 10, depth=3, width=8))
    lrs = []
    train(model, data, steps=8, batch_size=8, lr=1.0, warmup=(2, 0.1), lr_milestones=(5,),
          on_step=lambda step, loss: lrs.append(round(optimisers[0].param_groups[0]["lr"], 8)),
          show_progress=False, seed=0)
    # after step s (counted from 1) the optimiser holds the rate of step s + 1
    assert lrs == [0.1, 1.0, 1.0, 1.0, 0.1, 0.1, 0.1, 0.1]
    optimisers.clear()
    lrs.clear()
    train(model, data, steps=6, batch_size=8, lr=1.0, warmup=(4, "linear"),
          on_step=lambda step, loss: lrs.append(round(optimisers[0].param_groups[0]["lr"], 8)),
          show_progress=False, seed=0)
    # linear warm-up: steps 1..4 use 1/4, 2/4, 3/4, 4/4 of the rate
    assert lrs == [0.5, 0.75, 1.0, 1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="warmup="):
        train(model, data, steps=2, warmup=(4, "cosine"), show_progress=False)


def _finished_checkpoint(digits, path, **kwargs):
    train(make_model(), digits, steps=6, batch_size=32, seed=0, checkpoint=path,
          show_progress=False, **kwargs)


@pytest.mark.filterwarnings("ignore:for .* meta parameter")
def test_a_checkpoint_loads_when_the_data_lives_off_the_cpu(digits, tmp_path):
    """The saved CPU random state must stay on the CPU: loading it onto the data's device
    (CUDA on a GPU; the meta device here, which needs no GPU) made set_rng_state fail."""
    path = tmp_path / "run.pt"
    _finished_checkpoint(digits, path)
    reference = train(make_model(), digits, steps=6, batch_size=32, seed=0,
                      show_progress=False)
    off_cpu = make_model().to("meta")
    history = train(off_cpu, digits.to("meta"), steps=6, batch_size=32, seed=0,
                    checkpoint=path, show_progress=False)   # finished: no step runs
    assert history == reference


def test_gpu_random_states_are_saved_and_restored(digits, tmp_path, monkeypatch):
    """With CUDA in use, every GPU's random state goes into the checkpoint and comes back
    on resume (faked here: this test needs no GPU)."""
    gpu_states = [torch.arange(16, dtype=torch.uint8), torch.arange(16, 32, dtype=torch.uint8)]
    restored = {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [s.clone() for s in gpu_states])
    monkeypatch.setattr(torch.cuda, "set_rng_state",
                        lambda state, device=None: restored.__setitem__(device, state.clone()))
    path = tmp_path / "run.pt"

    def stop(step, loss):
        if step == 4:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(make_model(), digits, steps=6, batch_size=32, seed=0, checkpoint=path,
              checkpoint_every=2, on_step=stop, show_progress=False)
    saved = torch.load(path, weights_only=True)
    assert [torch.equal(a, b) for a, b in zip(saved["rng"]["cuda"], gpu_states)] == [True, True]
    train(make_model(), digits, steps=6, batch_size=32, seed=0, checkpoint=path,
          checkpoint_every=2, show_progress=False)
    assert sorted(restored) == [0, 1]
    assert all(torch.equal(restored[i], gpu_states[i]) for i in range(2))


class _RunsCode:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').close()",)


def test_a_checkpoint_that_would_run_code_is_refused(digits, tmp_path):
    path, marker = tmp_path / "run.pt", tmp_path / "code-ran"
    torch.save({"step": 1, "payload": _RunsCode(marker)}, path)
    with pytest.raises(ValueError, match="not loaded"):
        train(make_model(), digits, steps=6, batch_size=32, checkpoint=path,
              show_progress=False)
    assert not marker.exists()


def _flip(x, generator):
    return x.flip(-1)


@pytest.mark.parametrize("change, key", [
    (dict(lr=0.01), "lr"),
    (dict(momentum=0.5), "momentum"),
    (dict(optimizer="adam"), "optimizer"),
    (dict(weight_decay=1e-4), "weight_decay"),
    (dict(lr_milestones=[3]), "lr_milestones"),
    (dict(warmup=(2, 0.1)), "warmup"),
    (dict(record_every=2), "record_every"),
    (dict(steps=8), "steps"),
    (dict(seed=1), "seed"),
    (dict(augment=_flip), "augment"),
])
def test_a_checkpoint_of_another_configuration_is_refused_by_name(digits, tmp_path, change,
                                                                  key):
    path = tmp_path / "run.pt"
    base = dict(steps=6, batch_size=32, seed=0, lr=0.05, show_progress=False)
    first = train(make_model(), digits, checkpoint=path, **base)
    assert train(make_model(), digits, checkpoint=path, **base) == first   # same: reused
    with pytest.raises(ValueError, match=rf"\b{key}: checkpoint .*, this call .*delete the file"):
        train(make_model(), digits, checkpoint=path, **{**base, **change})


def test_a_checkpoint_of_another_model_or_data_is_refused(digits, tmp_path):
    path = tmp_path / "run.pt"
    kwargs = dict(steps=6, batch_size=32, seed=0, show_progress=False, checkpoint=path)
    train(make_model(), digits, **kwargs)
    wider = DeepMLP(MLPConfig(64, 10, depth=4, width=32, activation="relu",
                              architecture="plain_bn"))
    with pytest.raises(ValueError, match=r"model_state\.\S+: checkpoint 'float32\(16, 16\)', "
                                         r"this call 'float32\(32, 32\)'"):
        train(wider, digits, **kwargs)
    frozen = make_model()
    frozen.readout.weight.requires_grad_(False)
    with pytest.raises(ValueError, match=r"model_state\.readout\.weight: checkpoint "
                                         r"'float32\(10, 16\)', "
                                         r"this call 'float32\(10, 16\) frozen'"):
        train(frozen, digits, **kwargs)
    fewer = type(digits)(digits.x_train[:500], digits.y_train[:500], digits.x_test,
                         digits.y_test, digits.n_classes)
    with pytest.raises(ValueError, match=r"data\.x_train: checkpoint"):
        train(make_model(), fewer, **kwargs)


def test_concurrent_saves_to_one_path_do_not_collide(tmp_path, monkeypatch):
    """Two runs saving the same checkpoint at once: both finish, the file is whole."""
    import importlib
    import threading

    train_module = importlib.import_module("skiplab.train.checkpoint")
    path = tmp_path / "run.pt"
    both_written = threading.Barrier(2, timeout=20)
    replace = train_module.os.replace

    def replace_when_both_have_written(src, dst):
        both_written.wait()      # the worst interleaving: both temp files exist, then rename
        replace(src, dst)

    monkeypatch.setattr(train_module.os, "replace", replace_when_both_have_written)
    errors = []

    def save(value):
        try:
            train_module.save_atomically({"writer": value, "w": torch.full((1000,), value)},
                                          path)
        except BaseException as err:   # noqa: BLE001 - reported below
            errors.append(err)

    writers = [threading.Thread(target=save, args=(v,)) for v in (1, 2)]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    assert errors == []
    state = torch.load(path, weights_only=True)
    assert torch.equal(state["w"], torch.full((1000,), state["writer"]))
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]   # no temporary file left


def test_a_failed_save_leaves_the_old_checkpoint_and_no_temporary_file(tmp_path):
    import importlib

    train_module = importlib.import_module("skiplab.train.checkpoint")
    path = tmp_path / "run.pt"
    train_module.save_atomically({"step": 1}, path)
    with pytest.raises(Exception):
        train_module.save_atomically({"step": 2, "bad": lambda: None}, path)   # unpicklable
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]
