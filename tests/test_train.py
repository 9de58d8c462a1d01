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
    import importlib

    train_module = importlib.import_module("skiplab.train")

    optimisers = []
    original = train_module._make_optimizer

    def keep(*args, **kwargs):
        optimisers.append(original(*args, **kwargs))
        return optimisers[-1]

    monkeypatch.setattr(train_module, "_make_optimizer", keep)
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
