"""The device guard: every chapter's gpu- and paper-scale networks, one training step, no GPU.

A GPU run fails on a tensor made on the wrong device: ``torch.zeros(n)`` in a forward pass
lands on the CPU while the activations live on CUDA. Without a GPU we make the same mistake
visible another way: the model and the data sit on the CPU, *explicitly*, while torch's
default device is ``meta``. Anything the code creates without ``device=`` then lands on
``meta`` and collides with the CPU tensors (``meta`` is the one device every torch build has;
its tensors carry shapes and no data). Each job is one network of a chapter at full size,
read from the chapter's sizes cell (``tools/scale_budget.py``), trained for one step with
the chapter's own training function on random data of the right shapes.

What it cannot see: code in the notebooks' own cells, and tensors made on the CPU on purpose
(``device="cpu"``) and then used with CUDA ones. The `run` of a whole chapter on a real GPU
remains the full check.
"""

import copy
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from skiplab.data import DataSplit, SegmentationSplit
from skiplab.finetune import train_embedding
from skiplab.heads import SkipConnectionHead
from skiplab.segmentation import train_segmentation
from skiplab.tailor import to_embedding_model
from skiplab.train import train

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import scale_budget  # noqa: E402

CPU = torch.device("cpu")
CASES = [(chapter, scale) for chapter in scale_budget.CHAPTERS for scale in ("gpu", "paper")]


def random_batch(job: scale_budget.Job, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    if job.kind == "sequence":
        x = torch.randint(0, job.n_classes, (n, *job.example_shape), generator=g, device=CPU)
        return x, torch.randint(0, job.n_classes, x.shape, generator=g, device=CPU)
    x = torch.randn(n, *job.example_shape, generator=g, device=CPU)
    if job.float64:
        x = x.double()
    if job.kind == "segment":
        return x, torch.randint(0, 2, (n, *job.example_shape[1:]), generator=g, device=CPU)
    return x, torch.arange(n, device=CPU) % job.n_classes


def one_step(job: scale_budget.Job, model: nn.Module) -> nn.Module:
    """One training step of ``model`` with the chapter's training function; returns what was
    trained. Called with torch's default device set to ``meta``."""
    if job.kind in ("classify", "sequence"):
        x, y = random_batch(job, 4)
        train(model, DataSplit(x, y, x, y, job.n_classes), steps=1, batch_size=2,
              record_every=1, seed=0, show_progress=False)
        return model
    if job.kind == "segment":
        x, y = random_batch(job, 4)
        thin = torch.zeros(y.shape, dtype=torch.bool, device=CPU)
        data = SegmentationSplit(x, y, thin, thin, x, y, thin, thin)
        train_segmentation(model, data, steps=1, batch_size=2, record_every=1, seed=0,
                           show_progress=False)
        return model
    assert job.kind == "embed"
    x, y = random_batch(job, 8)
    width = model.config.widths[-1]
    with torch.device(CPU):          # the notebook builds its heads on the CPU, as a reader would
        head = SkipConnectionHead(width)
    for tailored in (to_embedding_model(copy.deepcopy(model), head=head),
                     to_embedding_model(model, freeze=True, output_dim=width)):
        train_embedding(tailored, x, y, steps=1, evaluate=lambda m: {}, batch_size=8,
                        record_every=1, seed=0, show_progress=False)
    return tailored


@pytest.mark.parametrize("chapter,scale", CASES, ids=[f"{c}-{s}" for c, s in CASES])
def test_one_training_step_at_full_size(chapter, scale):
    jobs = scale_budget.jobs(chapter, scale)
    assert jobs, f"{chapter} has no jobs at {scale} scale"
    for job in jobs:
        torch.manual_seed(0)
        model = job.build().to(CPU)                # built where the notebook builds it
        if job.float64:
            model = model.double()
        before = [p.detach().clone() for p in model.parameters()]
        with torch.device("meta"):                 # anything made without device= lands here
            trained = one_step(job, model)
        assert all(p.device == CPU for p in trained.parameters()), job.label
        assert all(torch.isfinite(p).all() for p in trained.parameters()), job.label
        if job.kind != "embed":     # there the encoder is copied, or frozen under a new head
            assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters())), \
                f"{chapter}/{job.label}: one training step changed no parameter"


class _ImplicitDevice(nn.Module):
    """A forward pass with the classic mistake: a tensor created without ``device=``."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 3)

    def forward(self, x):
        return self.linear(x) + torch.zeros(3)


def test_guard_catches_a_tensor_made_without_device():
    model = _ImplicitDevice().to(CPU)
    job = scale_budget.Job("test", "implicit", _ImplicitDevice, (4,), 3, "classify", 1, 2, 0)
    with pytest.raises((RuntimeError, NotImplementedError)):
        with torch.device("meta"):
            one_step(job, model)
    one_step(job, model)                            # without the guard the same step runs
