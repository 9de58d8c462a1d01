"""Datasets as tensors with a train/test split.

- :func:`load_digits`: scikit-learn's 1,797 handwritten 8x8 digits (ship with the package).
- :func:`load_mnist1d`: MNIST-1D (Greydanus 2020), 40-point 1-D digits generated in code by
  the ``mnist1d`` package; never its download path.
- :func:`load_shapes`: procedural segmentation images (no download).
- :func:`load_cifar10`, :func:`load_oxford_pets`: downloads through torchvision, for the
  ``gpu`` and ``paper`` scales, guarded by :func:`skiplab.downloads.downloading` (timeout,
  one clear :class:`~skiplab.downloads.DownloadError`).

All standardise features with the training split's statistics only.

One module per kind of data, every name re-exported here:

- :mod:`~skiplab.data.splits`: :class:`DataSplit`, :func:`batch_indices`, the built-in
  classification sets;
- :mod:`~skiplab.data.cifar`: CIFAR-10 and its crop-and-flip augmentation;
- :mod:`~skiplab.data.segmentation`: :class:`SegmentationSplit`, the shapes task and
  Oxford-IIIT Pet.
"""

from .cifar import load_cifar10, random_crop_flip
from .segmentation import (OXFORD_PETS_ARCHIVES, SegmentationSplit, load_oxford_pets,
                           load_shapes, make_shapes)
from .splits import DataSplit, batch_indices, load_digits, load_mnist1d

__all__ = [
    "OXFORD_PETS_ARCHIVES",
    "DataSplit",
    "SegmentationSplit",
    "batch_indices",
    "load_cifar10",
    "load_digits",
    "load_mnist1d",
    "load_oxford_pets",
    "load_shapes",
    "make_shapes",
    "random_crop_flip",
]
