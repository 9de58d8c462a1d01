"""The lesion-exercise checker: the reference and valid variants pass, plausible student
mistakes are rejected with the message meant for them."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from checkhelp import rejects
from torch import nn

from skiplab.checks import CheckFailed
from skiplab.checks.lesion import check_delete_block, lesion_test_model
from skiplab.models import CifarNet, CifarNetConfig
from skiplab.probes import delete_block

PROPERTIES = [
    "runs and returns a module",
    "original model unchanged",
    "deletes an identity-shortcut block",
    "deletes a down-sampling block (option A)",
    "deletes a down-sampling block (option B)",
    "copy shares no tensor with the original",
    "one block fewer in .blocks()",
]


def _rejects(solution, prop: str, hint: str) -> CheckFailed:
    return rejects(check_delete_block, solution, prop, hint)


def _locate(model: CifarNet, index: int) -> tuple[nn.Sequential, int]:
    """(stage, position) of block index, counted over all stages."""
    stage, position = divmod(index, model.config.blocks_per_stage)
    return model.stages[stage], position


# --------------------------------------------------------------------------------------------
# Valid solutions


def delete_by_assignment(model, index):
    """The reference solution: deep copy, then stage[i] = block.shortcut."""
    lesioned = copy.deepcopy(model)
    stage, i = _locate(lesioned, index)
    stage[i] = stage[i].shortcut
    return lesioned


def delete_by_rebuilding(model, index):
    """Valid: the stage rebuilt as a new nn.Sequential, the block found by identity."""
    lesioned = copy.deepcopy(model)
    target = lesioned.blocks()[index]
    for s, stage in enumerate(lesioned.stages):
        if any(m is target for m in stage):
            lesioned.stages[s] = nn.Sequential(*[m.shortcut if m is target else m
                                                 for m in stage])
    return lesioned


def delete_with_identity(model, index):
    """Valid: nn.Identity where the shortcut is the identity, found through named_modules."""
    lesioned = copy.deepcopy(model)
    target = lesioned.blocks()[index]
    name = next(n for n, m in lesioned.named_modules() if m is target)
    parent_name, _, child = name.rpartition(".")
    keep = nn.Identity() if isinstance(target.shortcut, nn.Identity) else target.shortcut
    setattr(lesioned.get_submodule(parent_name), child, keep)
    return lesioned


def delete_after_reload(model, index):
    """Valid: a fresh net loaded with the weights; an identity-shortcut block simply dropped."""
    lesioned = CifarNet(model.config)
    lesioned.load_state_dict(model.state_dict())
    stage, i = _locate(lesioned, index)
    if isinstance(stage[i].shortcut, nn.Identity):
        del stage[i]
    else:
        stage[i] = stage[i].shortcut
    return lesioned.eval()


@pytest.mark.parametrize("fn", [delete_block, delete_by_assignment, delete_by_rebuilding,
                                delete_with_identity, delete_after_reload])
def test_delete_block_accepts(fn):
    report = check_delete_block(fn)
    assert f"all {len(PROPERTIES)} checks passed" in report
    assert report.splitlines()[1:] == [f"  - {prop}" for prop in PROPERTIES]


# --------------------------------------------------------------------------------------------
# Mistakes


def in_place(model, index):
    stage, i = _locate(model, index)
    stage[i] = stage[i].shortcut
    return model


def in_place_no_return(model, index):
    stage, i = _locate(model, index)
    stage[i] = stage[i].shortcut


def shallow_copy(model, index):
    lesioned = copy.copy(model)  # shares _modules with model
    stage, i = _locate(lesioned, index)
    stage[i] = stage[i].shortcut
    return lesioned


def nothing_deleted(model, index):
    lesioned = copy.deepcopy(model)
    block = lesioned.blocks()[index]
    block = block.shortcut  # rebinds a local name only
    return lesioned


def off_by_one(model, index):
    lesioned = copy.deepcopy(model)
    target = lesioned.blocks()[index + 1]  # "the first block is block 1"
    for stage in lesioned.stages:
        for i, m in enumerate(stage):
            if m is target:
                stage[i] = m.shortcut
    return lesioned


def position_in_every_stage(model, index):
    """Counts index within a stage, so deletes that position in every stage."""
    lesioned = copy.deepcopy(model)
    for stage in lesioned.stages:
        for i, m in enumerate(stage):
            if i == index:
                stage[i] = m.shortcut
    return lesioned


def divides_by_stage_count(model, index):
    """divmod by the number of stages (3) instead of the blocks per stage (2)."""
    lesioned = copy.deepcopy(model)
    s, i = divmod(index, len(lesioned.stages))
    lesioned.stages[s][i] = lesioned.stages[s][i].shortcut
    return lesioned


def keeps_branch(model, index):
    lesioned = copy.deepcopy(model)
    stage, i = _locate(lesioned, index)
    stage[i] = stage[i].branch
    return lesioned


def removes_skip(model, index):
    lesioned = copy.deepcopy(model)
    stage, i = _locate(lesioned, index)
    stage[i] = nn.Sequential(stage[i].branch, nn.ReLU())
    return lesioned


def removes_stage(model, index):
    lesioned = copy.deepcopy(model)
    s = index // lesioned.config.blocks_per_stage
    lesioned.stages[s] = lesioned.blocks()[index].shortcut
    return lesioned


def always_identity(model, index):
    lesioned = copy.deepcopy(model)
    stage, i = _locate(lesioned, index)
    stage[i] = nn.Identity()
    return lesioned


def drops_block(model, index):
    lesioned = copy.deepcopy(model)
    stage, i = _locate(lesioned, index)
    del stage[i]
    return lesioned


class _ReluShortcut(nn.Module):
    def __init__(self, shortcut: nn.Module):
        super().__init__()
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.shortcut(x))


def relu_wrapper(model, index):
    """relu(shortcut(x)): right for identity and option A, wrong for option B."""
    lesioned = copy.deepcopy(model)
    stage, i = _locate(lesioned, index)
    stage[i] = _ReluShortcut(stage[i].shortcut)
    return lesioned


def branch_switched_off(model, index):
    """Zeroes the branch's last BatchNorm: the block becomes relu(shortcut(x))."""
    lesioned = copy.deepcopy(model)
    last = lesioned.blocks()[index].branch[-1].norm
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
    return lesioned


def shortcut_of_original(model, index):
    lesioned = copy.deepcopy(model)
    stage, i = _locate(lesioned, index)
    stage[i] = model.blocks()[index].shortcut  # the original's module, not the copy's
    return lesioned


def new_container(model, index):
    lesioned = delete_block(model, index)
    return nn.Sequential(lesioned.stem, lesioned.stages, lesioned.final, lesioned.pool,
                         nn.Flatten(), lesioned.fc)


def index_as_stage(model, index):
    """Treats index as a stage number: right for block 0, an IndexError for block 3."""
    lesioned = copy.deepcopy(model)
    lesioned.stages[index][0] = lesioned.stages[index][0].shortcut
    return lesioned


@pytest.mark.parametrize("fn, prop, hint", [
    (in_place, "original model unchanged", "copy.deepcopy(model)"),
    (in_place_no_return, "original model unchanged", "returned nothing"),
    (shallow_copy, "original model unchanged", "shares sub-modules"),
    (nothing_deleted, "deletes an identity-shortcut block", "nothing was deleted"),
    (off_by_one, "deletes an identity-shortcut block", "off by one"),
    (position_in_every_stage, "deletes an identity-shortcut block", "delete one block only"),
    (divides_by_stage_count, "deletes an identity-shortcut block", "over all stages"),
    (keeps_branch, "deletes an identity-shortcut block", "not block.branch"),
    (removes_skip, "deletes an identity-shortcut block", "the skip was removed"),
    (removes_stage, "deletes an identity-shortcut block", "not the whole stage"),
    (always_identity, "deletes a down-sampling block (option A)",
     "cannot become the identity"),
    (drops_block, "deletes a down-sampling block (option A)", "its shortcut with it"),
    (relu_wrapper, "deletes a down-sampling block (option B)", "no relu after it"),
    (branch_switched_off, "deletes a down-sampling block (option B)", "no relu after it"),
    (shortcut_of_original, "copy shares no tensor with the original", "from the deep copy"),
    (new_container, "one block fewer in .blocks()", "not a new container"),
    (index_as_stage, "runs and returns a module", "counts over all stages"),
])
def test_delete_block_rejects(fn, prop, hint):
    error = _rejects(fn, prop, hint)
    if fn is off_by_one:
        assert "matches deleting block 1 instead" in error.measured
    if fn is divides_by_stage_count:
        assert "matches deleting block 2 instead" in error.measured  # index 3 -> (1, 0)
    if fn is removes_stage:
        assert "whole stage 0" in error.measured
    if fn is always_identity:
        assert "crashes" in error.measured and "4 -> 8 channels" in error.hint
    if fn is relu_wrapper:
        assert "relu(shortcut(x))" in error.measured and "option-B" in error.expected
    if fn is index_as_stage:
        assert error.measured.startswith("IndexError")


def test_in_place_does_not_spoil_later_checks():
    """Each block is tried on a fresh copy, so the message is about the first block."""
    error = _rejects(in_place, "original model unchanged", "copy.deepcopy")
    assert "block 0 of the original (stage 0) was replaced (it is now Identity)" in error.measured


def test_relu_is_harmless_only_without_projections():
    """The measurement behind rejecting relu(shortcut(x)): equal for option A, not for B."""
    for option, index in (("A", 2), ("B", 2)):
        model = lesion_test_model(option)
        size = (16,) if option == "A" else (8, 8)
        x = torch.randn(4, 2, *size)
        with torch.no_grad():
            diff = (relu_wrapper(model, index)(x) - delete_block(model, index)(x)).abs().max()
        assert (diff == 0) if option == "A" else (diff > 1e-2), (option, diff)


@pytest.mark.parametrize("option, depth", [("A", 14), ("B", 14), ("A", 20), ("B", 26)])
def test_single_deletions_are_told_apart(option, depth):
    """Deleting different blocks gives clearly different outputs, so 'it matches deleting
    block j' is unambiguous (the checker's tolerance is 1e-5 times the logits' scale)."""
    model = lesion_test_model(option, depth=depth)
    size = (16,) if option == "A" else (8, 8)
    x = torch.randn(4, 2, *size)
    with torch.no_grad():
        outs = [model(x)] + [delete_block(model, j)(x) for j in range(len(model.blocks()))]
    gaps = [(a - b).abs().max().item() for k, a in enumerate(outs) for b in outs[k + 1:]]
    assert min(gaps) > 0.05


def two_blocks_a_stage(model, index):
    """Hard-codes the 2-blocks-a-stage layout of the 6-block test nets."""
    lesioned = copy.deepcopy(model)
    stage = lesioned.stages[index // 2]
    stage[index % 2] = stage[index % 2].shortcut
    return lesioned


def test_an_index_mapping_for_two_blocks_a_stage_fails_publicly():
    """Every test net used to have 2 blocks a stage; the public check now has one with 3."""
    error = _rejects(two_blocks_a_stage, "deletes an identity-shortcut block",
                     "stage = index // 3")
    assert "matches deleting block 6 instead" in error.measured


def test_the_copy_keeps_the_dtype():
    def doubled(model, index):
        return delete_block(model, index).double()

    error = _rejects(doubled, "runs and returns a module", "keep the copy's dtype")
    assert "float64" in error.measured


def test_hidden_nets():
    assert "all" in check_delete_block(delete_by_assignment, hidden=True)
    assert len(lesion_test_model("B", depth=26).blocks()) == 12


def test_test_models_are_the_ones_described():
    a, b = lesion_test_model("A"), lesion_test_model("B")
    assert a.config == CifarNetConfig(depth=14, dims=1, in_channels=2, n_classes=6,
                                      widths=(4, 8, 16), shortcut="A")
    assert b.config.shortcut == "B" and b.config.dims == 2
    assert not a.training and len(a.blocks()) == 6
    assert [blk.stride for blk in a.blocks()] == [1, 1, 2, 1, 2, 1]


def test_checker_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    check_delete_block(delete_after_reload)  # builds a CifarNet: draws random numbers
    assert torch.equal(torch.rand(3), expected)
