"""The book's four downloads (CIFAR-10, Oxford-IIIT Pet, ResNet-50's ImageNet weights, a
photograph) behind one guard. They happen at the ``gpu`` and ``paper`` scales only:
``SKIPLAB_SCALE=quick`` downloads nothing.

- :func:`downloading`: the guard. Inside it every socket gives up after :data:`TIMEOUT_S`
  seconds without data, and any failure surfaces as one :class:`DownloadError` that says
  what failed, from where, into which folder, which knob picks that folder, and that the
  ``quick`` scale needs no download.
- :func:`download_file`: one URL into one file, through a temporary file that is renamed
  only once it is complete, so a half-written file never passes for a whole one.
- :func:`fetch_image`: a photograph, cached in ``SKIPLAB_DATA``.
- :func:`load_pretrained_resnet50`: torchvision's ResNet-50 with its ImageNet weights.

The datasets of :mod:`skiplab.data` (CIFAR-10, Oxford-IIIT Pet) download through torchvision
inside the same guard. What guards them against partial files (read in torchvision 0.29
and torch 2.15): torchvision writes an archive straight to its final name and without a
timeout, then compares its MD5 with the published one and raises ``RuntimeError`` on a
mismatch, and fetches it again on the next call; CIFAR-10 also checks the MD5 of every
unpacked batch, so an unpacking cut short is redone. Oxford-IIIT Pet only checks that its
two folders exist, so :func:`skiplab.data.load_oxford_pets` writes a marker after the
unpacking ends. ``torch.hub`` downloads weights to a ``.partial`` file, checks the SHA-256
prefix in the file name, then moves the file into place.
"""

from __future__ import annotations

import http.client
import os
import socket
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import torch.hub

if TYPE_CHECKING:
    import torchvision
    from PIL import Image

__all__ = [
    "TIMEOUT_S",
    "DownloadError",
    "data_dir",
    "download_file",
    "downloading",
    "fetch_image",
    "load_pretrained_resnet50",
]

TIMEOUT_S: float = 30.0
"""Seconds a download may wait for the next bytes (connecting, or mid-file) before it fails.
It bounds a stall, not the whole transfer: a slow but steady 800 MB download still works."""

SKIPLAB_DATA_KNOB = "SKIPLAB_DATA (default ~/.cache/skiplab)"
TORCH_HOME_KNOB = ("TORCH_HOME: torch.hub keeps weights in $TORCH_HOME/hub/checkpoints "
                   "(default ~/.cache/torch/hub/checkpoints)")


class DownloadError(RuntimeError):
    """A download failed; the message names the file, the folder and the way out, and the
    original exception is chained (``__cause__``)."""


def data_dir(root: str | os.PathLike | None = None) -> Path:
    """The folder for downloaded data: ``root``, else ``SKIPLAB_DATA``, else
    ``~/.cache/skiplab``. Not created here."""
    chosen = root or os.environ.get("SKIPLAB_DATA") or Path.home() / ".cache" / "skiplab"
    return Path(chosen).expanduser()


@contextmanager
def downloading(what: str, folder: str | os.PathLike, *, url: str | None = None,
                chosen_by: str = SKIPLAB_DATA_KNOB, timeout: float | None = None
                ) -> Iterator[None]:
    """Run a download with a timeout, and turn its failure into a :class:`DownloadError`.

    The timeout is the process-wide socket default (:func:`socket.setdefaulttimeout`),
    restored on the way out: torchvision and torch.hub call ``urlopen`` without a timeout,
    and this is the one setting they obey. Sockets opened by other threads meanwhile get it
    too.

    Args:
        what: the thing fetched, for the message ("CIFAR-10").
        folder: where it is written.
        url: where it comes from, when known.
        chosen_by: the knob that picks ``folder``, for the message.
        timeout: seconds without data before giving up (default :data:`TIMEOUT_S`).

    Raises:
        DownloadError: on ``OSError`` (``URLError``, ``HTTPError``, timeouts, a full disk),
            ``http.client.HTTPException`` or ``RuntimeError`` (torchvision's checksum
            mismatch, torch.hub's hash mismatch) raised inside.
    """
    seconds = TIMEOUT_S if timeout is None else timeout
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    except DownloadError:
        raise
    except (OSError, http.client.HTTPException, RuntimeError) as error:
        source = f" from {url}" if url else ""
        stalled = isinstance(error, TimeoutError) or isinstance(
            getattr(error, "reason", None), TimeoutError)
        waited = f"; no data for {seconds:g} s" if stalled else ""
        raise DownloadError(
            f"could not get {what}{source} into {folder} "
            f"({type(error).__name__}: {error}{waited}).\n"
            f"That folder is chosen by {chosen_by}. Offline? Copy the files there from a "
            "machine that has them. Nothing half-written is kept as complete: the next try "
            "fetches it again.\n"
            "SKIPLAB_SCALE=quick needs no download at all."
        ) from error
    finally:
        socket.setdefaulttimeout(previous)


def download_file(url: str, path: str | os.PathLike, *, timeout: float | None = None,
                  check: Callable[[Path], object] | None = None) -> Path:
    """Download ``url`` to ``path`` through a temporary file in the same folder, renamed
    onto ``path`` (:func:`os.replace`, atomic) only when complete.

    Complete means: as many bytes as the server's ``Content-Length`` announced, and
    ``check(temporary_path)`` (if given) returned without raising. The caller wraps this in
    :func:`downloading` for the message; on any failure the temporary file is removed.

    Returns: ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".",
                                         suffix=".partial")
    temporary = Path(temporary)
    request = urllib.request.Request(url, headers={"User-Agent": "skiplab"})
    try:
        with os.fdopen(handle, "wb") as file, urllib.request.urlopen(
                request, timeout=TIMEOUT_S if timeout is None else timeout) as response:
            announced = response.headers.get("Content-Length")
            received = 0
            # read(n) returns b"" when the server closes early, with no error: count bytes
            while chunk := response.read(1 << 16):
                file.write(chunk)
                received += len(chunk)
        if announced is not None and received != int(announced):
            raise ConnectionError(f"connection closed after {received} of {announced} bytes")
        if check is not None:
            check(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def _decodes_as_image(path: Path) -> None:
    # lazy: Pillow is not a dependency of skiplab; it comes with torchvision (optional)
    from PIL import Image

    with Image.open(path) as image:
        image.load()  # a truncated or non-image file raises OSError here


def fetch_image(url: str, name: str | None = None, *, root: str | os.PathLike | None = None,
                timeout: float | None = None) -> Image.Image:
    """A photograph from ``url`` as an RGB :class:`PIL.Image.Image`, downloaded on first
    use into ``data_dir(root) / "photos" / name`` and read from there afterwards.

    Args:
        url: where the image is.
        name: the file name in the cache (default: the last part of the URL's path).
        root: the data folder (default: ``SKIPLAB_DATA``, else ``~/.cache/skiplab``).
        timeout: seconds without data before giving up (default :data:`TIMEOUT_S`).

    Raises:
        DownloadError: the download failed, stalled, was cut short or is not an image.
    """
    # lazy: Pillow is not a dependency of skiplab; it comes with torchvision (optional)
    from PIL import Image

    path = data_dir(root) / "photos" / (name or Path(urlparse(url).path).name or "image")
    if not path.exists():
        with downloading(f"the image {path.name!r}", path.parent, url=url, timeout=timeout):
            download_file(url, path, timeout=timeout, check=_decodes_as_image)
    with Image.open(path) as image:
        return image.convert("RGB")


def load_pretrained_resnet50(weights: str | torchvision.models.ResNet50_Weights = "IMAGENET1K_V2"
                             ) -> torchvision.models.ResNet:
    """torchvision's ResNet-50 with published ImageNet weights (about 100 MB, downloaded on
    first use into torch.hub's folder, ``$TORCH_HOME/hub/checkpoints``).

    Args:
        weights: a member of ``torchvision.models.ResNet50_Weights`` or its name; its
            ``transforms()`` and ``meta["categories"]`` go with the model.

    Returns: a ``torchvision.models.ResNet``, in training mode as torchvision returns it.

    Raises:
        DownloadError: the download failed, stalled or did not match its hash.
    """
    # lazy: torchvision is optional (the "datasets" extra), needed by the gpu/paper scales only
    import torchvision

    chosen = torchvision.models.ResNet50_Weights.verify(weights)
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    with downloading(f"torchvision's ResNet-50 weights {chosen.name}", folder, url=chosen.url,
                     chosen_by=TORCH_HOME_KNOB):
        return torchvision.models.resnet50(weights=chosen)
