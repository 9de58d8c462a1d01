"""Heads for fine-tuning an encoder: small modules that map (B, D_in) embeddings to
(B, D_out), one family with one base class.

The point of the chapter that uses them: a head put on a pre-trained encoder should start
as (almost) the identity, so that at step 0 the fine-tuned model still computes the
encoder's good embedding. A skip connection around the head's layer does that:

    SkipConnectionHead:  y = x + gate ⊙ fc(skip_dropout(x))

with a per-dimension gate that starts closed. Two ways to close it:

- ``gate="sigmoid"`` (Quaterion's head): gate = sigmoid(g), g initialised at -4, so the
  gate starts at 0.018 and the head within about 2% of the identity; both the gate and the
  linear layer get gradients at step 0.
- ``gate="zero"`` (ReZero-style): gate = g, initialised at exactly 0, so the head starts
  as exactly the identity. The linear layer then gets *no* gradient at step 0 (its output
  is multiplied by 0), but the gate does (its gradient is fc(x) times the upstream
  gradient), so after one step the gate opens and the linear layer starts learning.

Every head knows its sizes, and saves itself as ``config.json`` + ``weights.pt`` in a
folder; :func:`load_head` rebuilds it (weights read with ``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from .validation import check_choice

__all__ = [
    "HEADS",
    "EmptyHead",
    "EncoderHead",
    "GatedHead",
    "LinearHead",
    "ProjectionHead",
    "SequentialHead",
    "SkipConnectionHead",
    "WideningHead",
    "load_head",
]

HEADS: dict[str, type[EncoderHead]] = {}


class EncoderHead(nn.Module):
    """Base class: maps (B, input_dim) to (B, output_dim) and saves/loads itself.

    Subclasses pass their constructor arguments to ``super().__init__`` (they are kept,
    JSON-serialisable, for :meth:`save`) and are registered in :data:`HEADS` by name.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        HEADS[cls.__name__] = cls

    def __init__(self, input_dim: int, **config: Any):
        super().__init__()
        if not isinstance(input_dim, int) or input_dim < 1:
            raise ValueError(f"input_dim must be a positive integer, got {input_dim!r}")
        self.input_dim = input_dim
        self._config = {"input_dim": input_dim, **config}

    @property
    def output_dim(self) -> int:
        raise NotImplementedError

    @property
    def config(self) -> dict[str, Any]:
        """The constructor arguments; ``type(head)(**head.config)`` builds a fresh twin (for
        :class:`SequentialHead`, whose arguments are heads, use :meth:`save` and
        :func:`load_head`)."""
        return dict(self._config)

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != 2 or x.shape[1] != self.input_dim:
            raise ValueError(f"{type(self).__name__} expects (B, {self.input_dim}) embeddings, "
                             f"got {tuple(x.shape)}")

    def save(self, folder: str | Path) -> Path:
        """Write ``config.json`` and ``weights.pt`` into ``folder`` (created if missing)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(
            json.dumps({"head": type(self).__name__, "config": self._serial_config()},
                       indent=2))
        torch.save(self.state_dict(), folder / "weights.pt")
        return folder

    def _serial_config(self) -> dict[str, Any]:
        return self.config

    @classmethod
    def _from_config(cls, config: dict[str, Any]) -> EncoderHead:
        return cls(**config)

    def extra_repr(self) -> str:
        return f"{self.input_dim} -> {self.output_dim}"


def load_head(folder: str | Path) -> EncoderHead:
    """Rebuild a head saved with :meth:`EncoderHead.save` (config, then weights)."""
    folder = Path(folder)
    spec = json.loads((folder / "config.json").read_text())
    name = spec.get("head")
    if name not in HEADS:
        raise ValueError(f"{folder / 'config.json'} names head {name!r}; known heads: "
                         f"{', '.join(sorted(HEADS))}")
    head = HEADS[name]._from_config(spec["config"])
    state = torch.load(folder / "weights.pt", map_location="cpu", weights_only=True)
    head.load_state_dict(state)
    return head


class EmptyHead(EncoderHead):
    """The identity: y = x."""

    def __init__(self, input_dim: int):
        super().__init__(input_dim)

    @property
    def output_dim(self) -> int:
        return self.input_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        return x


class LinearHead(EncoderHead):
    """y = W x + b, randomly initialised (PyTorch's default). ``output_dim`` defaults to
    ``input_dim``.

    At step 0 it hides the encoder's embedding behind a random map. That costs some
    retrieval quality but does not destroy it: a random square map distorts angles
    between embeddings without erasing them (the fine-tuning chapter measures the cost at
    step 0; "scrambles" overstates it). It is also the head Finetuner's open-source
    PyTorch tailor attached for ``output_dim``: one random ``nn.Linear``."""

    def __init__(self, input_dim: int, output_dim: int | None = None, bias: bool = True):
        output_dim = input_dim if output_dim is None else output_dim
        super().__init__(input_dim, output_dim=output_dim, bias=bias)
        self.fc = nn.Linear(input_dim, output_dim, bias=bias)

    @property
    def output_dim(self) -> int:
        return self.fc.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        return self.fc(x)


class GatedHead(EncoderHead):
    """y = x ⊙ tanh(g), one gate per dimension, g initialised at ``gate_init`` (Quaterion:
    2.0, so every dimension starts scaled by tanh(2) = 0.96)."""

    def __init__(self, input_dim: int, gate_init: float = 2.0):
        super().__init__(input_dim, gate_init=gate_init)
        self.gates = nn.Parameter(torch.full((input_dim,), float(gate_init)))

    @property
    def output_dim(self) -> int:
        return self.input_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        return x * torch.tanh(self.gates)


class WideningHead(EncoderHead):
    """Widen, activate, project back: y = W₂ act(W₁ x), W₁: D -> expansion·D, W₂: back to
    ``output_dim`` (default D)."""

    def __init__(self, input_dim: int, expansion: int = 2, output_dim: int | None = None,
                 activation: Literal["relu", "gelu", "tanh"] = "relu"):
        output_dim = input_dim if output_dim is None else output_dim
        check_choice("activation", activation, ("relu", "gelu", "tanh"))
        super().__init__(input_dim, expansion=expansion, output_dim=output_dim,
                         activation=activation)
        self.widen = nn.Linear(input_dim, expansion * input_dim)
        self.act = {"relu": nn.ReLU(), "gelu": nn.GELU(), "tanh": nn.Tanh()}[activation]
        self.project = nn.Linear(expansion * input_dim, output_dim)

    @property
    def output_dim(self) -> int:
        return self.project.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        return self.project(self.act(self.widen(x)))


class SkipConnectionHead(EncoderHead):
    """``n_layers`` times: x = x + gate ⊙ fc(skip_dropout(x)); the gate starts closed.

    Args:
        input_dim: D; the head maps (B, D) to (B, D).
        gate: ``"sigmoid"``: gate = sigmoid(g), g starts at ``gate_init`` (-4: gate 0.018);
            ``"zero"``: gate = g, starting at exactly 0 (the head starts as the identity).
        gate_init: starting pre-activation of a sigmoid gate (ignored for ``"zero"``).
        dropout: dropout on the head's input, before the split, so it also hits the
            identity route (as in Quaterion's head); 0 by default.
        skip_dropout: dropout on the branch's input only (Quaterion's "skip dropout" box):
            in training, the branch sees a randomly thinned copy of x while the identity
            route always carries x whole. It regularises only what the head *adds*, and
            leaves the start intact: with a zero gate the head is exactly the identity in
            training mode too, whatever ``skip_dropout`` is (``dropout`` is not). 0 by
            default, as in Quaterion.
        n_layers: how many such skip layers, one after another.

    At initialisation with one layer, for any x: ``|head(x) - x| <= sigmoid(gate_init) *
    |fc(x)|`` per dimension (with ``gate="zero"``, exactly ``head(x) == x`` for any number
    of layers). Note the sigmoid's slope at -4 is 0.018: the gate's gradient is about 50
    times smaller than a zero gate's, so with plain SGD the sigmoid gate opens slowly.
    Adam rescales each parameter's step, so under Adam the pre-activation moves about as
    fast as a zero gate does; the gate's *value* still moves only about 0.02 times as far
    as a zero gate's (the sigmoid's slope; see :meth:`gate_shift`).
    """

    def __init__(self, input_dim: int, *, gate: Literal["sigmoid", "zero"] = "sigmoid",
                 gate_init: float = -4.0, dropout: float = 0.0, skip_dropout: float = 0.0,
                 n_layers: int = 1):
        check_choice("gate", gate, ("sigmoid", "zero"))
        if n_layers < 1:
            raise ValueError(f"n_layers={n_layers} must be at least 1")
        super().__init__(input_dim, gate=gate, gate_init=gate_init, dropout=dropout,
                         skip_dropout=skip_dropout, n_layers=n_layers)
        self.gate_kind = gate
        self.dropout = nn.Dropout(dropout)
        self.skip_dropout = nn.Dropout(skip_dropout)
        self.fcs = nn.ModuleList(nn.Linear(input_dim, input_dim) for _ in range(n_layers))
        start = 0.0 if gate == "zero" else float(gate_init)
        self.gates = nn.ParameterList(
            nn.Parameter(torch.full((input_dim,), start)) for _ in range(n_layers))

    @property
    def output_dim(self) -> int:
        return self.input_dim

    def gate_values(self) -> list[torch.Tensor]:
        """The effective gates, one (D,) tensor per layer."""
        return [torch.sigmoid(g) if self.gate_kind == "sigmoid" else g for g in self.gates]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        x = self.dropout(x)
        for fc, gate in zip(self.fcs, self.gate_values(), strict=True):
            x = x + gate * fc(self.skip_dropout(x))
        return x

    def gate_shift(self) -> list[float]:
        """How far each layer's gate *parameter* has moved from its start, as the mean over
        the D dimensions of |g - g_start|: the sigmoid's pre-activation for
        ``gate="sigmoid"`` (start ``gate_init``), the gate itself for ``gate="zero"``
        (start 0). One float per layer. An optimiser moves this parameter; the gate's value
        follows it through the sigmoid, whose slope at -4 is 0.018."""
        start = 0.0 if self.gate_kind == "zero" else float(self._config["gate_init"])
        return [(g.detach() - start).abs().mean().item() for g in self.gates]

    @property
    def initial_gate(self) -> float:
        """The gate's value at initialisation: 0 for ``"zero"``, sigmoid(gate_init)
        otherwise (the trained gates are :meth:`gate_values`)."""
        return 0.0 if self.gate_kind == "zero" else 1 / (1 + math.exp(-self._config["gate_init"]))


class ProjectionHead(EncoderHead):
    """A trainable projection to ``output_dim``: [Linear (no bias), BatchNorm, ReLU] x
    (num_layers - 1), then Linear and BatchNorm.

    After Finetuner's ``ProjectionHead``, which it used for self-supervised training and
    cut off afterwards; its default was ``num_layers=2`` (its docstring says 3 layers) and
    its last Linear has no bias. Ours defaults to 3 and keeps the last bias, and stays on
    the model after training. Finetuner's open-source tailor did not attach this head for
    ``output_dim``: it appended one random ``nn.Linear`` (here: ``LinearHead``).

    Shapes: (B, input_dim) -> (B, output_dim); B > 1 in training (BatchNorm).
    """

    def __init__(self, input_dim: int, output_dim: int = 128, num_layers: int = 3):
        if num_layers < 1:
            raise ValueError(f"num_layers={num_layers} must be at least 1")
        super().__init__(input_dim, output_dim=output_dim, num_layers=num_layers)
        layers: list[nn.Module] = []
        width = input_dim
        for _ in range(num_layers - 1):
            layers += [nn.Linear(width, input_dim, bias=False), nn.BatchNorm1d(input_dim),
                       nn.ReLU()]
            width = input_dim
        layers += [nn.Linear(width, output_dim), nn.BatchNorm1d(output_dim)]
        self.layers = nn.Sequential(*layers)

    @property
    def output_dim(self) -> int:
        return self._config["output_dim"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        return self.layers(x)


class SequentialHead(EncoderHead):
    """Heads applied one after another; each head's output_dim must be the next one's
    input_dim. Saves and loads with its parts."""

    def __init__(self, *heads: EncoderHead):
        if not heads:
            raise ValueError("SequentialHead needs at least one head")
        for a, b in zip(heads, heads[1:]):
            if a.output_dim != b.input_dim:
                raise ValueError(f"{type(a).__name__} outputs {a.output_dim} dimensions but "
                                 f"{type(b).__name__} expects {b.input_dim}")
        super().__init__(heads[0].input_dim)
        self.heads = nn.ModuleList(heads)

    @property
    def output_dim(self) -> int:
        return self.heads[-1].output_dim

    def _serial_config(self) -> dict[str, Any]:
        return {"heads": [{"head": type(h).__name__, "config": h._serial_config()}
                          for h in self.heads]}

    @classmethod
    def _from_config(cls, config: dict[str, Any]) -> SequentialHead:
        return cls(*(HEADS[h["head"]]._from_config(h["config"]) for h in config["heads"]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        for head in self.heads:
            x = head(x)
        return x
