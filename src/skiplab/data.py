"""Datasets as tensors with a train/test split.

- :func:`load_digits`: scikit-learn's 1,797 handwritten 8x8 digits (ship with the package).
- :func:`load_mnist1d`: MNIST-1D (Greydanus 2020), 40-point 1-D digits generated in code by
  the ``mnist1d`` package; never its download path.
- :func:`load_shapes`: procedural segmentation images (no download).
- :func:`load_cifar10`, :func:`load_oxford_pets`: downloads through torchvision, for the
  ``gpu`` and ``paper`` scales, guarded by :func:`skiplab.downloads.downloading` (timeout,
  one clear :class:`~skiplab.downloads.DownloadError`).

All standardise features with the training split's statistics only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .downloads import data_dir, downloading
from .runtime import get_device

__all__ = [
    "DataSplit",
    "batch_indices",
    "load_cifar10",
    "load_digits",
    "load_mnist1d",
    "random_crop_flip",
]


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


def load_cifar10(*, root: str | os.PathLike | None = None, download: bool = True,
                 device: str | torch.device | None = None) -> DataSplit:
    """CIFAR-10 (50,000 training and 10,000 test 32x32 colour images) through torchvision.

    A download of about 170 MB on first use (the book asks for it at ``gpu`` and ``paper``
    scale only). Pixels are scaled to [0, 1] and standardised per channel with the training
    split's mean and standard deviation.

    Args:
        root: where torchvision keeps the files (default: ``SKIPLAB_DATA``, else
            ``~/.cache/skiplab``).
        download: fetch the files when they are missing.
        device: where the tensors live. Shapes: x (N, 3, 32, 32) float32, y (N,) int64.

    Raises:
        DownloadError: the files are missing and could not be downloaded.
    """
    from torchvision.datasets import CIFAR10

    folder = data_dir(root)
    # torchvision checks the archive's MD5 and every unpacked file's: no partial file passes
    with downloading("CIFAR-10", folder, url=getattr(CIFAR10, "url", None)):
        train = CIFAR10(str(folder), train=True, download=download)
        test = CIFAR10(str(folder), train=False, download=download)
    dev = get_device(device)

    def images(dataset) -> torch.Tensor:
        return torch.from_numpy(np.asarray(dataset.data)).permute(0, 3, 1, 2).float() / 255.0

    x_train, x_test = images(train), images(test)
    mean = x_train.mean(dim=(0, 2, 3), keepdim=True)
    std = x_train.std(dim=(0, 2, 3), keepdim=True)
    return DataSplit(
        x_train=((x_train - mean) / std).to(dev),
        y_train=torch.as_tensor(train.targets, dtype=torch.int64).to(dev),
        x_test=((x_test - mean) / std).to(dev),
        y_test=torch.as_tensor(test.targets, dtype=torch.int64).to(dev),
        n_classes=10,
        name="cifar10",
    )


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int = 4
                     ) -> torch.Tensor:
    """The CIFAR augmentation of He et al. (2016): pad with zeros, random crop, random flip.

    Each image gets its own crop offset and a coin flip for the horizontal mirror, drawn
    from ``generator`` (on x's device), so a fixed generator seed gives a fixed batch.

    Shapes: (B, C, H, W) -> (B, C, H, W).
    """
    if x.dim() != 4:
        raise ValueError(f"random_crop_flip expects images (B, C, H, W), got {tuple(x.shape)}")
    b, _, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    top = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=x.device)
    left = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=x.device)
    flip = torch.rand(b, generator=generator, device=x.device) < 0.5
    rows = top[:, None] + torch.arange(h, device=x.device)                    # (B, H)
    cols = left[:, None] + torch.arange(w, device=x.device)                   # (B, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch = torch.arange(b, device=x.device)[:, None, None]
    # advanced indexing over (batch, row, col) gathers (B, H, W, C); move channels back
    return padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(
        0, 3, 1, 2).contiguous()


@dataclass
class SegmentationSplit:
    """Images, masks and thin-structure masks for training and testing.

    Shapes: ``x_*`` (N, 1, H, W) float32, ``y_*`` (N, H, W) int64 in {0, 1},
    ``thin_*`` (N, H, W) bool: the pixels of the one-pixel-wide structures;
    ``decoy_*`` (N, H, W) bool: the distractor pixels (background that looks like
    foreground up close).
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    thin_train: torch.Tensor
    decoy_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    thin_test: torch.Tensor
    decoy_test: torch.Tensor
    n_classes: int = 2
    name: str = "shapes"

    def to(self, device: str | torch.device) -> SegmentationSplit:
        return SegmentationSplit(*(t.to(device) for t in (
            self.x_train, self.y_train, self.thin_train, self.decoy_train, self.x_test,
            self.y_test, self.thin_test, self.decoy_test)), self.n_classes, self.name)

    def __repr__(self) -> str:
        return (f"SegmentationSplit({self.name!r}, train={tuple(self.x_train.shape)}, "
                f"test={tuple(self.x_test.shape)}, device={self.x_train.device})")


def _smooth_noise(rng: np.random.Generator, size: int, scale: int) -> np.ndarray:
    coarse = rng.normal(size=(size // scale + 2, size // scale + 2))
    fine = np.kron(coarse, np.ones((scale, scale)))[:size, :size]
    kernel = np.ones(scale) / scale           # box-blur the blocks into a smooth texture
    fine = np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="same"), 0, fine)
    return np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="same"), 1, fine)


def make_shapes(n: int, size: int = 48, *, seed: int = 0
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Procedural segmentation images: (images (n, size, size) float32, masks int64, thin
    bool, decoys bool). Deterministic for a seed, any size >= 16.

    Foreground (class 1): filled ellipses and rectangles, and one-pixel-wide curves (random
    walks with momentum) that run across much of the image. Decoys that are *not*
    foreground: straight one-pixel dashes of 7 to 10 steps, as bright as the curves, kept
    at least two pixels away from the foreground. A 5x5 window around most dash pixels
    shows a piece of line just like a piece of a curve, so telling them apart needs context
    (does the line go on?), while tracing a curve needs pixel precision. (Rounding and
    crossings make some dashes shorter or merge two; curves cut by the border leave some
    short foreground fragments: the labels are right, but locally ambiguous both ways.)
    Background: a smooth random texture plus white noise.
    """
    if size < 16:
        raise ValueError(f"size={size} is too small; use 16 or more")
    rng = np.random.default_rng(seed)
    images = np.zeros((n, size, size), np.float32)
    masks = np.zeros((n, size, size), np.int64)
    thin = np.zeros((n, size, size), bool)
    decoys = np.zeros((n, size, size), bool)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        fg = np.zeros((size, size), bool)
        for _ in range(rng.integers(1, 3)):                       # filled shapes
            cy, cx = rng.uniform(0.2, 0.8, 2) * size
            ry, rx = rng.uniform(0.06, 0.16, 2) * size
            if rng.random() < 0.5:
                fg |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
            else:
                fg |= (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= rx)
        lines = np.zeros((size, size), bool)
        for _ in range(rng.integers(2, 4)):                       # one-pixel curves
            y, x = rng.uniform(0, size, 2)
            angle = rng.uniform(0, 2 * np.pi)
            for _ in range(int(size * 1.2)):
                angle += rng.normal(0, 0.25)
                y, x = y + np.sin(angle), x + np.cos(angle)
                r, c = int(round(y)), int(round(x))
                if 0 <= r < size and 0 <= c < size:
                    lines[r, c] = True
        dots = np.zeros((size, size), bool)
        for _ in range(rng.integers(4, 8)):                       # decoys: dashes
            y, x = rng.uniform(2, size - 2, 2)
            angle = rng.uniform(0, 2 * np.pi)
            for _ in range(rng.integers(7, 11)):
                r, c = int(round(y)), int(round(x))
                if 0 <= r < size and 0 <= c < size:
                    dots[r, c] = True
                y, x = y + np.sin(angle), x + np.cos(angle)
        dots &= ~_grow(_grow(fg | lines))
        thin[i] = lines & ~fg
        decoys[i] = dots
        masks[i] = fg | lines
        image = 0.6 * _smooth_noise(rng, size, max(2, size // 8))
        image += 1.5 * (fg | lines | dots) + rng.normal(0, 0.35, (size, size))
        images[i] = image
    return images, masks, thin, decoys


def _grow(mask: np.ndarray) -> np.ndarray:
    """The mask dilated by one pixel (8-neighbourhood): decoys keep a gap from the
    foreground, so that they cannot be read as part of a curve."""
    padded = np.pad(mask, 1)
    out = np.zeros_like(mask)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            out |= padded[dy:dy + mask.shape[0], dx:dx + mask.shape[1]]
    return out


def load_shapes(*, n_train: int = 512, n_test: int = 128, size: int = 48, seed: int = 0,
                device: str | torch.device | None = None) -> SegmentationSplit:
    """The procedural segmentation task of :func:`make_shapes`, split into train and test
    sets generated from different seeds (no download)."""
    from .runtime import get_device

    train = make_shapes(n_train, size, seed=2 * seed)
    test = make_shapes(n_test, size, seed=2 * seed + 1)
    tensors = []
    for images, masks, thin, decoys in (train, test):
        tensors += [torch.from_numpy(images)[:, None], torch.from_numpy(masks),
                    torch.from_numpy(thin), torch.from_numpy(decoys)]
    split = SegmentationSplit(*tensors, name=f"shapes {size}x{size}")
    return split.to(get_device(device))


OXFORD_PETS_ARCHIVES: tuple[tuple[str, str], ...] = (
    # (url, md5): torchvision's OxfordIIITPet._RESOURCES, kept equal by a test
    ("https://www.robots.ox.ac.uk/~vgg/data/pets/data/images.tar.gz",
     "5c4f3ee8e5d25df40f4fd59a7f44e54c"),
    ("https://www.robots.ox.ac.uk/~vgg/data/pets/data/annotations.tar.gz",
     "95a8c909bbe2e81eed6a22bccdf3f68f"),
)


def _download_oxford_pets(root: Path) -> None:
    """Download and unpack the Oxford-IIIT Pet archives into ``root / "oxford-iiit-pet"``
    unless an earlier call finished, then write a marker.

    torchvision checks each archive's MD5, but takes the dataset as present as soon as its
    ``images`` and ``annotations`` folders exist, so an unpacking cut short would pass for
    complete. Without the marker the archives are unpacked again (downloaded again only
    when missing or damaged).
    """
    from torchvision.datasets.utils import download_and_extract_archive

    folder = root / "oxford-iiit-pet"
    marker = folder / ".skiplab-complete"
    if marker.exists():
        return
    for url, md5 in OXFORD_PETS_ARCHIVES:
        with downloading("Oxford-IIIT Pet", folder, url=url):
            download_and_extract_archive(url, download_root=str(folder), md5=md5)
    marker.write_text("both archives downloaded, checked and unpacked\n")


def load_oxford_pets(*, size: int = 128, root: str | os.PathLike | None = None,
                     download: bool = True, max_train: int | None = None,
                     device: str | torch.device | None = None) -> SegmentationSplit:
    """Oxford-IIIT Pet with its segmentation trimaps, through torchvision (about 800 MB,
    downloaded on first use into ``SKIPLAB_DATA`` or ``~/.cache/skiplab``): for the
    ``paper`` scale of the U-Net chapter.

    Images are resized to ``size`` x ``size`` (bilinear, grey scale, aspect ratio not kept)
    and the trimaps with nearest neighbours. Foreground = pet and its border band (trimap 1
    and 3); the "thin" mask is the border band (trimap 3: "not classified", a few pixels
    wide), so thin IoU there measures agreement in the boundary region, not on one-pixel
    lines; there are no decoys (an empty mask, and the decoy rate is NaN).

    Raises:
        DownloadError: the files are missing and could not be downloaded.
    """
    import torchvision
    from torchvision.transforms import functional as TF

    from .runtime import get_device

    root = data_dir(root)
    if download:
        _download_oxford_pets(root)
    splits = []
    for split in ("trainval", "test"):
        with downloading("Oxford-IIIT Pet", root / "oxford-iiit-pet"):
            dataset = torchvision.datasets.OxfordIIITPet(
                root=str(root), split=split, target_types="segmentation", download=False)
        count = len(dataset) if (split == "test" or max_train is None) else min(
            max_train, len(dataset))
        xs, ys = [], []
        for i in range(count):
            image, trimap = dataset[i]
            image = TF.resize(TF.to_tensor(TF.to_grayscale(image)), [size, size],
                              antialias=True)
            trimap = TF.pil_to_tensor(TF.resize(trimap, [size, size],
                                                interpolation=TF.InterpolationMode.NEAREST))
            xs.append((image - 0.5) / 0.25)
            ys.append(trimap[0].long())
        x, trimaps = torch.stack(xs), torch.stack(ys)
        splits += [x, (trimaps != 2).long(), trimaps == 3, torch.zeros_like(trimaps, dtype=bool)]
    return SegmentationSplit(*splits, name=f"Oxford-IIIT Pet {size}x{size}").to(
        get_device(device))
