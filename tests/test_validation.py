"""The one validation helper: accepted values pass through, others are named with the list."""

import pytest

from skiplab.validation import check_choice


def test_accepted_value_is_returned():
    assert check_choice("norm", "pre", ("post", "pre")) == "pre"
    assert check_choice("kind", 2, {1: "one", 2: "two"}) == 2


def test_unknown_value_names_argument_value_and_every_option():
    with pytest.raises(ValueError, match=r"^norm='mid' is not known; accepted: 'post', 'pre'$"):
        check_choice("norm", "mid", ("post", "pre"))


def test_hint_is_shown_beside_its_option():
    with pytest.raises(ValueError, match=r"'pre' \(x \+ F\(LN\(x\)\)\)"):
        check_choice("norm", "x", ("post", "pre"), hint={"pre": "x + F(LN(x))"})


def test_unhashable_value_is_refused_not_crashed():
    with pytest.raises(ValueError, match="is not known"):
        check_choice("skip", ["residual"], {"residual": None})
