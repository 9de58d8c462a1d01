"""Checkers for the book's exercises: properties, with feedback that names the mistake.

Each ``check_*`` function takes the student's code (a class or a function), runs it through
properties and returns a short report, or raises :class:`CheckFailed` whose message names
the property that failed, what was expected, what was measured and a hint. Nothing else
escapes a checker (see :func:`~skiplab.checks.core.guarded`). Each takes ``hidden=True``
for the grader's hidden check: the same properties on further sizes.

One module per exercise over a shared core (:mod:`~skiplab.checks.core`, with
:mod:`~skiplab.checks.tracing` to look inside a forward pass); three exercises keep a part in
a sibling module (:mod:`~skiplab.checks.basic_block_formula`,
:mod:`~skiplab.checks.landscape_cases`, :mod:`~skiplab.checks.lesion_compare`), so that no
module passes 400 lines, and the two zero-gate exercises (the gated head, the ReZero block)
share their diagnoses in :mod:`~skiplab.checks.zero_gate`. :mod:`~skiplab.checks.integrity`
guards the grading kernel (see ``book/teachers.md``).
"""

from .basic_block import check_basic_block
from .core import CheckFailed, Checker
from .crop import check_crop_and_concat
from .dense_layer import check_dense_layer
from .gated_head import check_gated_head
from .gradient_probe import check_gradient_probe
from .landscape import check_filter_normalise
from .lesion import check_delete_block
from .permutation import check_function_change, check_permutation, skip_net_changes
from .prenorm import check_prenorm_block
from .rezero_block import check_rezero_block

__all__ = ["CheckFailed", "Checker", "check_basic_block", "check_crop_and_concat",
           "check_delete_block", "check_dense_layer", "check_filter_normalise",
           "check_function_change", "check_gated_head", "check_gradient_probe",
           "check_permutation", "check_prenorm_block", "check_rezero_block",
           "skip_net_changes"]
