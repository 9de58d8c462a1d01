"""CIFAR-10 through torchvision (a download, for the ``gpu`` and ``paper`` scales) and the
CIFAR augmentation of He et al. (2016).

The download is guarded by :func:`skiplab.downloads.downloading` (timeout, one clear
:class:`~skiplab.downloads.DownloadError`).
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F

from ..downloads import data_dir, downloading
from ..runtime import get_device
from .splits import DataSplit

__all__ = ["load_cifar10", "random_crop_flip"]


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
    # lazy: torchvision is optional (the "datasets" extra), needed by the gpu/paper scales only
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
