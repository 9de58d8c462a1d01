"""The one helper that turns a bad choice into a clear error.

Every argument that takes one of a few named values (a skip kind, an activation, an
optimiser...) is checked here, so the message always reads the same way and lists what
would have worked:

>>> check_choice("activation", "relu", ("sigmoid", "tanh", "relu"))
'relu'
>>> check_choice("activation", "elu", ("sigmoid", "tanh", "relu"))
Traceback (most recent call last):
    ...
ValueError: activation='elu' is not known; accepted: 'sigmoid', 'tanh', 'relu'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

__all__ = ["check_choice"]

T = TypeVar("T")


def check_choice(name: str, value: T, accepted: Iterable[Any] | Mapping[Any, Any], *,
                 hint: Mapping[Any, str] | None = None) -> T:
    """Return ``value`` if it is one of ``accepted`` (the keys, for a mapping), else raise.

    Args:
        name: the argument's name, as the caller would type it (``"skip"``).
        value: what was passed.
        accepted: the allowed values, in the order the message should list them.
        hint: optional words per accepted value, shown after it (``'pre' (x + F(LN(x)))``).

    Raises:
        ValueError: ``{name}={value!r} is not known; accepted: ...``.
    """
    options = list(accepted)
    try:
        known = value in options
    except TypeError:        # an unhashable or incomparable value is simply not known
        known = False
    if known:
        return value
    hint = hint or {}
    listed = ", ".join(f"{option!r}" + (f" ({hint[option]})" if option in hint else "")
                       for option in options)
    raise ValueError(f"{name}={value!r} is not known; accepted: {listed}")
