"""Tiny models small enough to draw: two parameters, one symmetry.

:class:`TwoUnitToy` fits y(x) = tanh(a x) + tanh(b x) to a target made of two different
units, tanh(w1 x) + tanh(w2 x). Swapping a and b leaves the model unchanged, so the loss is
symmetric across the line a = b and has two mirror-image minima, (w1, w2) and (w2, w1).
On the line both units get the same gradient, so gradient descent started there can never
leave it: it settles at the best *symmetric* point, a minimum along the line that is a
saddle across it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["TwoUnitToy"]


@dataclass(frozen=True)
class TwoUnitToy:
    """The two-unit regression toy. ``target`` holds (w1, w2); ``span`` and ``points`` the
    inputs x, evenly spaced on [-span, span]."""

    target: tuple[float, float] = (2.0, 0.5)
    span: float = 3.0
    points: int = 61
    x: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.target[0] == self.target[1]:
            raise ValueError("the two target units must differ, else there is one minimum")
        x = torch.linspace(-self.span, self.span, self.points, dtype=torch.float64)
        object.__setattr__(self, "x", x)

    def loss(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Mean squared error at (a, b); a and b broadcast against each other (grids work).

        Shapes: a, b (*S) -> (*S), in float64 on a's device (numbers and arrays: the CPU).
        """
        a = torch.as_tensor(a, dtype=torch.float64)
        b = torch.as_tensor(b, dtype=torch.float64, device=a.device)
        a, b, x = a[..., None], b[..., None], self.x.to(a.device)
        w1, w2 = self.target
        target = torch.tanh(w1 * x) + torch.tanh(w2 * x)
        return ((torch.tanh(a * x) + torch.tanh(b * x) - target) ** 2).mean(-1)

    def grid(self, a_values: np.ndarray, b_values: np.ndarray) -> np.ndarray:
        """Loss on the grid: (len(b_values), len(a_values)), rows indexed by b (plotly's z)."""
        a = torch.as_tensor(np.asarray(a_values), dtype=torch.float64)
        b = torch.as_tensor(np.asarray(b_values), dtype=torch.float64)
        return self.loss(a[None, :], b[:, None]).cpu().numpy()

    def descend(self, start: tuple[float, float], *, steps: int = 400, lr: float = 0.5
                ) -> np.ndarray:
        """Plain gradient descent from ``start``; returns the path, (steps + 1, 2) as (a, b)."""
        p = torch.tensor(start, dtype=torch.float64, requires_grad=True)
        path = [p.detach().clone()]
        for _ in range(steps):
            (grad,) = torch.autograd.grad(self.loss(p[0], p[1]), p)
            with torch.no_grad():
                p -= lr * grad
            path.append(p.detach().clone())
        return torch.stack(path).cpu().numpy()
