"""What every checker promises, whatever the student's code does: nothing but CheckFailed
escapes (SystemExit and GeneratorExit included; KeyboardInterrupt is passed on), the result
does not depend on global settings the notebook changed (gradients off, another default
dtype), and the caller's random state is left alone."""

from __future__ import annotations

import sys

import pytest
import torch
from test_checks_arch import RefBlock, RefDense, ref_crop_concat
from test_checks_identity import ReZeroBlock
from test_checks_landscape import normalise_reference
from test_checks_lesion import delete_by_assignment
from test_checks_other import (GatedHead, PreNormBlock, change_reference, permute_reference,
                               probe_reference)
from torch import nn

from skiplab.checks import (CheckFailed, check_basic_block, check_crop_and_concat,
                            check_delete_block, check_dense_layer, check_filter_normalise,
                            check_function_change, check_gated_head, check_gradient_probe,
                            check_permutation, check_prenorm_block, check_rezero_block)

# (checker, a valid solution, is the solution a class whose instances are called?)
CHECKERS = {
    "basic block": (check_basic_block, RefBlock, True),
    "dense layer": (check_dense_layer, RefDense, True),
    "crop": (check_crop_and_concat, ref_crop_concat, False),
    "pre-norm": (check_prenorm_block, PreNormBlock, True),
    "gated head": (check_gated_head, GatedHead, True),
    "rezero block": (check_rezero_block, ReZeroBlock, True),
    "gradient probe": (check_gradient_probe, probe_reference, False),
    "permutation": (check_permutation, permute_reference, False),
    "function change": (check_function_change, change_reference, False),
    "delete block": (check_delete_block, delete_by_assignment, False),
    "filter normalise": (check_filter_normalise, normalise_reference, False),
}


def raising(valid: object, is_class: bool, error: BaseException, where: str) -> object:
    """A solution that raises ``error`` when built ("construct") or when called ("call")."""
    if not is_class:
        def fn(*args, **kwargs):
            raise error
        return fn
    assert isinstance(valid, type)

    class Raising(valid):  # type: ignore[misc, valid-type]
        def __init__(self, *args):
            if where == "construct":
                raise error
            super().__init__(*args)

        def forward(self, *args, **kwargs):
            raise error

    return Raising


PLACES = [(name, where) for name in sorted(CHECKERS)
          for where in (("construct", "call") if CHECKERS[name][2] else ("call",))]


@pytest.mark.parametrize("name, where", PLACES)
@pytest.mark.parametrize("error", [SystemExit(3), GeneratorExit(), ZeroDivisionError("x"),
                                   RuntimeError("boom")], ids=lambda e: type(e).__name__)
def test_an_exception_from_student_code_becomes_check_failed(name, where, error):
    check, valid, is_class = CHECKERS[name]
    with pytest.raises(CheckFailed) as info:
        check(raising(valid, is_class, error, where))
    assert type(error).__name__ in info.value.measured, info.value
    if isinstance(error, SystemExit):
        assert "sys.exit()" in info.value.hint


@pytest.mark.parametrize("name", sorted(CHECKERS))
def test_keyboard_interrupt_is_passed_on(name):
    """Ctrl-C must still stop a check that hangs: a checker does not swallow it."""
    check, valid, is_class = CHECKERS[name]
    with pytest.raises(KeyboardInterrupt):
        check(raising(valid, is_class, KeyboardInterrupt(), "call"))


@pytest.mark.parametrize("name", sorted(CHECKERS))
def test_a_strange_return_value_becomes_check_failed(name):
    """An object the checker cannot compare (no tensor, no number) fails a property."""
    check, valid, is_class = CHECKERS[name]

    class Strange:
        def __float__(self):
            raise SystemExit("from __float__")

        def __len__(self):
            raise GeneratorExit

        def __iter__(self):
            raise ValueError("no")

    if is_class:
        class Returns(valid):  # type: ignore[misc, valid-type]
            def forward(self, *args, **kwargs):
                return Strange()
        solution: object = Returns
    else:
        def solution(*args):
            return Strange()
    with pytest.raises(CheckFailed):
        check(solution)


@pytest.mark.parametrize("name", sorted(CHECKERS))
def test_valid_solutions_pass_with_gradients_globally_off(name):
    check, valid, _ = CHECKERS[name]
    torch.set_grad_enabled(False)
    try:
        assert "all" in check(valid)
        assert not torch.is_grad_enabled(), "the caller's setting is put back"
    finally:
        torch.set_grad_enabled(True)


@pytest.mark.parametrize("name", sorted(CHECKERS))
def test_valid_solutions_pass_whatever_the_default_dtype(name):
    check, valid, _ = CHECKERS[name]
    torch.set_default_dtype(torch.float64)
    try:
        assert "all" in check(valid)
        assert torch.get_default_dtype() == torch.float64
    finally:
        torch.set_default_dtype(torch.float32)


@pytest.mark.parametrize("name", sorted(CHECKERS))
def test_valid_solutions_pass_the_hidden_check_and_leave_the_random_state(name):
    check, valid, _ = CHECKERS[name]
    state = torch.random.get_rng_state()
    assert "all" in check(valid, hidden=True)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_sys_exit_in_a_constructor_is_a_failed_construction():
    class ExitsWhenBuilt(nn.Module):
        def __init__(self, *args):
            super().__init__()
            sys.exit("bye")

    with pytest.raises(CheckFailed, match="property 'construction' failed") as info:
        check_basic_block(ExitsWhenBuilt)
    assert "SystemExit('bye')" in info.value.measured
