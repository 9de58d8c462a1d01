"""Checker for the lesion exercise: delete one block of a trained residual net, keep its skip.

- :func:`check_delete_block`: ``delete_block(model, index)`` returns a copy of a residual
  :class:`~skiplab.models.CifarNet` in which block ``index`` is replaced by its own shortcut
  (Veit, Wilber & Belongie 2016), x -> shortcut(x); the model passed in is left untouched.
  The library's version is :func:`skiplab.probes.delete_block`.

The checker compares functions, not structure: it runs the student's copy on a batch and
compares its output with the reference deletion. When they differ it looks for the
deletion the output does match (another block, the block's branch, its whole stage, the
intact net, ...) and names that mistake (see :mod:`~skiplab.checks.lesion_compare`). It
returns a short report, or raises :class:`~skiplab.checks.core.CheckFailed` on the first
property that fails; a crash inside the student's code or the copy it returns is reported
the same way. Everything runs on two tiny CPU nets under a fixed seed, and the global
random state is restored afterwards.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..models.cifar import CifarNet, CifarNetConfig
from ..validation import check_choice
from .core import Checker, guarded
from .core import PropertyChecker as _Checker
from .core import max_diff as _max_diff
from .core import seeded as _seeded
from .lesion_compare import block_site, check_function, eval_output

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
    check_choice("shortcut", shortcut, ("A", "B"))
    dims = 1 if shortcut == "A" else 2
    config = CifarNetConfig(depth=depth, skip="residual", dims=dims, in_channels=2,
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


def _check_one(c: Checker, fn: DeleteFn, net: CifarNet, x: torch.Tensor,
               index: int) -> tuple[CifarNet, nn.Module]:
    """Run fn on a fresh copy of ``net`` (the student's "trained model"), check that copy is
    left alone and that the returned net deletes block ``index``; return both."""
    model = copy.deepcopy(net)
    site = block_site(net, index)
    before = _OriginalState.of(model, x)

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

    check_function(c, net, returned, x, site)
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


class _OriginalState:
    """What the model passed in looks like before fn runs: structure, tensors, output."""

    def __init__(self, layout: list[list[int]] | None, tensors: dict[str, torch.Tensor],
                 output: torch.Tensor):
        self.layout, self.tensors, self.output = layout, tensors, output

    @classmethod
    def of(cls, model: CifarNet, x: torch.Tensor) -> _OriginalState:
        return cls(_layout(model), {k: v.detach().clone() for k, v in
                                    model.state_dict().items()}, eval_output(model, x))

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
            diff = _max_diff(eval_output(model, x), self.output)
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
