"""Checkers for the book's exercises: properties, with feedback that names the mistake.

Each ``check_*`` function takes the student's code (a class or a function), runs it through
properties and returns a short report, or raises :class:`CheckFailed` whose message names
the property that failed, what was expected, what was measured and a hint.
"""

from .architectures import check_basic_block, check_crop_and_concat, check_dense_layer
from .core import CheckFailed, Checker
from .landscape import check_filter_normalise
from .lesion import check_delete_block
from .models import (check_function_change, check_gated_head, check_gradient_probe,
                     check_permutation, check_prenorm_block, skip_net_changes)

__all__ = ["CheckFailed", "Checker", "check_basic_block", "check_crop_and_concat",
           "check_delete_block", "check_dense_layer", "check_filter_normalise",
           "check_function_change", "check_gated_head", "check_gradient_probe",
           "check_permutation", "check_prenorm_block", "skip_net_changes"]
