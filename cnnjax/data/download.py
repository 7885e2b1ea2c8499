"""Downloading the distribution files of MNIST, Fashion-MNIST and CIFAR-10 (Python's urllib; no TensorFlow).

The URLs, sizes and sha256 sums are the ones tensorflow-datasets registers for the same files
(`tensorflow_datasets/url_checksums/{mnist,fashion_mnist,cifar10}.txt`). Each file is written to a temporary
name, its sha256 checked, then renamed, so an interrupted or corrupted download never looks complete.
"""
from __future__ import annotations

import hashlib
import os
import socket
import urllib.parse
import urllib.request

from tqdm.auto import tqdm

from cnnjax.data.quiet import bar_disabled, say
from cnnjax.data.sources import check_name

# name -> (base URL, ((file, sha256), ...))
DOWNLOADS = {
    "mnist": ("https://storage.googleapis.com/cvdf-datasets/mnist/", (
        ("train-images-idx3-ubyte.gz", "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
        ("train-labels-idx1-ubyte.gz", "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
        ("t10k-images-idx3-ubyte.gz", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
        ("t10k-labels-idx1-ubyte.gz", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
    )),
    "fashion_mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/", (
        ("train-images-idx3-ubyte.gz", "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
        ("train-labels-idx1-ubyte.gz", "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
        ("t10k-images-idx3-ubyte.gz", "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
        ("t10k-labels-idx1-ubyte.gz", "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
    )),
    "cifar10": ("https://www.cs.toronto.edu/~kriz/", (
        ("cifar-10-binary.tar.gz", "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd"),
    )),
}


def can_reach(url: str, timeout: float = 5.0) -> bool:
    """Whether a TCP connection to the URL's host opens within `timeout` seconds (always True for file: URLs)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "file":
        return True
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch(url: str, path: str, sha256: str, *, progress: bool) -> None:
    tmp = f"{path}.{os.getpid()}.part"
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out, tqdm(
                total=int(response.headers.get("Content-Length") or 0) or None, unit="B", unit_scale=True,
                desc=os.path.basename(path), disable=bar_disabled(progress)) as bar:
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
                bar.update(len(block))
        got = _sha256(tmp)
        if got != sha256:
            raise ValueError(f"download_files: {url} has sha256 {got}, expected {sha256}; the download is corrupt "
                             f"or the server sent another file.")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def download_files(name: str, target_dir: str | os.PathLike, *, progress: bool = True) -> str:
    """Download the distribution files of `name` into `target_dir` (files already there with the right sha256
    are kept) and return `target_dir`, which `find_sources(name, target_dir)` then finds. Prints one line when it
    downloads. Raises ConnectionError when the host cannot be reached, ValueError for a wrong checksum."""
    check_name(name, where="download_files")
    target_dir = os.fspath(target_dir)
    base, files = DOWNLOADS[name]
    missing = [(f, s) for f, s in files
               if not (os.path.isfile(os.path.join(target_dir, f)) and _sha256(os.path.join(target_dir, f)) == s)]
    if not missing:
        return target_dir
    if not can_reach(base):  # fail in seconds, not after a long socket timeout
        raise ConnectionError(f"cannot reach {base} (no network?)")
    os.makedirs(target_dir, exist_ok=True)
    say(f"downloading {name} from {base} into {target_dir} once ({len(missing)} file(s))")
    for f, sha256 in missing:
        _fetch(base + f, os.path.join(target_dir, f), sha256, progress=progress)
    return target_dir


__all__ = ["DOWNLOADS", "can_reach", "download_files"]
