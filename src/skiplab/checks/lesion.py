"""Checker for the lesion exercise: delete one block of a trained residual net, keep its skip.

- :func:`check_delete_block`: ``delete_block(model, index)`` returns a copy of a residual
  :class:`~skiplab.models.CifarNet` in which block ``index`` is replaced by its own shortcut
  (Veit, Wilber & Belongie 2016), x -> shortcut(x); the model passed in is left untouched.
  The library's version is :func:`skiplab.probes.delete_block`.

The checker compares functions, not structure: it runs the student's copy on a batch and
compares its output with the reference deletion. When they differ it looks for the
deletion the output does match (another block, the block's branch, its whole stage, the
intact net, ...) and names that mistake. It returns a short report, or raises
:class:`~skiplab.checks.core.CheckFailed` on the first property that fails; a crash inside
the student's code or the copy it returns is reported the same way. Everything runs on two
tiny CPU nets under a fixed seed, and the global random state is restored afterwards.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..blocks.residual import BasicBlock
from ..models.cifar import CifarNet, CifarNetConfig
from ..probes.lesion import delete_block
from .core import Checker, guarded, say
from .core import PropertyChecker as _Checker
from .core import max_diff as _max_diff
from .core import seeded as _seeded

__all__ = ["check_delete_block", "lesion_test_model"]

DeleteFn = Callable[[CifarNet, int], nn.Module]
"""``delete_block(model, index)``: the student's function."""

_BATCH, _CLASSES = 4, 6

# (shortcut option, depth, seed, blocks to delete): depth 14 has 2 blocks a stage, depth 20
# has 3 (so that an index mapping written for two blocks a stage fails), depth 26 has 4.
_CASES = (("A", 14, 1, (0, 3, 5, 2, 4)), ("B", 14, 2, (1, 2, 5)), ("A", 20, 4, (4, 7)))
_HIDDEN_CASES = (("B", 26, 5, (5, 8, 11)), ("A", 20, 6, (3, 8)))


# --------------------------------------------------------------------------------------------
# The test nets


def lesion_test_model(shortcut: str = "A", seed: int = 0, *, depth: int = 14) -> CifarNet:
    """A tiny residual CifarNet "as if trained": 2 blocks per stage (6 blocks; ``depth`` 20
    gives 3 per stage, 26 gives 4), widths (4, 8, 16), 2 input channels, 6 classes, in
    eval mode.

    Option ``"A"`` is 1-D, input (B, 2, 16); option ``"B"`` (projection shortcuts) is 2-D,
    input (B, 2, 8, 8). Every BatchNorm gets random weights, biases and running statistics,
    so that no branch and no projection is close to the identity or to zero. Blocks 0, 1,
    3 and 5 have identity shortcuts; blocks 2 and 4 (the first of stages 1 and 2) halve the
    length and double the channels.
    """
    dims = 1 if shortcut == "A" else 2
    config = CifarNetConfig(depth=depth, residual=True, dims=dims, in_channels=2,
                            n_classes=_CLASSES, widths=(4, 8, 16), shortcut=shortcut)
    with _seeded(seed):
        model = CifarNet(config)
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, _BatchNorm):
                    m.weight.copy_(1 + 0.3 * torch.randn_like(m.weight))
                    m.bias.copy_(0.3 * torch.randn_like(m.bias))
                    m.running_mean.copy_(0.3 * torch.randn_like(m.running_mean))
                    m.running_var.copy_(0.5 + torch.rand_like(m.running_var))
    return model.eval()


def _test_input(model: CifarNet, seed: int) -> torch.Tensor:
    size = (16,) if model.config.dims == 1 else (8, 8)
    with _seeded(seed):
        return torch.randn(_BATCH, model.config.in_channels, *size)


@dataclass(frozen=True)
class _Site:
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


def _site(model: CifarNet, index: int) -> _Site:
    n = model.config.blocks_per_stage
    block = model.blocks()[index]
    return _Site(index, index // n, index % n, block.in_channels, block.out_channels,
                 block.stride, model.config.shortcut)


def _replaced(model: CifarNet, indices: set[int],
              make: Callable[[BasicBlock], nn.Module]) -> CifarNet:
    """A deep copy of model with each block in ``indices`` replaced by ``make(block)``."""
    twin = copy.deepcopy(model)
    n = model.config.blocks_per_stage
    for index in indices:
        stage = twin.stages[index // n]
        stage[index % n] = make(stage[index % n])
    return twin


@torch.no_grad()
def _output(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return net.eval()(x)


# --------------------------------------------------------------------------------------------
# The check


@guarded("delete a block")
def check_delete_block(fn: DeleteFn, *, hidden: bool = False) -> str:
    """Check a student's lesion: delete one block of a trained residual net, keep its skip.

    The exercise: write ``fn(model, index)`` that takes a trained residual
    :class:`skiplab.models.CifarNet` and returns a **copy** of it in which block ``index``
    (0-based, counted over all stages in order, as ``model.blocks()`` lists them) is
    replaced by its own shortcut, so that the copy computes x -> ``block.shortcut(x)`` there
    (no branch, no final ReLU). ``model`` itself must not change. The blocks sit in
    ``model.stages`` (an ``nn.Sequential`` of stages, each an ``nn.Sequential`` of
    ``config.blocks_per_stage`` blocks); each :class:`~skiplab.blocks.BasicBlock` has
    ``.branch`` and ``.shortcut`` (``nn.Identity`` where the shape is kept, option A or B
    where it changes). The library's version is :func:`skiplab.probes.delete_block`.

    Accepted: any copy whose output equals the reference's (max difference 1e-5, eval
    mode), e.g. ``copy.deepcopy`` then ``stage[i] = block.shortcut``, a rebuilt stage, or
    ``nn.Identity`` (or dropping the block) where the shortcut is the identity. Not
    accepted: relu(shortcut(x)) in place of the block (a wrapper with a ReLU, or the branch
    switched off). It equals shortcut(x) for identity and option-A shortcuts, whose input
    is already non-negative, but not for an option-B projection (1x1 conv + BatchNorm),
    whose output has negative entries.

    Properties, on two tiny nets of 6 blocks (1-D with option-A shortcuts, 2-D with option-B
    projections; random BatchNorm statistics; eval mode), deleting blocks 0 (first), 3
    (middle), 5 (last), 2 and 4 (a stage's first, down-sampling block) of the first and
    blocks 1, 2 and 5 of the second, and on a net of 3 blocks a stage (blocks 4 and 7, so
    that an index mapping written for two blocks a stage fails); ``hidden=True`` adds nets
    of 4 and 3 blocks a stage: it runs and returns an ``nn.Module``; the original
    model is unchanged (structure, parameters, buffers and function); the copy deletes an
    identity-shortcut block, an option-A down-sampling block and an option-B down-sampling
    block like the reference (diagnoses a deletion done in place, returning the intact net,
    the wrong block (off by one, or counted within a stage), the block's branch kept
    instead of its shortcut, the skip removed instead, the whole stage removed, a
    down-sampling block turned into the identity or dropped, and a ReLU kept after a
    projection); the copy shares no tensor with the original; the copy's ``.blocks()``
    lists one block fewer.
    """
    c = _Checker("delete a block")
    done: list[tuple[CifarNet, CifarNet, nn.Module]] = []
    for option, depth, seed, indices in _CASES + (_HIDDEN_CASES if hidden else ()):
        net = lesion_test_model(option, seed=seed, depth=depth)
        x = _test_input(net, seed=3)
        for index in indices:
            done.append((net, *_check_one(c, fn, net, x, index)))
    for net, model, returned in done:  # structure last: functions diagnose better
        _check_structure(c, net, model, returned)
    return c.report()


def _deletion_prop(site: _Site) -> str:
    if not site.reshapes:
        return "deletes an identity-shortcut block"
    return f"deletes a down-sampling block (option {site.option})"


def _check_one(c: Checker, fn: DeleteFn, net: CifarNet, x: torch.Tensor,
               index: int) -> tuple[CifarNet, nn.Module]:
    """Run fn on a fresh copy of ``net`` (the student's "trained model"), check that copy is
    left alone and that the returned net deletes block ``index``; return both."""
    model = copy.deepcopy(net)
    site = _site(net, index)
    before = _Snapshot.of(model, x)

    prop = "runs and returns a module"
    returned = c.run(prop, lambda: fn(model, index),
                     f"fn(model, {index}) returns the lesioned copy", _run_hint(model))
    if not isinstance(returned, nn.Module):
        if before.changes(model, x):
            c.fail("original model unchanged", "fn leaves the model passed in as it was",
                   f"fn returned {type(returned).__name__} and changed the model: "
                   f"{before.changes(model, x)}",
                   "you edited the model in place and returned nothing: start with "
                   "lesioned = copy.deepcopy(model), edit the copy and return it")
        c.fail(prop, "an nn.Module (the lesioned copy of the CifarNet)",
               f"a {type(returned).__name__}",
               "return the copy at the end of the function (return lesioned)")
    recast = sorted({str(t.dtype) for t in list(returned.parameters()) + list(returned.buffers())
                     if t.is_floating_point() and t.dtype != torch.float32})
    if recast:
        c.fail(prop, "a copy whose parameters keep the original's dtype (float32)",
               f"the copy holds {', '.join(recast)} tensors",
               "keep the copy's dtype: no .double(), .half() or .to(...) on it")
    c.ok(prop)

    prop = "original model unchanged"
    changed = before.changes(model, x)
    if changed:
        if returned is model:
            hint = ("you edited the model passed in and returned it: start with lesioned = "
                    "copy.deepcopy(model) and delete the block in the copy")
        else:
            hint = ("the copy shares sub-modules with the original (copy.copy(model), or a new "
                    "net built around model.stages), so editing it edited the original: use "
                    "copy.deepcopy(model), which copies every sub-module")
        c.fail(prop, f"after fn(model, {index}) the model passed in is as it was (its blocks, "
               "parameters, buffers and output)", changed, hint)
    c.ok(prop)

    _check_function(c, net, returned, x, site)
    return model, returned


def _check_structure(c: Checker, net: CifarNet, model: CifarNet, returned: nn.Module) -> None:
    """The copy owns its tensors and lists one block fewer."""
    prop = "copy shares no tensor with the original"
    theirs = {t.data_ptr() for t in list(model.parameters()) + list(model.buffers())
              if t.numel()}
    shared = [name for name, t in list(returned.named_parameters())
              + list(returned.named_buffers()) if t.numel() and t.data_ptr() in theirs]
    c.require(not shared, prop,
              "the copy's parameters and buffers are its own (training the copy must not "
              "change the original)",
              f"shared with the original: {', '.join(shared[:3])}"
              + (", ..." if len(shared) > 3 else ""),
              "take the shortcut from the deep copy (lesioned.blocks()[index].shortcut), not "
              "from model: a module of the original put into the copy is shared, not copied")

    prop = "one block fewer in .blocks()"
    blocks = getattr(returned, "blocks", None)
    if not callable(blocks):
        c.fail(prop, f"a CifarNet whose .blocks() lists {len(net.blocks()) - 1} blocks",
               f"a {type(returned).__name__} without .blocks()",
               "return the deep copy of the CifarNet itself, not a new container built from "
               "its parts: the lesioned net should still be a CifarNet, with .blocks() and "
               ".config")
    n_left = len(c.run(prop, blocks, "copy.blocks() works",
                       "return the deep copy of the CifarNet itself"))
    n = len(net.blocks())
    c.require(n_left == n - 1, prop,
              f"copy.blocks() lists {n - 1} blocks (the intact net has {n})",
              f"{n_left} blocks",
              "replace the block itself by its shortcut, stage[i] = block.shortcut, so that "
              "the copy no longer lists it as a block; do not switch off its branch")


def _run_hint(model: CifarNet) -> str:
    n = model.config.blocks_per_stage
    return (f"copy the model (copy.deepcopy), find block index in the copy's stages "
            f"(index counts over all stages: stage index // {n}, position index % {n} here, "
            "or look for lesioned.blocks()[index] in lesioned.stages), replace it by its "
            ".shortcut and return the copy")


class _Snapshot:
    """What the model passed in looks like before fn runs: structure, tensors, output."""

    def __init__(self, layout: list[list[int]] | None, tensors: dict[str, torch.Tensor],
                 output: torch.Tensor):
        self.layout, self.tensors, self.output = layout, tensors, output

    @classmethod
    def of(cls, model: CifarNet, x: torch.Tensor) -> _Snapshot:
        return cls(_layout(model), {k: v.detach().clone() for k, v in
                                    model.state_dict().items()}, _output(model, x))

    def changes(self, model: CifarNet, x: torch.Tensor) -> str:
        """'' when the model is as before, else what changed, in words."""
        layout = _layout(model)
        if layout != self.layout:
            return _describe_edit(model, self.layout or [], layout)
        state = model.state_dict()
        edited = [k for k, v in self.tensors.items()
                  if k not in state or state[k].shape != v.shape or not torch.equal(state[k], v)]
        if edited:
            return f"the original's tensors changed: {', '.join(edited[:3])}" + (
                ", ..." if len(edited) > 3 else "")
        try:
            diff = _max_diff(_output(model, x), self.output)
        except Exception as error:  # noqa: BLE001 - a broken original is a change too
            return f"the original no longer runs ({type(error).__name__}: {error})"
        return f"the original's output moved by {diff:.3g}" if diff > 0 else ""


def _describe_edit(model: nn.Module, before: list[list[int]],
                   after: list[list[int]] | None) -> str:
    """The first difference between two layouts of the stages, in words."""
    if after is None:
        return "the original's .stages no longer holds stages of blocks"
    if len(after) != len(before):
        return f"the original now has {len(after)} stages (had {len(before)})"
    k = 0
    for s, (old, new) in enumerate(zip(before, after)):
        if len(old) != len(new):
            return (f"stage {s} of the original now holds {len(new)} modules (had {len(old)})")
        for i, (a, b) in enumerate(zip(old, new)):
            if a != b:
                name = type(model.stages[s][i]).__name__
                return f"block {k + i} of the original (stage {s}) was replaced (it is now {name})"
        k += len(old)
    return "the original's stages were edited"


def _layout(model: nn.Module) -> list[list[int]] | None:
    try:
        return [[id(m) for m in stage] for stage in model.stages]
    except Exception:  # noqa: BLE001 - stages that cannot be listed are a change too
        return None


# --------------------------------------------------------------------------------------------
# Comparing functions


def _check_function(c: Checker, net: CifarNet, returned: nn.Module, x: torch.Tensor,
                    site: _Site) -> None:
    """The copy's output equals skiplab.probes.delete_block's; if not, say which deletion
    it matches instead."""
    prop = _deletion_prop(site)
    index = site.index
    want = _output(delete_block(net, index), x)
    expected = (f"fn(model, {index}) replaces block {index} ({site.describe()}) by its "
                f"shortcut: the copy's output equals delete_block(model, {index})'s "
                "(max difference 1e-5)")
    try:
        got = _output(returned, x)
    except KeyboardInterrupt:
        raise
    except BaseException as error:  # noqa: BLE001 - a crash of the student's copy is reported
        c.fail(prop, expected, f"the copy crashes on x of shape {tuple(x.shape)}: "
               f"{say(error)}", _crash_hint(net, returned, site))
    if not torch.is_tensor(got) or tuple(got.shape) != (x.shape[0], _CLASSES):
        shape = tuple(got.shape) if torch.is_tensor(got) else type(got).__name__
        c.fail(prop, expected, f"the copy returns {shape}, not ({x.shape[0]}, {_CLASSES})",
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


def _crash_hint(net: CifarNet, returned: nn.Module, site: _Site) -> str:
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


def _diagnose(net: CifarNet, got: torch.Tensor, x: torch.Tensor, site: _Site,
              tol: float) -> tuple[str, str]:
    """(what the output matches, hint) for a copy whose output is not the reference's.

    The candidates are tried in turn; the first whose output equals the copy's names the
    mistake (on the test nets every two candidates differ by more than 0.4 in the logits).
    """
    index, n_blocks = site.index, len(net.blocks())
    n = net.config.blocks_per_stage

    def matches(candidate: nn.Module) -> bool:
        try:
            out = _output(candidate, x)
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
    if matches(_replaced(net, set(stage_blocks), lambda b: b.shortcut)):
        match = (f"it matches deleting the whole stage {site.stage} (blocks "
                 f"{stage_blocks[0]}..{stage_blocks[-1]})")
        hint = ("only block index goes, not the whole stage: replace the one block, "
                "stages[s][i] = block.shortcut, and keep the other blocks of its stage")
        return match, hint
    same_position = sorted(range(site.position, n_blocks, n))
    if matches(_replaced(net, set(same_position), lambda b: b.shortcut)):
        match = (f"it matches deleting position {site.position} of every stage (blocks "
                 f"{', '.join(map(str, same_position))})")
        hint = (f"index counts blocks over all stages, as model.blocks() lists them: delete "
                f"one block only, stage {index // n}, position {index % n}")
        return match, hint
    if matches(_replaced(net, {index}, lambda b: b.branch)):
        hint = ("the block was replaced by its branch; a lesion deletes the branch and keeps "
                "the skip: stage[i] = block.shortcut, not block.branch")
        return f"it matches replacing block {index} by its branch", hint
    if matches(_replaced(net, {index}, lambda b: _relu_after(b.branch))):
        hint = ("the skip was removed and the branch kept (a plain block); a lesion does the "
                "opposite: keep the shortcut, drop the branch, stage[i] = block.shortcut")
        return f"it matches relu(branch(x)) in place of block {index}", hint
    if matches(_replaced(net, {index}, lambda b: _relu_after(b.shortcut))):
        hint = ("the block's final ReLU is still applied: replace the block by its shortcut "
                "alone, with no relu after it (and not by switching off the branch). For "
                "identity and option-A shortcuts relu changes nothing (their input is already "
                "non-negative), but an option-B projection (1x1 conv + BatchNorm) has negative "
                "outputs")
        return f"it matches relu(shortcut(x)) in place of block {index}", hint
    hint = (f"the copy must compute block {index}'s shortcut(x) in place of block {index} and "
            "leave everything else as it was; compare with skiplab.probes.delete_block")
    return "it matches none of the usual mistakes", hint
