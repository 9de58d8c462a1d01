"""The paper-scale experiments: what each trains at each scale, with the chapters' own models.

Each :class:`Experiment` names the data and a list of :class:`RunSpec` (one network and its
training recipe) per scale. The runner (:mod:`skiplab.experiments.runner`) trains every run
with :func:`skiplab.train.train`, the loop the chapters use; the models are the chapters'
own configs (``CifarNet``, ``ResidualTower``). Nothing here is a second copy of a model or
a loop.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import DataSplit
from ..landscape import grid_minima, nonconvex_fraction, random_direction, surface_2d
from ..models import (CifarNet, CifarNetConfig, ResidualTower, TowerConfig, UNet, UNetConfig,
                      densenet_bc, match_decoder_scale)
from .estimate import training_seconds

__all__ = ["EXPERIMENTS", "Experiment", "RunSpec"]

# shapes and sizes of the datasets the experiments use: (example shape, classes, train, test)
DATASETS: dict[str, tuple[tuple[int, ...], int, int, int]] = {
    "digits-images": ((1, 8, 8), 10, 1437, 360),
    "digits-flat": ((64,), 10, 1437, 360),
    "cifar10": ((3, 32, 32), 10, 50_000, 10_000),
    "cifar10-flat": ((3072,), 10, 50_000, 10_000),
    "shapes-48": ((1, 48, 48), 2, 512, 128),
    "shapes-96": ((1, 96, 96), 2, 2048, 256),
    "pets-128": ((1, 128, 128), 2, 3680, 3669),
}


@dataclass(frozen=True)
class RunSpec:
    """One network of an experiment and how it is trained (the arguments of ``train``)."""

    label: str
    build: Callable[[], nn.Module]
    steps: int
    batch: int
    lr: float
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0
    milestones: tuple[int, ...] = ()
    warmup: tuple[int, float] | None = None
    record_every: int = 100
    task: str = "classify"
    """``"classify"`` (:func:`skiplab.train.train`) or ``"segment"``
    (:func:`skiplab.segmentation.train_segmentation`, Adam)."""
    measure: Callable[[nn.Module, DataSplit, int], dict[str, Any]] | None = None
    """``measure(model, data, seed) -> metrics`` after training (rank 0 only), e.g. a loss
    surface; its result joins the run's metrics under ``"measured"``."""
    measure_examples: int = 0
    """Forward passes ``measure`` makes, for the time estimate."""


@dataclass(frozen=True)
class Experiment:
    """A chapter's experiment at the sizes of each scale.

    Args:
        name: the command's NAME.
        title: one line for ``--list``.
        chapter: the book page that shows its results.
        sizes: ``{scale: {size: value}}``, plain data (this is the run's configuration).
        runs: ``runs(sizes) -> [RunSpec]``.
        published: what the paper reports, ``{run label: value}``, with ``published_note``
            saying which number (e.g. test error in %) and where it is printed.
    """

    name: str
    title: str
    chapter: str
    sizes: Mapping[str, Mapping[str, Any]]
    runs: Callable[[Mapping[str, Any]], list[RunSpec]]
    published: Mapping[str, float] = field(default_factory=dict)
    published_note: str = ""

    def config(self, scale: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The sizes at ``scale`` with ``overrides`` applied; unknown keys are refused."""
        if scale not in self.sizes:
            raise ValueError(f"scale={scale!r} is not known for {self.name!r}; accepted: "
                             f"{', '.join(self.sizes)}")
        sizes = dict(self.sizes[scale])
        unknown = sorted(set(overrides or {}) - set(sizes))
        if unknown:
            raise ValueError(f"--set {', '.join(unknown)}: not a size of {self.name!r}; "
                             f"its sizes: {', '.join(sorted(sizes))}")
        sizes.update(overrides or {})
        return sizes

    def data_shape(self, config: Mapping[str, Any]) -> tuple[tuple[int, ...], int, int, int]:
        return DATASETS[config["dataset"]]

    def estimate_hours(self, scale: str) -> float:
        """Estimated GPU-hours on one T4-class GPU (FLOP count; an estimate)."""
        return _estimate_hours(self.name, scale)

    def _estimate_seconds(self, scale: str) -> float:
        config = self.config(scale)
        shape, _, _, n_test = self.data_shape(config)
        seconds = 0.0
        for spec in self.runs(config):
            records = math.ceil(spec.steps / spec.record_every)
            seconds += training_seconds(spec.build, shape, steps=spec.steps, batch=spec.batch,
                                        eval_examples=records * n_test + spec.measure_examples)
        return seconds


@functools.cache
def _estimate_hours(name: str, scale: str) -> float:
    # counting FLOPs walks every layer of every run's network: once per process is enough
    return EXPERIMENTS[name]._estimate_seconds(scale) / 3600


# ------------------------------------------------------------ He et al. 2016, CIFAR-10 table

def _cifar_net(s: Mapping[str, Any], depth: int, skip: str) -> Callable[[], nn.Module]:
    """A builder of the chapters' CIFAR net (plain twin with ``skip="none"``) for ``s``."""
    shape, classes, _, _ = DATASETS[s["dataset"]]
    return lambda: CifarNet(CifarNetConfig(depth=depth, skip=skip, widths=tuple(s["widths"]),
                                           in_channels=shape[0], n_classes=classes))


def _resnet_cifar_runs(s: Mapping[str, Any]) -> list[RunSpec]:
    out = []
    for depth in s["depths"]:
        for arch, skip in (("plain", "none"), ("residual", "residual")):
            build = _cifar_net(s, depth, skip)
            # He et al.: the 110-layer nets warm up at lr 0.01 for about 400 iterations
            warmup = (s["warmup_steps"], 0.1) if depth >= 110 and s["warmup_steps"] else None
            out.append(RunSpec(f"{arch}-{depth}", build, steps=s["steps"], batch=s["batch"],
                               lr=s["lr"], weight_decay=s["weight_decay"],
                               milestones=tuple(s["milestones"]), warmup=warmup,
                               record_every=s["record_every"]))
    return out


RESNET_CIFAR = Experiment(
    name="resnet-cifar",
    title="He et al. 2016: plain vs residual CIFAR nets at several depths (Table 6, Fig. 6)",
    chapter="book/why/degradation",
    sizes={
        "quick": dict(dataset="digits-images", widths=[8, 16, 32], depths=[8, 20], steps=300,
                      milestones=[150, 225], batch=128, lr=0.1, weight_decay=1e-4,
                      record_every=50, warmup_steps=0, augment=False),
        "gpu": dict(dataset="cifar10", widths=[16, 32, 64], depths=[20, 56], steps=8_000,
                    milestones=[4_000, 6_000], batch=128, lr=0.1, weight_decay=1e-4,
                    record_every=500, warmup_steps=400, augment=True),
        "paper": dict(dataset="cifar10", widths=[16, 32, 64], depths=[20, 32, 44, 56, 110],
                      steps=64_000, milestones=[32_000, 48_000], batch=128, lr=0.1,
                      weight_decay=1e-4, record_every=1_000, warmup_steps=400, augment=True),
    },
    runs=_resnet_cifar_runs,
    published={"residual-20": 8.75, "residual-32": 7.51, "residual-44": 7.17,
               "residual-56": 6.97, "residual-110": 6.43},
    published_note="test error (%) on CIFAR-10, He et al. 2016, Table 6 (ResNet-110: best of "
                   "5 runs; the paper also gives 6.61 ± 0.16)",
)


# ------------------------------------------------------ Huang et al. 2017, DenseNet-BC-100

def _densenet_runs(s: Mapping[str, Any]) -> list[RunSpec]:
    shape, classes, _, _ = DATASETS[s["dataset"]]

    def build():
        return densenet_bc(s["depth"], s["growth_rate"], in_channels=shape[0], n_classes=classes)
    return [RunSpec(f"densenet-bc-{s['depth']}-k{s['growth_rate']}", build, steps=s["steps"],
                    batch=s["batch"], lr=s["lr"], weight_decay=s["weight_decay"],
                    milestones=tuple(s["milestones"]), record_every=s["record_every"])]


DENSENET_BC = Experiment(
    name="densenet-bc",
    title="Huang et al. 2017: DenseNet-BC-100 (k = 12) on CIFAR-10 (Table 2), SGD momentum "
          "without Nesterov",
    chapter="book/arch/densenet",
    sizes={
        "quick": dict(dataset="digits-images", depth=22, growth_rate=6, steps=300,
                      milestones=[150, 225], batch=64, lr=0.1, weight_decay=1e-4,
                      record_every=50, augment=False),
        "gpu": dict(dataset="cifar10", depth=100, growth_rate=12, steps=8_000,
                    milestones=[4_000, 6_000], batch=64, lr=0.1, weight_decay=1e-4,
                    record_every=500, augment=True),
        # 300 epochs of 50,000 images at batch 64, the rate divided by 10 at 50 % and 75 %
        "paper": dict(dataset="cifar10", depth=100, growth_rate=12, steps=234_375,
                      milestones=[117_188, 175_782], batch=64, lr=0.1, weight_decay=1e-4,
                      record_every=2_500, augment=True),
    },
    runs=_densenet_runs,
    published={"densenet-bc-100-k12": 4.51},
    published_note="test error (%) on CIFAR-10 with augmentation (C10+), Huang et al. 2017, "
                   "Table 2; the paper uses Nesterov momentum, this recipe plain momentum",
)


# ------------------------------------------------ Li et al. 2018, loss surfaces of ResNet-56

def _surface(s: Mapping[str, Any]) -> Callable[[nn.Module, DataSplit, int], dict[str, Any]]:
    def measure(model: nn.Module, data: DataSplit, seed: int) -> dict[str, Any]:
        grid = np.linspace(-1, 1, s["grid"])
        generator = torch.Generator().manual_seed(seed)
        d1 = random_direction(model, generator=generator)
        d2 = random_direction(model, generator=generator)
        x, y = data.x_train[:s["eval_examples"]], data.y_train[:s["eval_examples"]]
        surface = surface_2d(model, d1, d2, x, y, grid, show_progress=False)
        step = max(1, round(0.2 / (grid[1] - grid[0])))          # differences over 0.2
        return {"grid": grid.tolist(), "loss": surface.loss.tolist(),
                "accuracy": surface.accuracy.tolist(), "centre_loss": surface.centre_loss,
                "nonconvex_fraction": nonconvex_fraction(surface.loss, step=step),
                "grid_minima": grid_minima(surface.loss)}
    return measure


def _landscape_runs(s: Mapping[str, Any]) -> list[RunSpec]:
    out = []
    for depth in s["depths"]:
        for arch, skip in (("plain", "none"), ("resnet", "residual")):
            out.append(RunSpec(f"{arch}-{depth}", _cifar_net(s, depth, skip), steps=s["steps"], batch=s["batch"],
                               lr=s["lr"], weight_decay=s["weight_decay"],
                               milestones=tuple(s["milestones"]),
                               record_every=s["record_every"], measure=_surface(s),
                               measure_examples=s["grid"] ** 2 * s["eval_examples"]))
    return out


LANDSCAPE = Experiment(
    name="landscape",
    title="Li et al. 2018: filter-normalised loss surfaces of plain and residual CIFAR nets "
          "(ResNet-56 with and without skips, Fig. 5), trained with He et al.'s 64k-step "
          "recipe and weight decay 5e-4; surfaces on 10,000 training images",
    chapter="book/why/landscape",
    sizes={
        "quick": dict(dataset="digits-images", widths=[8, 16, 32], depths=[8, 32], steps=300,
                      milestones=[150, 225], batch=128, lr=0.1, weight_decay=5e-4,
                      record_every=50, grid=11, eval_examples=256, augment=False),
        "gpu": dict(dataset="cifar10", widths=[16, 32, 64], depths=[20, 56], steps=4_000,
                    milestones=[2_000, 3_000], batch=128, lr=0.1, weight_decay=5e-4,
                    record_every=500, grid=21, eval_examples=1_024, augment=True),
        "paper": dict(dataset="cifar10", widths=[16, 32, 64], depths=[20, 56], steps=64_000,
                      milestones=[32_000, 48_000], batch=128, lr=0.1, weight_decay=5e-4,
                      record_every=1_000, grid=51, eval_examples=10_000, augment=True),
    },
    runs=_landscape_runs,
)


# ------------------------------------------------- Ronneberger et al. 2015: U-Net long skips

def _unet_runs(s: Mapping[str, Any]) -> list[RunSpec]:
    shape, classes, _, _ = DATASETS[s["dataset"]]
    base = UNetConfig(in_channels=shape[0], n_classes=classes, base_width=s["base_width"],
                      depth=s["depth"], padding="same", long_skip="concat", norm=True)
    target = sum(p.numel() for p in UNet(base).parameters())
    configs = {"concat": base,
               **{kind: match_decoder_scale(dataclasses.replace(base, long_skip=kind), target)
                  for kind in ("add", "none")}}
    return [RunSpec(f"long-skip-{kind}", lambda config=config: UNet(config), steps=s["steps"],
                    batch=s["batch"], lr=s["lr"], optimizer="adam",
                    record_every=s["record_every"], task="segment")
            for kind, config in configs.items()]


UNET = Experiment(
    name="unet",
    title="U-Nets with concatenated, added and no long skips at the same parameter count "
          "(the U-Net chapter's comparison), on Oxford-IIIT Pet at paper scale",
    chapter="book/arch/unet",
    sizes={
        "quick": dict(dataset="shapes-48", depth=3, base_width=8, steps=500, batch=16, lr=3e-3,
                      record_every=50, augment=False),
        "gpu": dict(dataset="shapes-96", depth=4, base_width=16, steps=2_000, batch=32,
                    lr=3e-3, record_every=200, augment=False),
        "paper": dict(dataset="pets-128", depth=4, base_width=32, steps=6_000, batch=32,
                      lr=1e-3, record_every=300, augment=False),
    },
    runs=_unet_runs,
)


# ------------------------------------------------- the identity chapter's towers, no norm

def _tower_runs(s: Mapping[str, Any]) -> list[RunSpec]:
    shape, classes, _, _ = DATASETS[s["dataset"]]
    schemes = {"residual": {}, "rezero": {"skip": "rezero"}, "fixup": {"branch_init": "fixup"},
               "layerscale": {"skip": "layerscale"}, "gpt2-scaled": {"branch_init": "scaled"}}
    out = []
    for name in s["schemes"]:
        def build(scheme=schemes[name]):
            return ResidualTower(TowerConfig(math.prod(shape), classes, blocks=s["blocks"],
                                             width=s["width"], **scheme))
        out.append(RunSpec(f"{name}-{s['blocks']}", build, steps=s["steps"], batch=s["batch"],
                           lr=s["lr"], record_every=s["record_every"]))
    return out


IDENTITY_TOWERS = Experiment(
    name="identity-towers",
    title="Deep residual towers without normalisation: unscaled vs ReZero, Fixup, LayerScale, "
          "GPT-2 scaling",
    chapter="book/why/identity",
    sizes={
        "quick": dict(dataset="digits-flat", blocks=64, width=64, steps=150, batch=128, lr=0.05,
                      record_every=25, augment=False,
                      schemes=["residual", "rezero", "fixup", "layerscale", "gpt2-scaled"]),
        "gpu": dict(dataset="cifar10-flat", blocks=128, width=256, steps=5_000, batch=128,
                    lr=0.05, record_every=250, augment=False,
                    schemes=["residual", "rezero", "fixup", "layerscale", "gpt2-scaled"]),
        "paper": dict(dataset="cifar10-flat", blocks=256, width=256, steps=20_000, batch=128,
                      lr=0.05, record_every=1_000, augment=False,
                      schemes=["residual", "rezero", "fixup", "layerscale", "gpt2-scaled"]),
    },
    runs=_tower_runs,
)

EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in (RESNET_CIFAR, DENSENET_BC, LANDSCAPE,
                                                          UNET, IDENTITY_TOWERS)}
