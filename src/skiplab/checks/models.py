"""The model-exercise checkers, one module each (kept here under their old import path).

- :func:`~skiplab.checks.gradient_probe.check_gradient_probe`: a per-layer gradient probe.
- :func:`~skiplab.checks.prenorm.check_prenorm_block`: a pre-norm transformer block.
- :func:`~skiplab.checks.gated_head.check_gated_head`: a gated (ReZero-style) skip head.
- :mod:`~skiplab.checks.permutation`: the permutation symmetry of hidden units and the
  proof by code that a skip breaks it.
"""

from .gated_head import check_gated_head
from .gradient_probe import check_gradient_probe
from .permutation import (PERMUTATION, check_function_change, check_permutation,
                          permutation_test_model, skip_net_changes)
from .prenorm import check_prenorm_block

__all__ = [
    "PERMUTATION",
    "check_function_change",
    "check_gated_head",
    "check_gradient_probe",
    "check_permutation",
    "check_prenorm_block",
    "permutation_test_model",
    "skip_net_changes",
]
