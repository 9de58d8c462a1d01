"""Segmentation data: the :class:`SegmentationSplit` container, the procedural
thin-structure task of :func:`make_shapes` (no download), and Oxford-IIIT Pet with its
trimaps through torchvision (a download, for the ``paper`` scale of the U-Net chapter).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..downloads import data_dir, downloading
from ..runtime import get_device

__all__ = ["OXFORD_PETS_ARCHIVES", "SegmentationSplit", "load_oxford_pets", "load_shapes",
           "make_shapes"]


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
    # lazy: torchvision is optional (the "datasets" extra), needed by the paper scale only
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
    # lazy: torchvision is optional (the "datasets" extra), needed by the paper scale only
    import torchvision
    from torchvision.transforms import functional as TF

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
