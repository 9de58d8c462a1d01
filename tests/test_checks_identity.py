"""The identity chapter's checker (a ReZero block, y = x + alpha * F(x), alpha starting at 0):
the reference solution and valid variants pass, plausible student mistakes are rejected with
the message meant for them."""

from __future__ import annotations

import pytest
import torch
from checkhelp import rejects as _rejects
from torch import nn

from skiplab.blocks.skips import ReZero
from skiplab.checks import check_rezero_block

ALL_PASSED = "all 9 checks passed"


class ReZeroBlock(nn.Module):
    """The reference solution: one scalar alpha, starting at 0."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.branch = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        self.alpha = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.alpha * self.branch(x)


class PerChannelBlock(ReZeroBlock):
    """Valid: one alpha per channel, all zero, written on the right."""

    def __init__(self, dim, hidden):
        super().__init__(dim, hidden)
        self.alpha = nn.Parameter(torch.zeros(dim))

    def forward(self, x):
        return x + self.branch(x) * self.alpha


class AddcmulBlock(ReZeroBlock):
    """Valid: alpha of shape (1,), x + alpha * branch(x) in one torch.addcmul."""

    def __init__(self, dim, hidden):
        super().__init__(dim, hidden)
        self.alpha = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return torch.addcmul(x, self.alpha, self.branch(x))


class LibraryBlock(nn.Module):
    """Valid: the library's ReZero skip kind, exposing its alpha."""

    def __init__(self, dim, hidden):
        super().__init__()
        self.branch = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        self.skip = ReZero(dim)

    @property
    def alpha(self):
        return self.skip.alpha

    def forward(self, x):
        return self.skip(x, self.branch(x))


@pytest.mark.parametrize("cls", [ReZeroBlock, PerChannelBlock, AddcmulBlock, LibraryBlock])
def test_rezero_block_accepts(cls):
    assert ALL_PASSED in check_rezero_block(cls)
    assert ALL_PASSED in check_rezero_block(cls, hidden=True)


def test_the_report_names_the_two_promises():
    report = check_rezero_block(ReZeroBlock)
    assert "identity at initialisation" in report and "learning starts" in report
    assert "the branch learns once alpha moved" in report


# --- alpha does not start at zero -----------------------------------------------------------

def _starting_at(make):
    class Block(ReZeroBlock):
        def __init__(self, dim, hidden):
            super().__init__(dim, hidden)
            self.alpha = nn.Parameter(make(dim))
    return Block


class SigmoidAlphaBlock(ReZeroBlock):
    def forward(self, x):
        return x + torch.sigmoid(self.alpha) * self.branch(x)


@pytest.mark.parametrize("cls, hint", [
    (_starting_at(lambda dim: torch.ones(())), "alpha starts at 1, an open gate"),
    (SigmoidAlphaBlock, "sigmoid(0)"),
    (_starting_at(lambda dim: torch.full((dim,), 0.1)), "LayerScale"),
    (_starting_at(lambda dim: 0.01 * torch.randn(())), "even a small or random start"),
    (_starting_at(lambda dim: 1e-3 * torch.randn(dim)), "one value per channel"),
])
def test_rezero_block_rejects_a_gate_that_starts_open(cls, hint):
    error = _rejects(check_rezero_block, cls, "identity at initialisation", hint)
    assert "exactly 0" in error.hint


# --- alpha never gets a gradient ------------------------------------------------------------

class BufferAlphaBlock(ReZeroBlock):
    def __init__(self, dim, hidden):
        super().__init__(dim, hidden)
        del self.alpha
        self.register_buffer("alpha", torch.zeros(()))


class FrozenAlphaBlock(ReZeroBlock):
    def __init__(self, dim, hidden):
        super().__init__(dim, hidden)
        self.alpha = nn.Parameter(torch.zeros(()), requires_grad=False)


class PlainTensorAlphaBlock(ReZeroBlock):
    def __init__(self, dim, hidden):
        super().__init__(dim, hidden)
        del self.alpha
        self.alpha = torch.zeros(())


@pytest.mark.parametrize("cls, measured", [
    (BufferAlphaBlock, "not a registered parameter"),
    (FrozenAlphaBlock, "requires_grad=False"),
    (PlainTensorAlphaBlock, "not a registered parameter"),
])
def test_rezero_block_rejects_an_alpha_that_is_not_trained(cls, measured):
    error = _rejects(check_rezero_block, cls, "has a branch and a trainable alpha",
                     "never trained")
    assert measured in error.measured


class DataAlphaBlock(ReZeroBlock):
    def forward(self, x):
        return x + self.alpha.data * self.branch(x)


class DetachAlphaBlock(ReZeroBlock):
    def forward(self, x):
        return x + self.alpha.detach() * self.branch(x)


class NoGradAlphaBlock(ReZeroBlock):
    def forward(self, x):
        with torch.no_grad():
            alpha = self.alpha * 1.0
        return x + alpha * self.branch(x)


class ReluAlphaBlock(ReZeroBlock):
    def forward(self, x):
        return x + torch.relu(self.alpha) * self.branch(x)


class ClampAlphaBlock(ReZeroBlock):
    def forward(self, x):
        return x + self.alpha.clamp(min=0) * self.branch(x)


class SquaredAlphaBlock(ReZeroBlock):
    def forward(self, x):
        return x + self.alpha ** 2 * self.branch(x)


class AbsAlphaBlock(ReZeroBlock):
    def forward(self, x):
        return x + self.alpha.abs() * self.branch(x)


@pytest.mark.parametrize("cls, hint", [
    (DataAlphaBlock, "used through .data or .detach()"),
    (DetachAlphaBlock, "used through .data or .detach()"),
    (NoGradAlphaBlock, "under torch.no_grad()"),
    (ReluAlphaBlock, "alpha goes through a ReLU (or a clamp)"),
    (ClampAlphaBlock, "alpha goes through a ReLU (or a clamp)"),
    (SquaredAlphaBlock, "alpha is squared"),
    (AbsAlphaBlock, "abs()"),
])
def test_rezero_block_names_why_alpha_does_not_learn(cls, hint):
    """The branch is not zero here: the hint must not blame its initialisation."""
    _rejects(check_rezero_block, cls, "learning starts", hint, avoid="default initialisation")


# --- both factors of alpha * F(x) zero, or the wrong one ------------------------------------

class BothZeroBlock(ReZeroBlock):
    """ReZero and Fixup at once: alpha and the branch's last layer both start at zero."""

    def __init__(self, dim, hidden):
        super().__init__(dim, hidden)
        nn.init.zeros_(self.branch[2].weight)
        nn.init.zeros_(self.branch[2].bias)


class FixupOpenBlock(BothZeroBlock):
    """Identity through a zero last layer, alpha open: alpha gets no gradient at step 0."""

    def __init__(self, dim, hidden):
        super().__init__(dim, hidden)
        self.alpha = nn.Parameter(torch.ones(()))


@pytest.mark.parametrize("cls, hint", [
    (BothZeroBlock, "exactly one factor of alpha * branch(x) may start at zero"),
    (FixupOpenBlock, "Fixup's choice"),
])
def test_rezero_block_rejects_a_zero_branch(cls, hint):
    error = _rejects(check_rezero_block, cls, "learning starts", hint)
    assert "keep the branch's default initialisation" in error.hint


# --- the skip and the branch wired wrongly --------------------------------------------------

class NoSkipBlock(ReZeroBlock):
    def forward(self, x):
        return self.alpha * self.branch(x)


class AlphaOnSkipBlock(ReZeroBlock):
    def forward(self, x):
        return self.alpha * x + self.branch(x)


class DoubleSkipBlock(ReZeroBlock):
    def forward(self, x):
        return x + x + self.alpha * self.branch(x)


class InputInBranchTwiceBlock(ReZeroBlock):
    def forward(self, x):
        return x + self.alpha * (self.branch(x) + x)


class TanhAlphaBlock(ReZeroBlock):
    """tanh(0) = 0 with slope 1: both promises hold, but alpha is not what multiplies."""

    def forward(self, x):
        return x + torch.tanh(self.alpha) * self.branch(x)


class ConcatBlock(ReZeroBlock):
    def forward(self, x):
        return torch.cat([x, self.alpha * self.branch(x)], dim=1)


class ColumnAlphaBlock(ReZeroBlock):
    """alpha of shape (dim, 1): it does not broadcast over the batch."""

    def __init__(self, dim, hidden):
        super().__init__(dim, hidden)
        self.alpha = nn.Parameter(torch.zeros(dim, 1))


class AlphaForSixBlock(ReZeroBlock):
    """A per-channel alpha sized for the first width the check tries, 6."""

    def __init__(self, dim, hidden):
        super().__init__(dim, hidden)
        self.alpha = nn.Parameter(torch.zeros(6))


class RenamedBranchBlock(ReZeroBlock):
    def __init__(self, dim, hidden):
        super().__init__(dim, hidden)
        self.f = self.branch
        del self.branch

    def forward(self, x):
        return x + self.alpha * self.f(x)


class OneArgumentBlock(ReZeroBlock):
    def __init__(self, dim):
        super().__init__(dim, 4 * dim)


class CrashingBlock(ReZeroBlock):
    def forward(self, x):
        return x + self.alpha * self.branch(x.T)


@pytest.mark.parametrize("cls, prop, hint", [
    (NoSkipBlock, "identity at initialisation", "the skip is missing"),
    (AlphaOnSkipBlock, "identity at initialisation", "alpha multiplies the skip path"),
    (DoubleSkipBlock, "identity at initialisation", "the input is added twice"),
    (InputInBranchTwiceBlock, "matches x + alpha * branch(x) for any alpha", "added twice"),
    (TanhAlphaBlock, "matches x + alpha * branch(x) for any alpha", "multiply by alpha itself"),
    (ConcatBlock, "shape (B, dim) -> (B, dim)", "do not concatenate"),
    (ColumnAlphaBlock, "shape (B, dim) -> (B, dim)", "broadcast over the batch"),
    (AlphaForSixBlock, "has a branch and a trainable alpha", "its size follows dim"),
    (RenamedBranchBlock, "has a branch and a trainable alpha", "keep the given self.branch"),
    (OneArgumentBlock, "builds", "takes (dim, hidden)"),
    (CrashingBlock, "shape (B, dim) -> (B, dim)", "x + self.alpha * self.branch(x)"),
])
def test_rezero_block_rejects_wrong_wiring(cls, prop, hint):
    _rejects(check_rezero_block, cls, prop, hint)


# --- the gradient: the branch once alpha moved, and the true slope --------------------------

class DetachedBranchBlock(ReZeroBlock):
    def forward(self, x):
        return x + self.alpha * self.branch(x).detach()


class NoGradBranchBlock(ReZeroBlock):
    def forward(self, x):
        with torch.no_grad():
            branch = self.branch(x)
        return x + self.alpha * branch


class FrozenFirstLayerBlock(ReZeroBlock):
    def __init__(self, dim, hidden):
        super().__init__(dim, hidden)
        self.branch[0].requires_grad_(False)


class DetachedSkipBlock(ReZeroBlock):
    def forward(self, x):
        return x.detach() + self.alpha * self.branch(x)


class DetachedBranchInputBlock(ReZeroBlock):
    def forward(self, x):
        return x + self.alpha * self.branch(x.detach())


@pytest.mark.parametrize("cls, prop, hint", [
    (DetachedBranchBlock, "the branch learns once alpha moved", "carries no gradient"),
    (NoGradBranchBlock, "the branch learns once alpha moved", "carries no gradient"),
    (FrozenFirstLayerBlock, "the branch learns once alpha moved",
     "branch.0.weight has requires_grad=False"),
    (DetachedSkipBlock, "gradient with respect to x is the true slope",
     "the skip carries no gradient"),
    (DetachedBranchInputBlock, "gradient with respect to x is the true slope",
     "the branch's input carries no gradient"),
])
def test_rezero_block_rejects_a_cut_gradient(cls, prop, hint):
    _rejects(check_rezero_block, cls, prop, hint)


def test_the_branch_gets_its_first_gradient_only_once_alpha_moved():
    """The lesson the checker's 'learning' properties follow, on the reference itself."""
    torch.manual_seed(0)
    block, x = ReZeroBlock(6, 16), torch.randn(5, 6)
    block(x).pow(2).sum().backward()
    assert block.alpha.grad != 0
    assert not torch.any(block.branch[0].weight.grad != 0)
