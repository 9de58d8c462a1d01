"""Each chapter's work at each scale: what the time estimates and the device guard are made of.

Every chapter keeps its sizes in one notebook cell, ``SIZES = by_scale(quick=..., gpu=...,
paper=...)``. This tool reads that cell (without running the notebook) and turns each scale's
sizes into *jobs*: the networks the chapter trains or evaluates, with how many examples go
through them. Two uses:

- **Estimated times.** The FLOPs of one example through each job's network are counted on
  PyTorch's ``meta`` device (shapes only, nothing computed), a training example counted as
  three forward passes (forward plus a backward twice as costly), and turned into seconds on a
  T4-class GPU with the assumptions below. ``python tools/scale_budget.py`` prints the table;
  ``--write`` puts each chapter's line into its sizes cell (``EXPECTED_TIME = {...}``), and
  ``tests/test_scale_budget.py`` fails when a cell and this tool disagree.
- **The device guard** (``tests/test_device_guard.py``): every job of the ``gpu`` and
  ``paper`` scales builds its network at full size and takes one training step through the
  chapter's own training function, with torch's default device set to ``meta`` while the
  data and model sit on the CPU, so a tensor made without ``device=`` collides.

The jobs cover each chapter's training runs and its heavy evaluations (loss surfaces, Hessian
products); small probes (one batch at initialisation) are left out of the FLOP count. The
times are *estimates*, not measurements: no GPU was used to make them.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from skiplab.experiments.estimate import training_seconds

ROOT = Path(__file__).resolve().parent.parent
SCALES = ("quick", "gpu", "paper")

# The T4 assumptions behind every estimate live in skiplab.experiments.estimate, shared with
# the paper-scale scripts' estimates (python -m skiplab.experiments --list).

# quick: measured, alone with 2 torch threads (README, "The two commands"): not estimated.
QUICK_MEASURED = {
    "gradient_flow": "19-21 s on 2 CPU cores (measured)",
    "degradation": "40 s on 2 CPU cores (measured, seed 0)",
    "symmetry": "20 s on 2 CPU cores (measured, seed 0)",
    "landscape": "36 s on 2 CPU cores (measured, seed 0)",
    "resnet": "50-57 s on 2 CPU cores (measured)",
    "densenet": "40 s on 2 CPU cores (measured, seed 0)",
    "unet": "76-95 s on 2 CPU cores (measured)",
    "transformer": "41 s on 2 CPU cores (measured, seed 0)",
    "identity": "90 s on 2 CPU cores (measured, seed 0)",
    "heads": "22 s on 2 CPU cores (measured, seed 0)",
}

# Chapters that run on the CPU in float64 at every scale (exact Hessians): no GPU estimate;
# gpu (= paper) measured with SKIPLAB_SCALE=gpu, seed 0, one torch thread.
CPU_ONLY = {"symmetry": "100 s on 1 CPU thread (measured, seed 0; the chapter runs on the CPU)"}

CHAPTERS = {
    "gradient_flow": "book/why/gradient_flow.ipynb",
    "degradation": "book/why/degradation.ipynb",
    "symmetry": "book/why/symmetry.ipynb",
    "landscape": "book/why/landscape.ipynb",
    "resnet": "book/arch/resnet.ipynb",
    "densenet": "book/arch/densenet.ipynb",
    "unet": "book/arch/unet.ipynb",
    "transformer": "book/arch/transformer.ipynb",
    "identity": "book/why/identity.ipynb",
    "heads": "book/finetune/heads.ipynb",
}


@dataclass(frozen=True)
class Job:
    """One network of a chapter and the work done with it.

    ``kind`` names the chapter's training function: ``classify`` (``skiplab.train`` on
    (N, *F) inputs), ``sequence`` (the same with per-token targets), ``segment``
    (``train_segmentation``) or ``embed`` (``to_embedding_model`` + ``train_embedding``).
    """

    chapter: str
    label: str
    build: Callable[[], nn.Module]
    example_shape: tuple[int, ...]
    n_classes: int
    kind: str
    steps: int            # optimiser steps
    batch: int            # examples per step
    eval_examples: int    # examples through forward-only passes (tests, surfaces, probes)
    float64: bool = False


# ---------------------------------------------------------------- reading the sizes cell

def sizes_cell(chapter: str) -> dict:
    """The cell's ``by_scale(...)`` call, as ``{scale: dict}`` (literals only, not run)."""
    nb = json.loads((ROOT / CHAPTERS[chapter]).read_text(encoding="utf8"))
    for cell in nb["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] == "code" and "SIZES = by_scale(" in source:
            call = next(n for n in ast.walk(ast.parse(source))
                        if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "SIZES")
            return {kw.arg: {k.arg: ast.literal_eval(k.value) for k in kw.value.keywords}
                    for kw in call.value.keywords}
    raise LookupError(f"{CHAPTERS[chapter]} has no SIZES = by_scale(...) cell")


def expected_time_line(chapter: str) -> str | None:
    """The ``EXPECTED_TIME = {...}`` line of the chapter's sizes cell, or None."""
    nb = json.loads((ROOT / CHAPTERS[chapter]).read_text(encoding="utf8"))
    for cell in nb["cells"]:
        for line in "".join(cell["source"]).splitlines():
            if line.startswith("EXPECTED_TIME = "):
                return line
    return None


# ---------------------------------------------------------------- the jobs of each chapter

def _cifar_net(depth, widths, skip="residual", norm="post", in_channels=3, n_classes=10, dims=2):
    from skiplab.models import CifarNet, CifarNetConfig
    return lambda: CifarNet(CifarNetConfig(depth=depth, skip=skip, norm=norm,
                                           dims=dims, widths=tuple(widths),
                                           in_channels=in_channels, n_classes=n_classes))


def _image_data(dataset: str) -> tuple[tuple[int, ...], int, int, int]:
    """(example shape, classes, training examples, test examples) of a dataset."""
    return {"digits": ((1, 8, 8), 10, 1437, 360), "cifar10": ((3, 32, 32), 10, 50_000, 10_000),
            "mnist1d": ((1, 40), 10, 4000, 1000)}[dataset]


def _evals(steps: int, record_every: int, test_examples: int) -> int:
    return (steps // record_every + 1) * test_examples


def jobs(chapter: str, scale: str) -> list[Job]:
    """The jobs of ``chapter`` at ``scale``, from its sizes cell."""
    s = sizes_cell(chapter)[scale]
    make = globals()[f"_jobs_{chapter}"]
    return make(chapter, s)


def _jobs_gradient_flow(ch, s):
    from skiplab.models import DeepMLP, MLPConfig
    out = []
    for arch in ("plain", "plain_bn", "residual"):     # the chapter's ARCHITECTURES
        for depth in s["depths"]:     # 3 activations x 3 inits, two probes of one batch each
            out.append(Job(ch, f"probe {arch}-{depth}", lambda d=depth, a=arch: DeepMLP(MLPConfig(
                64, 10, depth=d, width=s["width"], architecture=a)), (64,), 10, "classify",
                steps=18, batch=s["batch"], eval_examples=0, float64=True))
        out.append(Job(ch, f"train {arch}-{s['train_depth']}", lambda a=arch: DeepMLP(MLPConfig(
            64, 10, depth=s["train_depth"], width=s["width"], activation="sigmoid",
            init="xavier", architecture=a)), (64,), 10, "classify", steps=s["train_steps"],
            batch=s["train_batch"], eval_examples=_evals(s["train_steps"], 25, 360)))
    return out


def _jobs_symmetry(ch, s):
    # for the device guard only: the chapter runs on the CPU (CPU_ONLY), its time is measured
    from skiplab.models import SKIP_VARIANTS, DeepMLP, MLPConfig
    from skiplab.models.variants import SkipVariantMLP
    out = [Job(ch, f"exact {variant}", lambda v=variant: SkipVariantMLP(
        64, 10, s["exact_width"], variant=v), (64,), 10, "classify", steps=s["exact_steps"],
        batch=64, eval_examples=360, float64=True) for variant in SKIP_VARIANTS]
    out += [Job(ch, f"statistics {arch}", lambda a=arch: DeepMLP(MLPConfig(
        64, 10, depth=s["stat_depth"], width=s["stat_width"], activation="tanh", init="xavier",
        architecture=a)), (64,), 10, "classify", steps=s["stat_steps"], batch=128,
        eval_examples=_evals(s["stat_steps"], 50, 360)) for arch in ("plain", "residual")]
    # the deciding experiment: four variants, decide_reps replicates each
    from skiplab.models.symmetry_breaking import break_unit_symmetry, orthogonal_shortcuts

    def stat_net(arch):
        return DeepMLP(MLPConfig(64, 10, depth=s["stat_depth"], width=s["stat_width"],
                                 activation="tanh", init="xavier", architecture=arch))

    variants = {"plain": lambda: stat_net("plain"),
                "plain, symmetry broken": lambda: break_unit_symmetry(stat_net("plain")),
                "residual": lambda: stat_net("residual"),
                "residual, orthogonal shortcut": lambda: orthogonal_shortcuts(
                    stat_net("residual"))}
    out += [Job(ch, f"decide {name} #{rep}", build, (64,), 10, "classify",
                steps=s["stat_steps"], batch=128, eval_examples=_evals(s["stat_steps"], 25, 360))
            for rep in range(s["decide_reps"]) for name, build in variants.items()]
    return out


def _jobs_degradation(ch, s):
    shape, classes, _, n_test = _image_data(s["dataset"])
    # the shattered-gradients probe, per net at initialisation: BatchNorm statistics from a
    # calibration batch (forward only), then input gradients at every point of every line
    # (forward and backward, three passes)
    shatter = s["shatter_calibration"] + 3 * s["shatter_lines"] * s["shatter_points"]
    return [Job(ch, f"{'plain' if skip == 'none' else skip}-{d}", _cifar_net(
        d, s["widths"], skip=skip, in_channels=shape[0]), shape, classes, "classify",
        steps=s["steps"], batch=s["batch"],
        eval_examples=_evals(s["steps"], s["record_every"], n_test) + shatter)
        for d in s["depths"] for skip in ("none", "residual")]


def _jobs_resnet(ch, s):
    shape, classes, _, n_test = _image_data(s["dataset"])
    kinds = {"plain": dict(skip="none"), "post-activation": dict(skip="residual"),
             "pre-activation": dict(skip="residual", norm="pre")}
    return [Job(ch, f"{k}-{s['train_depth']}", _cifar_net(
        s["train_depth"], s["widths"], in_channels=shape[0], **kw), shape, classes, "classify",
        steps=s["steps"], batch=s["batch"],
        eval_examples=_evals(s["steps"], s["record_every"], n_test)) for k, kw in kinds.items()]


def _jobs_densenet(ch, s):
    from skiplab.models import densenet_bc
    shape, classes, _, n_test = _image_data(s["dataset"])
    evals = _evals(s["steps"], s["record_every"], n_test)
    out = [Job(ch, label, _cifar_net(d, w, in_channels=shape[0], dims=s["dims"]), shape, classes,
               "classify", steps=s["steps"], batch=s["batch"], eval_examples=evals)
           for label, (d, w) in s["resnets"].items()]
    for label, (d, k) in s["densenets"].items():
        # the ablation map: per dense block of L layers, layer j loses each of its j sources
        # in turn and what reads the whole block each of its L + 1, one test pass each
        layers = (d - 4) // 6
        passes = 3 * (layers * (layers + 1) // 2 + layers + 1)
        ablation = passes * (s["ablation_examples"] or n_test)
        out.append(Job(ch, label, lambda d=d, k=k: densenet_bc(d, k, dims=s["dims"],
                                                                in_channels=shape[0]),
                       shape, classes, "classify", steps=s["steps"], batch=s["batch"],
                       eval_examples=evals + ablation))
    return out


def _jobs_landscape(ch, s):
    shape, classes, _, n_test = _image_data(s["dataset"])
    shallow, deep = s["depths"]
    batch = s["eval_batch"]
    out = []
    for depth in (shallow, deep):
        for residual in (False, True):
            runs = 2 if depth == deep else 1           # the deep nets train from two seeds
            # one 2-D surface each; the deep nets also get four coarse surfaces, a Lanczos run
            # (a Hessian-vector product costs about two training passes), a path and slices
            surface = s["grid"] ** 2
            if depth == deep:
                surface += 4 * s["coarse"] ** 2 + 6 * s["lanczos_steps"] + s["path_points"]
            else:
                surface += 2 * s["line_points"] if residual else 0
            out.append(Job(ch, f"{'resnet' if residual else 'plain'}-{depth}", _cifar_net(
                depth, s["widths"], skip="residual" if residual else "none",
                in_channels=shape[0]), shape, classes,
                "classify", steps=runs * s["steps"], batch=128,
                eval_examples=surface * batch + runs * 13 * n_test))
    return out


def _jobs_unet(ch, s):
    import dataclasses

    from skiplab.models.unet import UNet, UNetConfig, local_net, match_decoder_scale
    base = UNetConfig(in_channels=1, n_classes=2, base_width=s["base_width"], depth=s["depth"],
                      padding="same", long_skip="concat", norm=True)
    n_test = s["n_test"] or 3669
    evals = _evals(s["steps"], s["record_every"], n_test)
    target = sum(p.numel() for p in UNet(base).parameters())
    builds = {"U-Net, concatenation": lambda: UNet(base),
              "local net": lambda: local_net(in_channels=1, n_classes=2, width=32)}
    for long_skip in ("add", "none"):
        builds[f"U-Net, {long_skip}"] = lambda long_skip=long_skip: UNet(match_decoder_scale(
            dataclasses.replace(base, long_skip=long_skip), target))
    return [Job(ch, label, build, (1, s["size"], s["size"]), 2, "segment", steps=s["steps"],
                batch=s["batch"], eval_examples=evals) for label, build in builds.items()]


def _jobs_transformer(ch, s):
    from skiplab.models.transformer import SequenceModel, TransformerConfig
    evals = _evals(s["steps"], s["record_every"], s["n_test"])

    def model(norm, skip="residual", n_layers=s["n_layers"]):
        return lambda: SequenceModel(TransformerConfig(
            vocab_size=s["vocab"], d_model=s["d_model"], n_heads=s["n_heads"],
            n_layers=n_layers, norm=norm, skip=skip))
    runs = [("post-norm", "post", "residual", 3), ("pre-norm", "pre", "residual", 2),
            ("pre-norm, no skips", "pre", "none", 1)]   # post-norm: with and without warm-up,
    out = [Job(ch, label, model(norm, skip), (s["length"],), s["vocab"], "sequence",
               steps=n * s["steps"], batch=s["batch"], eval_examples=n * evals)
           for label, norm, skip, n in runs]        # and each norm again at the small lr
    # gradient probes at initialisation: profile_inits stacks per (depth, norm), one forward
    # and backward (about three forwards) of probe_batch sequences each; at noskip_depth the
    # stacks without skips too (the branch/stream ratios ride on the same forwards)
    probe = 3 * s["profile_inits"] * s["probe_batch"]
    out += [Job(ch, f"probe {norm}-norm-{depth}{'-noskip' if skip == 'none' else ''}",
                model(norm, skip, depth), (s["length"],), s["vocab"], "sequence", steps=0,
                batch=s["probe_batch"], eval_examples=probe)
            for depth in s["profile_depths"] for norm in ("post", "pre")
            for skip in (("residual", "none") if depth == s["noskip_depth"] else ("residual",))]
    return out


def _jobs_identity(ch, s):
    from skiplab.models import ResidualTower, SequenceModel, TowerConfig, TransformerConfig
    # the signal probes (one batch through each tower at initialisation, float64 on the CPU)
    # are left out; the towers trained on the digits: every scheme of the training table
    # (10, train_draws each) and the three of the zero-factor experiment at train_blocks,
    # the four Highway twins at highway_blocks (highway_draws each)
    tower_evals = _evals(s["train_steps"], s["record_every"], 360)

    def tower(blocks, **scheme):
        return lambda: ResidualTower(TowerConfig(64, 10, blocks=blocks, width=s["train_width"],
                                                 **scheme))
    out = [Job(ch, "towers, training table and zero factors", tower(s["train_blocks"]), (64,),
               10, "classify", steps=(10 * s["train_draws"] + 3) * s["train_steps"],
               batch=s["batch"], eval_examples=(10 * s["train_draws"] + 3) * tower_evals),
           Job(ch, "Highway twins", tower(s["highway_blocks"], skip="highway"), (64,), 10,
               "classify", steps=4 * s["highway_draws"] * s["highway_steps"], batch=s["batch"],
               eval_examples=4 * s["highway_draws"] * _evals(s["highway_steps"],
                                                             s["record_every"], 360))]

    def transformer(skip, n_layers):
        return lambda: SequenceModel(TransformerConfig(
            vocab_size=s["seq_vocab"], d_model=s["d_model"], n_heads=s["n_heads"],
            n_layers=n_layers, norm="post", skip=skip))
    seq_evals = _evals(s["seq_steps"], s["record_every"], s["seq_test"])
    out += [Job(ch, f"sorting, {skip}", transformer(skip, s["n_layers"]), (s["seq_length"],),
                s["seq_vocab"], "sequence", steps=s["seq_steps"], batch=s["seq_batch"],
                eval_examples=seq_evals) for skip in ("residual", "deepnorm")]
    out += [Job(ch, f"probe {skip}-{s['profile_depth']}", transformer(skip, s["profile_depth"]),
                (s["seq_length"],), s["seq_vocab"], "sequence", steps=0,
                batch=s["probe_batch"], eval_examples=3 * s["profile_inits"] * s["probe_batch"])
            for skip in ("residual", "deepnorm")]
    return out


def _jobs_heads(ch, s):
    shape, _, n_train, n_test = _image_data(s["dataset"])
    encoder = _cifar_net(20, s["widths"], in_channels=shape[0], n_classes=5)
    pre = Job(ch, "pre-training", encoder, shape, 5, "classify", steps=s["pretrain_steps"],
              batch=128, eval_examples=_evals(s["pretrain_steps"], 25, n_test // 2))
    # through the encoder: five fine-tuning variants (SGD), two skip heads with Adam, LP-FT's
    # fine-tuning phase, and the speed test; the heads trained on cached embeddings (the
    # frozen-encoder table, LP-FT's probe) cost next to nothing and are left out
    tune = Job(ch, "fine-tuning", encoder, shape, 5, "embed",
               steps=8 * s["finetune_steps"] + s["speed_steps"], batch=s["batch"],
               eval_examples=6 * _evals(s["finetune_steps"], s["record_every"], n_test // 2)
               + _evals(s["probe_steps"], s["record_every"], n_test // 2))
    return [pre, tune]


# ---------------------------------------------------------------- counting and estimating

def estimate_seconds(chapter: str, scale: str) -> float:
    """Estimated seconds of the chapter's jobs at ``scale`` on a T4-class GPU."""
    return sum(training_seconds(job.build, job.example_shape, steps=job.steps, batch=job.batch,
                                eval_examples=job.eval_examples, tokens=job.kind == "sequence",
                                float64=job.float64) for job in jobs(chapter, scale))


def describe(seconds: float) -> str:
    if seconds < 90:
        return f"about {max(5, round(seconds / 5) * 5)} s"
    if seconds < 90 * 60:
        return f"about {round(seconds / 60)} min"
    return f"about {seconds / 3600:.0f} h" if seconds >= 4 * 3600 else \
        f"about {seconds / 3600:.1f} h"


def expected_times(chapter: str) -> dict[str, str]:
    if chapter in CPU_ONLY:
        return {"quick": QUICK_MEASURED[chapter], "gpu": CPU_ONLY[chapter],
                "paper": CPU_ONLY[chapter]}
    return {"quick": QUICK_MEASURED[chapter],
            **{scale: f"{describe(estimate_seconds(chapter, scale))} on a T4 GPU (estimate)"
               for scale in ("gpu", "paper")}}


def canonical_line(chapter: str) -> str:
    return f"EXPECTED_TIME = {expected_times(chapter)!r}"


def write(chapter: str) -> None:
    path = ROOT / CHAPTERS[chapter]
    nb = json.loads(path.read_text(encoding="utf8"))
    line = canonical_line(chapter)
    for cell in nb["cells"]:
        source = "".join(cell["source"])
        if "SIZES = by_scale(" in source:
            new = re.sub(r"^EXPECTED_TIME = .*$", lambda _: line, source, count=1, flags=re.M)
            if new == source and line not in source:
                raise LookupError(f"{path}: the sizes cell has no EXPECTED_TIME line")
            cell["source"] = new.splitlines(keepends=True)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf8")


def main(argv: list[str]) -> int:
    for chapter in CHAPTERS:
        if "--write" in argv:
            write(chapter)
        times = expected_times(chapter)
        print(f"{chapter:14s} " + " | ".join(f"{k}: {v}" for k, v in times.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
