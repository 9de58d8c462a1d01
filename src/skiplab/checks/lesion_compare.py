"""Part of the lesion exercise's checker (:mod:`~skiplab.checks.lesion`): the student's
lesioned copy compared, as a function, with the reference deletion, and the mistake named.

:func:`check_function` runs the copy on the test batch x ((B, 2, 16) for the 1-D nets,
(B, 2, 8, 8) for the 2-D ones; logits (B, n_classes)) and compares it with
:func:`skiplab.probes.delete_block`. When they differ, :func:`_diagnose` looks for the
deletion the output does match (another block, the block's branch, its whole stage, the
intact net, a ReLU kept after the shortcut, ...) and names that mistake.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..blocks.residual import BasicBlock
from ..models.cifar import CifarNet
from ..probes.lesion import delete_block
from .core import Checker, say
from .core import max_diff as _max_diff

__all__ = ["Site", "block_site", "check_function", "eval_output", "with_replaced"]


@dataclass(frozen=True)
class Site:
    """Where block ``index`` sits and what it does to the shape."""

    index: int
    stage: int
    position: int
    in_channels: int
    out_channels: int
    stride: int
    option: str

    @property
    def reshapes(self) -> bool:
        return self.stride != 1 or self.in_channels != self.out_channels

    def describe(self) -> str:
        if not self.reshapes:
            return (f"stage {self.stage}, position {self.position}: {self.in_channels} -> "
                    f"{self.out_channels} channels, stride 1, identity shortcut")
        return (f"stage {self.stage}, position {self.position}: {self.in_channels} -> "
                f"{self.out_channels} channels, stride {self.stride}, option-{self.option} "
                "shortcut")


def block_site(model: CifarNet, index: int) -> Site:
    """The :class:`Site` of block ``index`` (counted over all stages, as ``model.blocks()``)."""
    n = model.config.blocks_per_stage
    block = model.blocks()[index]
    return Site(index, index // n, index % n, block.in_channels, block.out_channels,
                block.stride, model.config.shortcut)


def with_replaced(model: CifarNet, indices: set[int],
                  make: Callable[[BasicBlock], nn.Module]) -> CifarNet:
    """A deep copy of model with each block in ``indices`` replaced by ``make(block)``."""
    twin = copy.deepcopy(model)
    n = model.config.blocks_per_stage
    for index in indices:
        stage = twin.stages[index // n]
        stage[index % n] = make(stage[index % n])
    return twin


@torch.no_grad()
def eval_output(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """net(x) in eval mode, without gradients: x (B, 2, 16) or (B, 2, 8, 8) -> (B, n_classes)."""
    return net.eval()(x)


def deletion_prop(site: Site) -> str:
    if not site.reshapes:
        return "deletes an identity-shortcut block"
    return f"deletes a down-sampling block (option {site.option})"


def check_function(c: Checker, net: CifarNet, returned: nn.Module, x: torch.Tensor,
                   site: Site) -> None:
    """The copy's output equals skiplab.probes.delete_block's; if not, say which deletion
    it matches instead."""
    prop = deletion_prop(site)
    index = site.index
    want = eval_output(delete_block(net, index), x)
    expected = (f"fn(model, {index}) replaces block {index} ({site.describe()}) by its "
                f"shortcut: the copy's output equals delete_block(model, {index})'s "
                "(max difference 1e-5)")
    try:
        got = eval_output(returned, x)
    except KeyboardInterrupt:
        raise
    except BaseException as error:  # noqa: BLE001 - a crash of the student's copy is reported
        c.fail(prop, expected, f"the copy crashes on x of shape {tuple(x.shape)}: "
               f"{say(error)}", _copy_crash_hint(net, returned, site))
    classes = net.config.n_classes
    if not torch.is_tensor(got) or tuple(got.shape) != (x.shape[0], classes):
        shape = tuple(got.shape) if torch.is_tensor(got) else type(got).__name__
        c.fail(prop, expected, f"the copy returns {shape}, not ({x.shape[0]}, {classes})",
               "return the whole CifarNet (stem, stages, pooling, classifier) with only "
               "block index changed")
    if got.dtype != want.dtype:
        c.fail(prop, expected, f"the copy returns {got.dtype} logits, not {want.dtype}",
               "keep the copy's parameters in their dtype: no .half() or .double()")
    tol = 1e-5 * max(1.0, want.abs().max().item())
    diff = _max_diff(got, want)
    if diff > tol:
        match, hint = _diagnose(net, got, x, site, tol)
        c.fail(prop, expected, f"max |copy(x) - delete_block(model, {index})(x)| = "
               f"{diff:.3g}" + (f"; {match}" if match else ""), hint)
    c.ok(prop)


def _copy_crash_hint(net: CifarNet, returned: nn.Module, site: Site) -> str:
    """Hint for a copy that crashes: look at what sits where the block was."""
    stages = getattr(returned, "stages", None)
    n = net.config.blocks_per_stage
    general = (f"put block.shortcut where block {site.index} was: it maps the block's input "
               f"({site.in_channels} channels) to the block's output shape "
               f"({site.out_channels} channels, stride {site.stride}), so the rest of the net "
               "still fits")
    if not isinstance(stages, nn.Sequential):
        return general
    if len(stages) < len(net.stages):
        return ("a whole stage is gone: delete only block index; the other blocks of its "
                "stage stay")
    stage = stages[site.stage]
    if not isinstance(stage, nn.Sequential) or not site.reshapes:
        return general
    if len(stage) == n and type(stage[site.position]) is nn.Identity:
        return (f"block {site.index} changes the shape ({site.in_channels} -> "
                f"{site.out_channels} channels, stride {site.stride}); a block that changes "
                "the shape cannot become the identity: keep its shortcut, "
                "stage[i] = block.shortcut")
    if len(stage) == n - 1:
        return (f"the block was removed outright, and its shortcut with it; block "
                f"{site.index} changes the shape ({site.in_channels} -> {site.out_channels} "
                "channels, stride "
                f"{site.stride}), so replace it by its shortcut, stage[i] = block.shortcut, "
                "instead of deleting it")
    return general


def _relu_after(module: nn.Module) -> nn.Module:
    return nn.Sequential(module, nn.ReLU())


def _diagnose(net: CifarNet, got: torch.Tensor, x: torch.Tensor, site: Site,
              tol: float) -> tuple[str, str]:
    """(what the output matches, hint) for a copy whose output is not the reference's.

    The candidates are tried in turn; the first whose output equals the copy's names the
    mistake (on the test nets every two candidates differ by more than 0.4 in the logits).
    """
    index, n_blocks = site.index, len(net.blocks())
    n = net.config.blocks_per_stage

    def matches(candidate: nn.Module) -> bool:
        try:
            out = eval_output(candidate, x)
        except Exception:  # noqa: BLE001 - a candidate that cannot run matches nothing
            return False
        return out.shape == got.shape and _max_diff(out, got) <= tol

    if matches(net):
        where = (f" (index {index} is past the first stage's {n} blocks: it counts over all "
                 "stages)" if index >= n else "")
        hint = (f"nothing was deleted{where}: assign into the stage, stage[i] = "
                "block.shortcut; rebinding a local variable (block = block.shortcut) does not "
                "change the net")
        return "the copy computes the intact net's function", hint
    for j in range(n_blocks):
        if j != index and matches(delete_block(net, j)):
            hint = (f"index is 0-based and counts blocks over all stages in order, as "
                    f"model.blocks() lists them: block {index} is model.blocks()[{index}], "
                    f"stage {index // n}, position {index % n} (stage = index // {n}, "
                    f"position = index % {n})")
            if j in (index - 1, index + 1) or (index == 0 and j == n_blocks - 1):
                hint = "off by one? " + hint
            return f"it matches deleting block {j} instead", hint
    stage_blocks = sorted(range(site.stage * n, (site.stage + 1) * n))
    if matches(with_replaced(net, set(stage_blocks), lambda b: b.shortcut)):
        match = (f"it matches deleting the whole stage {site.stage} (blocks "
                 f"{stage_blocks[0]}..{stage_blocks[-1]})")
        hint = ("only block index goes, not the whole stage: replace the one block, "
                "stages[s][i] = block.shortcut, and keep the other blocks of its stage")
        return match, hint
    same_position = sorted(range(site.position, n_blocks, n))
    if matches(with_replaced(net, set(same_position), lambda b: b.shortcut)):
        match = (f"it matches deleting position {site.position} of every stage (blocks "
                 f"{', '.join(map(str, same_position))})")
        hint = (f"index counts blocks over all stages, as model.blocks() lists them: delete "
                f"one block only, stage {index // n}, position {index % n}")
        return match, hint
    if matches(with_replaced(net, {index}, lambda b: b.branch)):
        hint = ("the block was replaced by its branch; a lesion deletes the branch and keeps "
                "the skip: stage[i] = block.shortcut, not block.branch")
        return f"it matches replacing block {index} by its branch", hint
    if matches(with_replaced(net, {index}, lambda b: _relu_after(b.branch))):
        hint = ("the skip was removed and the branch kept (a plain block); a lesion does the "
                "opposite: keep the shortcut, drop the branch, stage[i] = block.shortcut")
        return f"it matches relu(branch(x)) in place of block {index}", hint
    if matches(with_replaced(net, {index}, lambda b: _relu_after(b.shortcut))):
        hint = ("the block's final ReLU is still applied: replace the block by its shortcut "
                "alone, with no relu after it (and not by switching off the branch). For "
                "identity and option-A shortcuts relu changes nothing (their input is already "
                "non-negative), but an option-B projection (1x1 conv + BatchNorm) has negative "
                "outputs")
        return f"it matches relu(shortcut(x)) in place of block {index}", hint
    hint = (f"the copy must compute block {index}'s shortcut(x) in place of block {index} and "
            "leave everything else as it was; compare with skiplab.probes.delete_block")
    return "it matches none of the usual mistakes", hint
