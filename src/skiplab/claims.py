"""Executable claims: a finding stated in words, checked on the numbers just measured.

``claim(text, holds, **evidence)`` shows a verdict with its evidence in the page (HTML in
Jupyter, plain text elsewhere) and raises :class:`ClaimFailed` when ``holds`` is false, so
the book's build and its tests fail as soon as an experiment stops showing what the prose
says.
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from .runtime import get_scale, get_seed

try:  # IPython shows verdicts as HTML in Jupyter; without it they are plain text only
    from IPython import get_ipython
    from IPython.display import publish_display_data
except ImportError:
    get_ipython = publish_display_data = None

__all__ = ["Claim", "ClaimFailed", "claim", "format_evidence"]


class ClaimFailed(AssertionError):
    """A claim in the book did not hold for the numbers measured in this run."""

    def __init__(self, result: Claim):
        self.result = result
        super().__init__(result.as_text())


def _format_value(value: Any) -> str:
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()  # numpy / torch scalars
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.3e}"
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_format_value(v) for v in value) + "]"
    return str(value)


def format_evidence(evidence: Mapping[str, Any]) -> dict[str, str]:
    """Evidence values as short strings: floats to four significant digits."""
    return {key: _format_value(value) for key, value in evidence.items()}


@dataclass
class Claim:
    """The verdict of one claim: its text, whether it held, and the measured evidence."""

    text: str
    holds: bool
    evidence: dict[str, Any] = field(default_factory=dict)
    _shown: bool = field(default=False, repr=False, compare=False)

    @property
    def verdict(self) -> str:
        return "holds" if self.holds else "FAILED"

    def as_text(self) -> str:
        lines = [f"Claim {self.verdict}: {self.text}"]
        lines += [f"    {k} = {v}" for k, v in format_evidence(self.evidence).items()]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        colour, mark = ("#1a7f37", "&#10004;") if self.holds else ("#cf222e", "&#10008;")
        rows = "".join(
            f"<tr><td style='padding:0 1em 0 0'><code>{html.escape(k)}</code></td>"
            f"<td><code>{html.escape(v)}</code></td></tr>"
            for k, v in format_evidence(self.evidence).items()
        )
        table = f"<table style='margin:0.3em 0 0 1.6em;font-size:90%'>{rows}</table>" if rows else ""
        return (
            f"<div class='skiplab-claim skiplab-claim-{self.verdict.lower()}' "
            f"style='border-left:4px solid {colour};padding:0.4em 0.8em;margin:0.5em 0'>"
            f"<span style='color:{colour};font-weight:bold'>{mark} Claim {self.verdict}:</span> "
            f"{html.escape(self.text)}{table}</div>"
        )

    def __str__(self) -> str:
        return self.as_text()

    def _ipython_display_(self) -> None:
        # claim() displays the verdict as soon as it is checked; when the same object is
        # also a cell's last expression, IPython would show it a second time: skip that.
        if self._shown or publish_display_data is None:
            return
        publish_display_data({"text/plain": self.as_text(), "text/html": self._repr_html_()})
        self._shown = True


def _in_ipython() -> bool:
    return get_ipython is not None and get_ipython() is not None


def _log(result: Claim) -> None:
    """Append the verdict to ``SKIPLAB_CLAIMS_LOG`` (one JSON object per line) when that
    variable names a file: how ``make claims`` collects every claim's evidence per run.
    ``SKIPLAB_CLAIMS_CHAPTER`` labels the lines; the seed, scale and torch's thread count are
    this process's."""
    path = os.environ.get("SKIPLAB_CLAIMS_LOG")
    if not path:
        return
    record = {"chapter": os.environ.get("SKIPLAB_CLAIMS_CHAPTER", ""), "seed": get_seed(),
              "threads": torch.get_num_threads(), "scale": get_scale(), "text": result.text,
              "holds": result.holds, "evidence": format_evidence(result.evidence)}
    with open(path, "a", encoding="utf-8") as file:
        file.write(json.dumps(record) + "\n")


def claim(text: str, holds: bool, **evidence: Any) -> Claim:
    """Check a finding on measured numbers; show the verdict; raise if it does not hold.

    Args:
        text: the finding in words, as the page states it.
        holds: the check, computed from the evidence (e.g. ``ratio > 100``).
        **evidence: the measured numbers the check used, shown beside the verdict.

    Returns:
        The :class:`Claim`, when it holds.

    Raises:
        ClaimFailed: ``holds`` is false. The message carries the text and the evidence.
    """
    if hasattr(holds, "item"):
        holds = holds.item()  # a numpy or torch boolean
    if not isinstance(holds, bool):
        raise TypeError(f"claim(holds=...) must be a bool, got {type(holds).__name__}")
    result = Claim(text=text, holds=holds, evidence=dict(evidence))
    _log(result)
    if _in_ipython():
        result._ipython_display_()
    if not holds:
        raise ClaimFailed(result)
    return result
