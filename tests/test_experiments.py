"""The paper-scale commands on the CPU: one process against two (torchrun, gloo), a killed run
resumed, results files and their refusals."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from skiplab.experiments import (EXPERIMENTS, ResultsMismatch, read_results, recorded_results,
                                 write_results)
from skiplab.experiments.__main__ import list_experiments, main

ROOT = Path(__file__).resolve().parent.parent
PYTHON = Path(sys.executable)
TORCHRUN = PYTHON.parent / "torchrun"
# a tiny configuration of the identity chapter's towers: no BatchNorm, so two processes can
# follow one process's loss curve (BatchNorm would normalise each half-batch on its own)
TINY = ["identity-towers", "--scale", "quick", "--set", "blocks=4", "--set", "width=16",
        "--set", "record_every=5", "--set", "schemes=['rezero', 'residual']", "--no-progress"]


def run(command, tmp, *extra, steps=20, **kwargs):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    full = [*command, *TINY, "--set", f"steps={steps}", "--results", str(tmp / "results"),
            "--checkpoints", str(tmp / "checkpoints"), *extra]
    return subprocess.Popen(full, env=env, cwd=tmp, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kwargs)


def finish(process, timeout=240):
    out, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, out
    return out


def results(tmp):
    return json.loads((tmp / "results" / "identity-towers-quick-seed0.json").read_text())


def test_list_names_every_experiment_with_sizes_and_gpu_hours():
    text = list_experiments()
    for name, experiment in EXPERIMENTS.items():
        assert name in text and experiment.chapter in text
    assert "residual-110" in text and "GPU-hours on a T4 (estimate)" in text
    assert EXPERIMENTS["resnet-cifar"].estimate_hours("paper") > \
        EXPERIMENTS["resnet-cifar"].estimate_hours("gpu") > 0


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed next to python")
def test_two_processes_follow_one_process_with_the_same_global_batch(tmp_path):
    # Each process trains on half of every global batch and DistributedDataParallel averages
    # the two halves' gradients: the global batch's mean gradient, summed in another order.
    # float32 rounding then differs by ~1e-7 relative per step; over 20 steps the curves
    # stay within 1e-5 relative (measured: about 3e-7).
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    finish(run([str(PYTHON), "-m", "skiplab.experiments"], one))
    out = finish(run([str(TORCHRUN), "--nproc-per-node", "2", "-m", "skiplab.experiments"], two))
    a, b = results(one), results(two)
    assert b["provenance"]["world_size"] == 2 and b["provenance"]["backend"] == "gloo"
    assert b["provenance"]["command"].startswith("torchrun --nproc-per-node 2"), out
    for run_name in ("rezero-4", "residual-4"):
        ma, mb = a["metrics"][run_name], b["metrics"][run_name]
        assert ma["steps"] == mb["steps"] == [5, 10, 15, 20]
        torch.testing.assert_close(torch.tensor(mb["train_loss"]), torch.tensor(ma["train_loss"]),
                                   rtol=1e-5, atol=0)
        assert ma["train_loss"][-1] < ma["train_loss"][0]          # it did train
        assert abs(ma["final_test_acc"] - mb["final_test_acc"]) <= 1 / 360 + 1e-9


def test_a_killed_run_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path):
    steps = 3000
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    whole.mkdir(), killed.mkdir()
    command = [str(PYTHON), "-m", "skiplab.experiments"]
    extra = ("--checkpoint-every", "25")
    finish(run(command, whole, *extra, steps=steps))
    process = run(command, killed, *extra, steps=steps, start_new_session=True)
    checkpoint = killed / "checkpoints" / "identity-towers"
    deadline, step = time.time() + 120, 0
    while time.time() < deadline and step < 100:        # wait for a checkpoint past step 100
        files = sorted(checkpoint.glob("*/rezero-4.pt"))
        if files:
            try:
                step = torch.load(files[0], weights_only=False)["step"]
            except Exception:  # noqa: BLE001 - a file being replaced; look again
                step = 0
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate()
    saved = torch.load(files[0], weights_only=False)["step"]
    assert 0 < saved < steps, f"the run was not killed mid-way (checkpoint at step {saved})"
    assert not (killed / "results").exists()
    finish(run(command, killed, *extra, steps=steps))
    for name in ("rezero-4", "residual-4"):
        a = torch.load(next((whole / "checkpoints").rglob(f"{name}.pt")), weights_only=False)
        b = torch.load(next((killed / "checkpoints").rglob(f"{name}.pt")), weights_only=False)
        assert a["step"] == b["step"] == steps
        for key, value in a["model"].items():
            assert torch.equal(value, b["model"][key]), key
    assert results(whole)["metrics"] == results(killed)["metrics"]


def test_a_results_file_of_another_configuration_is_refused(tmp_path):
    experiment = EXPERIMENTS["identity-towers"]
    config = experiment.config("quick", {"blocks": 4})
    path = write_results(tmp_path / "identity-towers-quick-seed0.json",
                         experiment="identity-towers", scale="quick", seed=0, config=config,
                         metrics={}, provenance={})
    assert read_results(path, experiment="identity-towers", scale="quick",
                        config=config)["config"]["blocks"] == 4
    with pytest.raises(ResultsMismatch, match=r"blocks: file has 4, expected 64"):
        read_results(path, experiment="identity-towers", scale="quick",
                     config=experiment.config("quick"))
    with pytest.raises(ResultsMismatch, match="not 'resnet-cifar'"):
        read_results(path, experiment="resnet-cifar", scale="quick", config=config)
    shown = recorded_results("identity-towers", root=tmp_path)
    assert "is not shown" in shown and "blocks: file has 4" in shown
    assert "No recorded run" in recorded_results("resnet-cifar", root=tmp_path / "empty")


def test_unknown_names_and_sizes_are_clear_errors(capsys):
    with pytest.raises(SystemExit):
        main(["resnet-imagenet"])
    assert "accepted: resnet-cifar, densenet-bc, landscape, unet, identity-towers" in capsys.readouterr().err
    with pytest.raises(ValueError, match="not a size of 'resnet-cifar'"):
        EXPERIMENTS["resnet-cifar"].config("quick", {"depth": 20})


def test_every_committed_results_file_is_shown_with_its_provenance():
    files = sorted((ROOT / "results").glob("*.json"))
    assert files, "results/ should hold at least one recorded run"
    for path in files:
        name, scale, _ = path.stem.rsplit("-", 2)
        record = read_results(path, experiment=name, scale=scale,
                              config=EXPERIMENTS[name].config(scale))
        p = record["provenance"]
        assert p["git_commit"] and p["torch"] and p["wall_seconds"] > 0 and p["command"]
        text = recorded_results(name, root=ROOT / "results")
        assert path.name in text and "Provenance:" in text


def test_a_shard_needs_a_global_batch_divisible_by_the_world_size():
    from skiplab.models import DeepMLP, MLPConfig
    from skiplab.train import Task, fit
    from skiplab.train.loop import BatchLoss

    model = DeepMLP(MLPConfig(4, 2, depth=3, width=4))
    task = Task(lambda m, x, y: BatchLoss(torch.nn.functional.cross_entropy(m(x), y)))
    x, y = torch.randn(12, 4), torch.randint(0, 2, (12,))
    with pytest.raises(ValueError, match="divisible by world_size"):
        fit(model, x, y, task, steps=1, batch_size=5, shard=(0, 2))
    with pytest.raises(ValueError, match="rank < world_size"):
        fit(model, x, y, task, steps=1, batch_size=4, shard=(2, 2))
