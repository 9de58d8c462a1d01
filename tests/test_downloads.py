"""The four downloads of the book (CIFAR-10, Oxford-IIIT Pet, ResNet-50 weights, a photo),
without the internet: every URL points at 127.0.0.1 (a local server, a closed port, or a
port that takes connections and never answers)."""

import hashlib
import http.server
import io
import pickle
import socket
import tarfile
import threading
import time
import urllib.error

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from skiplab import data, downloads
from skiplab.data import load_cifar10, load_oxford_pets
from skiplab.data import segmentation as segmentation_data
from skiplab.downloads import DownloadError, downloading, fetch_image, load_pretrained_resnet50


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict  # path -> (body, announced Content-Length); set per server

    def do_GET(self):
        if self.path not in self.routes:
            self.send_error(404)
            return
        body, announced = self.routes[self.path]
        self.send_response(200)
        self.send_header("Content-Length", str(announced))
        self.end_headers()
        self.wfile.write(body)  # fewer bytes than announced: a download cut short

    do_HEAD = do_GET  # torchvision follows redirects with a request it calls HEAD

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    """A local HTTP server; ``server.serve(path, body, cut=n)`` announces ``len(body)``
    bytes and sends all but the last ``n``."""
    handler = type("Handler", (_Handler,), {"routes": {}})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    httpd.base = f"http://127.0.0.1:{httpd.server_port}"
    httpd.serve = lambda path, body, cut=0: handler.routes.__setitem__(
        path, (body[:len(body) - cut], len(body)))
    httpd.routes = handler.routes
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there: connection refused


@pytest.fixture
def silent_port():
    with socket.socket() as sock:  # listens (the kernel completes connections), never answers
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# Each of the four downloads expects this file (its checksums are set to BODY's), pointed at
# ``base``: returns (a call that downloads, the folder it writes to, the knob that picks it).
BODY = _png(Image.new("RGB", (6, 4), (200, 30, 30)))
BODY_MD5 = hashlib.md5(BODY).hexdigest()
WEIGHTS_FILE = f"/resnet50-{hashlib.sha256(BODY).hexdigest()[:8]}.pth"  # torch.hub's hash


def cifar10(base, tmp_path, monkeypatch):
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "url", f"{base}/cifar-10-python.tar.gz")
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "tgz_md5", BODY_MD5)
    return lambda: load_cifar10(root=tmp_path, device="cpu"), tmp_path, "SKIPLAB_DATA"


def oxford_pets(base, tmp_path, monkeypatch):
    monkeypatch.setattr(segmentation_data, "OXFORD_PETS_ARCHIVES", (
        (f"{base}/images.tar.gz", BODY_MD5), (f"{base}/annotations.tar.gz", BODY_MD5)))
    return (lambda: load_oxford_pets(size=8, root=tmp_path, device="cpu"),
            tmp_path / "oxford-iiit-pet", "SKIPLAB_DATA")


def resnet50_weights(base, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = torchvision.models.ResNet50_Weights.IMAGENET1K_V2
    monkeypatch.setattr(weights.value, "url", base + WEIGHTS_FILE)
    return lambda: load_pretrained_resnet50(weights), tmp_path / "hub" / "checkpoints", "TORCH_HOME"


def photo(base, tmp_path, monkeypatch):
    return (lambda: fetch_image(f"{base}/dog.jpg", root=tmp_path), tmp_path / "photos",
            "SKIPLAB_DATA")


DOWNLOADS = {cifar10: "/cifar-10-python.tar.gz", oxford_pets: "/images.tar.gz",
             resnet50_weights: WEIGHTS_FILE, photo: "/dog.jpg"}
each_download = pytest.mark.parametrize("point", DOWNLOADS, ids=lambda f: f.__name__)


@each_download
def test_offline_failure_says_what_where_and_how_to_avoid_it(point, closed_port, tmp_path,
                                                               monkeypatch):
    download, folder, knob = point(closed_port, tmp_path, monkeypatch)
    with pytest.raises(DownloadError) as caught:
        download()
    message = str(caught.value)
    assert closed_port + DOWNLOADS[point] in message
    assert str(folder) in message and knob in message
    assert "SKIPLAB_SCALE=quick needs no download" in message
    assert isinstance(caught.value.__cause__, urllib.error.URLError)  # the original, chained


@each_download
def test_a_silent_server_times_out(point, silent_port, tmp_path, monkeypatch):
    monkeypatch.setattr(downloads, "TIMEOUT_S", 0.2)
    download, _, _ = point(silent_port, tmp_path, monkeypatch)
    previous = socket.getdefaulttimeout()
    start = time.perf_counter()
    with pytest.raises(DownloadError, match=r"timed out.*no data for 0.2 s"):
        download()
    assert time.perf_counter() - start < 3
    assert socket.getdefaulttimeout() == previous  # the process-wide default is restored


@each_download
def test_a_download_cut_short_is_not_kept_as_complete(point, server, tmp_path, monkeypatch):
    download, _, _ = point(server.base, tmp_path, monkeypatch)
    server.serve(DOWNLOADS[point], BODY, cut=20)
    with pytest.raises(DownloadError):  # the right file, less its last 20 bytes
        download()
    server.routes.clear()  # now 404: a second try must download again, not reuse a file
    with pytest.raises(DownloadError) as caught:
        download()
    assert isinstance(caught.value.__cause__, urllib.error.HTTPError)
    assert caught.value.__cause__.code == 404
    assert not list(tmp_path.rglob("*.partial"))


def test_fetch_image_downloads_once_then_reads_its_cache(server, tmp_path):
    server.serve("/pictures/dog.png", BODY)
    image = fetch_image(f"{server.base}/pictures/dog.png", root=tmp_path)
    assert image.size == (6, 4) and image.mode == "RGB"
    assert (tmp_path / "photos" / "dog.png").exists()
    server.routes.clear()
    assert fetch_image(f"{server.base}/pictures/dog.png", root=tmp_path).size == (6, 4)
    with pytest.raises(DownloadError, match="could not get the image 'other.png'"):
        fetch_image(f"{server.base}/pictures/dog.png", "other.png", root=tmp_path)


def test_fetch_image_rejects_what_is_not_an_image(server, tmp_path):
    server.serve("/dog.jpg", b"<html>moved</html>")
    with pytest.raises(DownloadError, match="dog.jpg"):
        fetch_image(f"{server.base}/dog.jpg", root=tmp_path)
    assert not list((tmp_path / "photos").iterdir())


def _tar_gz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def test_cifar10_downloads_through_the_guard(server, tmp_path, monkeypatch):
    """A two-image CIFAR-10 in torchvision's format, with its checksums, served locally."""
    rng = np.random.default_rng(0)
    files = {f"cifar-10-batches-py/{name}": pickle.dumps({
        "data": rng.integers(0, 256, (2, 3 * 32 * 32), dtype=np.uint8), "labels": [3, 7]})
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]}
    files["cifar-10-batches-py/batches.meta"] = pickle.dumps({"label_names": list("abcdefghij")})
    archive = _tar_gz(files)
    server.serve("/cifar-10-python.tar.gz", archive)
    md5 = {name.split("/")[1]: hashlib.md5(body).hexdigest() for name, body in files.items()}
    CIFAR10 = torchvision.datasets.CIFAR10
    monkeypatch.setattr(CIFAR10, "url", f"{server.base}/cifar-10-python.tar.gz")
    monkeypatch.setattr(CIFAR10, "tgz_md5", hashlib.md5(archive).hexdigest())
    monkeypatch.setattr(CIFAR10, "train_list", [[n, md5[n]] for n, _ in CIFAR10.train_list])
    monkeypatch.setattr(CIFAR10, "test_list", [[n, md5[n]] for n, _ in CIFAR10.test_list])
    monkeypatch.setitem(CIFAR10.meta, "md5", md5["batches.meta"])
    cifar = load_cifar10(root=tmp_path, device="cpu")
    assert cifar.x_train.shape == (10, 3, 32, 32) and cifar.y_test.tolist() == [3, 7]


def test_oxford_pets_unpacking_cut_short_is_done_again(server, tmp_path, monkeypatch):
    trimap = Image.new("L", (10, 10), 2)
    trimap.paste(1, (2, 2, 8, 8))
    archives = {
        "/images.tar.gz": _tar_gz({f"images/{n}.jpg": _png(Image.new("RGB", (10, 10)))
                                   for n in ("cat_1", "dog_1")}),
        "/annotations.tar.gz": _tar_gz({
            "annotations/trainval.txt": b"cat_1 1 1 1\n", "annotations/test.txt": b"dog_1 2 2 1\n",
            "annotations/trimaps/cat_1.png": _png(trimap),
            "annotations/trimaps/dog_1.png": _png(trimap)}),
    }
    for path, body in archives.items():
        server.serve(path, body)
    checked = tuple((server.base + path, hashlib.md5(body).hexdigest())
                    for path, body in archives.items())
    # an earlier run stopped while unpacking: both folders exist, nearly empty
    for folder in ("images", "annotations"):
        (tmp_path / "oxford-iiit-pet" / folder).mkdir(parents=True)
    monkeypatch.setattr(segmentation_data, "OXFORD_PETS_ARCHIVES", checked)
    pets = load_oxford_pets(size=8, root=tmp_path, device="cpu")
    assert pets.x_train.shape == (1, 1, 8, 8) and pets.y_test.shape == (1, 8, 8)
    assert pets.y_train.sum() > 0 and pets.y_train.sum() < 64
    server.routes.clear()  # finished once: the next call needs no server
    assert (tmp_path / "oxford-iiit-pet" / ".skiplab-complete").exists()
    again = load_oxford_pets(size=8, root=tmp_path, device="cpu")
    assert torch.equal(again.x_train, pets.x_train)


def test_oxford_pets_archives_are_torchvisions():
    assert data.OXFORD_PETS_ARCHIVES == torchvision.datasets.OxfordIIITPet._RESOURCES


def test_downloading_lets_other_errors_through_and_wraps_once(tmp_path):
    previous = socket.getdefaulttimeout()
    with pytest.raises(ValueError), downloading("nothing", tmp_path, timeout=1):
        assert socket.getdefaulttimeout() == 1
        raise ValueError("not a download problem")
    assert socket.getdefaulttimeout() == previous
    with (pytest.raises(DownloadError) as caught, downloading("outer", tmp_path),
          downloading("inner", tmp_path)):
        raise ConnectionResetError("reset")
    assert "inner" in str(caught.value) and "outer" not in str(caught.value)
