"""Shared by the checkers' tests: a wrong solution must fail the named property, with its hint."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from skiplab.checks import CheckFailed


def rejects(check: Callable[..., str], solution: Any, prop: str, hint: str, *,
            avoid: str | None = None, **kwargs: Any) -> CheckFailed:
    """Run ``check(solution, **kwargs)``: it must fail ``prop``, with ``hint`` in its hint
    (case-insensitive) and, if given, without ``avoid`` (a hint that names another cause)."""
    with pytest.raises(CheckFailed, match=re.escape(f"property '{prop}' failed")) as info:
        check(solution, **kwargs)
    assert info.value.property == prop
    assert hint.lower() in info.value.hint.lower(), info.value
    if avoid is not None:
        assert avoid.lower() not in info.value.hint.lower(), info.value
    assert "Traceback" not in str(info.value)
    return info.value
