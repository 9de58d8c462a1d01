"""The classification container :class:`DataSplit`, the batch order of training, and the two
small built-in datasets (no download).

- :func:`load_digits`: scikit-learn's 1,797 handwritten 8x8 digits (ship with the package).
- :func:`load_mnist1d`: MNIST-1D (Greydanus 2020), 40-point 1-D digits generated in code by
  the ``mnist1d`` package; never its download path.

Both standardise features with the training split's statistics only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..runtime import get_device

__all__ = ["DataSplit", "batch_indices", "load_digits", "load_mnist1d"]


@dataclass(frozen=True)
class DataSplit:
    """Train and test tensors of one classification dataset.

    Shapes: ``x_train`` (N, *F), ``y_train`` (N,) int64, likewise for test; F is the shape of
    one example, e.g. (64,) for flat digits, (1, 8, 8) as images, (1, 40) for MNIST-1D.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int
    name: str = ""

    @property
    def example_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def n_features(self) -> int:
        return int(np.prod(self.example_shape))

    def to(self, device: str | torch.device) -> DataSplit:
        return DataSplit(self.x_train.to(device), self.y_train.to(device),
                         self.x_test.to(device), self.y_test.to(device),
                         self.n_classes, self.name)

    def classes(self, keep: Sequence[int], name: str | None = None) -> DataSplit:
        """Only the examples of the classes in ``keep``, relabelled 0 .. len(keep) - 1 in
        the order given (e.g. ``data.classes([5, 6, 7, 8, 9])`` maps 5 to 0)."""
        keep = list(keep)
        bad = [c for c in keep if not 0 <= c < self.n_classes]
        if bad or len(set(keep)) != len(keep):
            raise ValueError(f"classes {keep} must be distinct and in 0..{self.n_classes - 1}")
        lookup = torch.full((self.n_classes,), -1, dtype=torch.long)
        lookup[torch.tensor(keep)] = torch.arange(len(keep))

        def select(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            new = lookup.to(y.device)[y]
            mask = new >= 0
            return x[mask], new[mask]

        x_train, y_train = select(self.x_train, self.y_train)
        x_test, y_test = select(self.x_test, self.y_test)
        label = name if name is not None else f"{self.name} classes {keep}"
        return DataSplit(x_train, y_train, x_test, y_test, len(keep), label)

    def __repr__(self) -> str:
        return (f"DataSplit({self.name!r}, train={tuple(self.x_train.shape)}, "
                f"test={tuple(self.x_test.shape)}, classes={self.n_classes}, "
                f"device={self.x_train.device})")


def _split(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int,
           shape: tuple[int, ...], name: str, n_classes: int,
           device: str | torch.device | None) -> DataSplit:
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction={test_fraction} must lie strictly between 0 and 1")
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = max(1, round(test_fraction * len(y)))
    test, train = order[:n_test], order[n_test:]
    mean = x[train].mean()
    std = x[train].std() + 1e-8
    x = ((x - mean) / std).astype(np.float32)
    dev = get_device(device)

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(dev)

    return DataSplit(
        x_train=tensor(x[train].reshape(len(train), *shape)),
        y_train=tensor(y[train].astype(np.int64)),
        x_test=tensor(x[test].reshape(len(test), *shape)),
        y_test=tensor(y[test].astype(np.int64)),
        n_classes=n_classes,
        name=name,
    )


def load_digits(*, images: bool = False, test_fraction: float = 0.2, seed: int = 0,
                device: str | torch.device | None = None) -> DataSplit:
    """scikit-learn's handwritten digits (1,797 examples, 10 classes), standardised.

    Args:
        images: return examples as (1, 8, 8) images instead of flat (64,) vectors.
        test_fraction: share of the examples held out for testing.
        seed: seed of the shuffle that makes the split.
        device: where the tensors live (default: :func:`skiplab.runtime.get_device`).
    """
    # lazy: scikit-learn takes about 0.4 s to import; most uses of skiplab never load digits
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    shape = (1, 8, 8) if images else (64,)
    return _split(bunch.data.astype(np.float64), bunch.target, test_fraction, seed, shape,
                  "digits", 10, device)


def load_mnist1d(*, num_samples: int = 5000, channels: bool = True, test_fraction: float = 0.2,
                 seed: int = 0, device: str | torch.device | None = None) -> DataSplit:
    """MNIST-1D, generated procedurally (no download): 40-point signals, 10 classes.

    Args:
        num_samples: examples generated in all (train + test).
        channels: shape each example (1, 40) for 1-D convolutions, else (40,).
        test_fraction: share held out for testing.
        seed: seed of the generator (the package's default dataset uses 42).
        device: where the tensors live.
    """
    # lazy: mnist1d pulls in matplotlib, scipy and requests (about 0.6 s) on import
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = num_samples
    args.seed = seed
    args.train_split = 1.0  # split below, the same way as every other dataset
    # mnist1d reseeds NumPy's global generator; leave the caller's global state untouched
    state = np.random.get_state()
    try:
        generated = make_dataset(args)
    finally:
        np.random.set_state(state)
    x, y = generated["x"], generated["y"]
    shape = (1, x.shape[1]) if channels else (x.shape[1],)
    return _split(x.astype(np.float64), y, test_fraction, seed, shape, "mnist1d", 10, device)


def batch_indices(step: int, n: int, batch_size: int, seed: int) -> torch.Tensor:
    """Indices of the training batch at ``step``: epochs are fresh permutations of ``n``.

    The batch depends only on (step, n, batch_size, seed), so a resumed run draws exactly
    the batches the interrupted one would have drawn. The last partial batch of an epoch
    is dropped. Returns: (batch_size,) int64 on the CPU.
    """
    if not 0 < batch_size <= n:
        raise ValueError(f"batch_size={batch_size} must lie in 1..{n} (the training examples)")
    per_epoch = n // batch_size
    epoch, position = divmod(step, per_epoch)
    generator = torch.Generator(device="cpu").manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(n, generator=generator, device="cpu")   # whatever the default device
    return order[position * batch_size:(position + 1) * batch_size]
