"""Diagnosing a skip whose gate starts at zero, y = x + g * f(x): what the gated head
(:mod:`~skiplab.checks.gated_head`) and the ReZero block (:mod:`~skiplab.checks.rezero_block`)
share.

Pure diagnoses, no hints: each checker puts them in its own words (its gate is ``gate`` or
``alpha``, its branch ``fc`` or ``branch``).

- :func:`init_mistake`: why a module that should start as the identity does not;
- :func:`gate_mistake`: why the gate gets no gradient although the branch is not zero.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from .core import max_diff

__all__ = ["InitMistake", "gate_mistake", "gate_response", "init_mistake", "scale"]


def scale(delta: torch.Tensor, f: torch.Tensor) -> float | None:
    """s with delta == s * f (within 1e-5), or None."""
    delta, f = delta.detach().double(), f.detach().double()
    s = ((delta * f).sum() / (f * f).sum().clamp_min(1e-30)).item()
    return s if max_diff(delta, s * f) < 1e-5 else None


def _channel_scales(delta: torch.Tensor, f: torch.Tensor) -> torch.Tensor | None:
    """s, one per last-dimension channel, with delta == f * s (within 1e-5), or None."""
    delta, f = delta.detach().double(), f.detach().double()
    if delta.shape != f.shape or delta.dim() < 2:
        return None
    rows = delta.reshape(-1, delta.shape[-1]), f.reshape(-1, f.shape[-1])
    s = (rows[0] * rows[1]).sum(0) / (rows[1] * rows[1]).sum(0).clamp_min(1e-30)
    return s if max_diff(delta, f * s) < 1e-5 else None


@dataclass(frozen=True)
class InitMistake:
    """Why y = module(x) is not x at initialisation.

    ``kind``: "no skip" (y is 0), "gate on skip" (y is f(x), as g * x + f(x) gives with
    g = 0), "open" (y - x == g0 * f(x): the gate starts at ``start``, one number or one per
    channel) or "unknown"."""

    kind: str
    start: torch.Tensor | None = None

    @property
    def scalar(self) -> float | None:
        """The gate's start when it is one number (or the same for every channel)."""
        if self.start is None or max_diff(self.start, self.start.reshape(-1)[0]) > 1e-5:
            return None
        return self.start.reshape(-1)[0].item()


def init_mistake(x: torch.Tensor, y: torch.Tensor, branch: torch.Tensor, *,
                 per_channel: bool = False) -> InitMistake:
    """Diagnose y (the module's output at initialisation) against x and f(x) (``branch``);
    ``per_channel``: also recognise a gate that starts at one value per channel."""
    if y.abs().max().item() < 1e-6:
        return InitMistake("no skip")
    if max_diff(y, branch) < 1e-5:
        return InitMistake("gate on skip")
    found = scale(y - x, branch)
    if found is not None:
        return InitMistake("open", torch.tensor(found, dtype=torch.float64))
    channels = _channel_scales(y - x, branch) if per_channel else None
    return InitMistake("unknown") if channels is None else InitMistake("open", channels)


def gate_response(module: nn.Module, gate: str, branch: str, x: torch.Tensor,
                  value: float) -> float | None:
    """How much of f(x) the module adds to x when its gate (attribute ``gate``) holds
    ``value`` (f is the attribute ``branch``); None if that is no multiple of f(x)."""
    twin = copy.deepcopy(module)
    try:
        with torch.no_grad():
            getattr(twin, gate).fill_(value)
            return scale(twin(x) - x, getattr(twin, branch)(x))
    except Exception:  # noqa: BLE001 - only a diagnosis
        return None


def gate_mistake(module: nn.Module, gate: str, branch: str, x: torch.Tensor) -> str | None:
    """Why the gate gets no gradient although f(x) is not zero, from how the output responds
    to the gate set to +0.1 and -0.1:

    - "detached": the output follows the gate (0.1, -0.1) yet carries no gradient: the gate
      is used through ``.data``, ``.detach()`` or under ``torch.no_grad()``;
    - "clipped": (0.1, 0): a ReLU or a clamp, whose slope at 0 is 0;
    - "squared": (0.01, 0.01): g ** 2, slope 0 at 0;
    - "absolute": (0.1, 0.1): abs(g), whose gradient at 0 is 0;
    - None: something else.
    """
    up, down = (gate_response(module, gate, branch, x, v) for v in (0.1, -0.1))

    def near(a: float | None, b: float) -> bool:
        return a is not None and abs(a - b) < 1e-4

    for kind, (want_up, want_down) in (("detached", (0.1, -0.1)), ("clipped", (0.1, 0.0)),
                                        ("squared", (0.01, 0.01)), ("absolute", (0.1, 0.1))):
        if near(up, want_up) and near(down, want_down):
            return kind
    return None
