"""Each chapter states its time at every scale, and the stated estimates are the tool's."""

import sys
from pathlib import Path

import pytest

from skiplab.experiments.estimate import forward_flops

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import scale_budget  # noqa: E402


@pytest.mark.parametrize("chapter", list(scale_budget.CHAPTERS))
def test_sizes_cell_states_the_estimated_times(chapter):
    assert set(scale_budget.sizes_cell(chapter)) == set(scale_budget.SCALES)
    assert scale_budget.expected_time_line(chapter) == scale_budget.canonical_line(chapter), (
        "run `python tools/scale_budget.py --write` after changing a chapter's sizes")


@pytest.mark.parametrize("chapter", [c for c in scale_budget.CHAPTERS
                                     if c not in scale_budget.CPU_ONLY])
def test_gpu_scale_fits_a_colab_session(chapter):
    """The issue's budget: at most 10 minutes a chapter on a T4 (here: the estimate)."""
    assert scale_budget.estimate_seconds(chapter, "gpu") <= 10 * 60


def test_flops_are_counted_not_guessed():
    """ResNet-20 on CIFAR-10: 40.6M multiply-adds per image forward (He et al.: 41M)."""
    job = next(j for j in scale_budget.jobs("degradation", "paper") if j.label == "residual-20")
    assert abs(forward_flops(job.build(), job.example_shape) / 2 / 1e6 - 40.6) < 0.5
