import numpy as np
import pytest
import torch

from skiplab import Claim, ClaimFailed, claim


def test_holding_claim_returns_its_verdict_and_evidence():
    result = claim("two is less than three", 2 < 3, left=2, right=3.0)
    assert isinstance(result, Claim) and result.holds
    assert "Claim holds: two is less than three" in result.as_text()
    assert "left = 2" in result.as_text()
    html = result._repr_html_()
    assert "skiplab-claim-holds" in html and "<code>right</code>" in html


def test_failing_claim_raises_with_evidence():
    with pytest.raises(ClaimFailed) as info:
        claim("the ratio is tiny", 0.5 < 1e-3, ratio=0.5)
    message = str(info.value)
    assert "Claim FAILED: the ratio is tiny" in message
    assert "ratio = 0.5" in message
    assert info.value.result.holds is False
    assert isinstance(info.value, AssertionError)


def test_numpy_and_torch_booleans_are_accepted():
    assert claim("numpy", np.bool_(True)).holds
    assert claim("torch", torch.tensor(True)).holds
    with pytest.raises(ClaimFailed):
        claim("torch false", torch.tensor(1.0) > 2)


def test_non_boolean_verdict_is_rejected():
    with pytest.raises(TypeError, match="must be a bool"):
        claim("a number is not a verdict", 1.0)


def test_evidence_formatting():
    text = claim("format", True, tiny=1.23456e-31, big=6.5e35, plain=0.071234,
                 vector=[1.0, 2.5]).as_text()
    assert "tiny = 1.235e-31" in text
    assert "big = 6.500e+35" in text
    assert "plain = 0.07123" in text
    assert "vector = [1, 2.5]" in text
