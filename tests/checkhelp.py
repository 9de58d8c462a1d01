"""Shared by the checkers' tests: a wrong solution must fail the named property, with its hint."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from skiplab.checks import CheckFailed


def rejects(check: Callable[[Any], str], solution: Any, prop: str, hint: str) -> CheckFailed:
    """Run ``check(solution)``: it must fail ``prop``, with ``hint`` in its hint."""
    with pytest.raises(CheckFailed, match=re.escape(f"property '{prop}' failed")) as info:
        check(solution)
    assert info.value.property == prop
    assert hint.lower() in info.value.hint.lower(), info.value
    return info.value
