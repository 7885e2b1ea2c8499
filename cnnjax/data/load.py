"""`load(name, split)`: a dataset split as numpy arrays, from prepared tfds data, local files, or a download.

Where the data comes from, in order (the first that applies):

1. the array cache `PREPARED_DIR/_cnnjax_arrays/<name>/<version>/<split>.npz` (written on the first load of a
   prepared split; a second load of MNIST reads 55 MB of uint8 and takes well under a second; a cache that
   cannot be read, e.g. truncated, is named in a warning, deleted and built again);
2. a prepared tfds dataset `PREPARED_DIR/<name>/<version>/` (or the same under `data_dir`);
3. the standard distribution files in `data_dir` (MNIST/Fashion-MNIST: the four `*-ubyte.gz` IDX files in
   `data_dir/<name>/` or `data_dir`; CIFAR-10: `cifar-10-python.tar.gz`, `cifar-10-binary.tar.gz` or
   `cifar10-jpeg.tar.xz` in `data_dir` or `data_dir/cifar10/`), imported once into PREPARED_DIR with no network;
4. with no `data_dir` and `download=True`: tfds' own download into PREPARED_DIR (needs internet).

`PREPARED_DIR` is `prepared_dir` if given, else `default_data_dir()`: `$CNNJAX_DATA_DIR`, else tfds' default
(`$TFDS_DATA_DIR`, else `~/tensorflow_datasets`). `data_dir` may be read-only.
"""
from __future__ import annotations

import json
import os
import socket
import urllib.parse
import warnings
from typing import NamedTuple

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from cnnjax import shapes
from cnnjax.data.folder import as_image_size, load_image_folder
from cnnjax.data.sources import KNOWN_DATASETS, DataNotFoundError, where_to_put

DATA_FORMATS = ("channels_last", "channels_first")
ENV_DATA_DIR = "CNNJAX_DATA_DIR"


# Where tfds' own builders download from (tensorflow_datasets/image_classification/{mnist,cifar}.py).
DOWNLOAD_URLS = {
    "mnist": "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "fashion_mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
}


def _can_reach(url: str, timeout: float = 5.0) -> bool:
    """Whether a TCP connection to the URL's host opens within `timeout` seconds."""
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
        return True
    except OSError:
        return False


class Split(NamedTuple):
    """One split: images (n, h, w, c) NHWC (or (n, c, h, w) for channels_first) float32 in [0, 1] or uint8;
    labels (n,) int32 in [0, len(class_names)); class_names a tuple of str."""

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]


def default_data_dir() -> str:
    """`$CNNJAX_DATA_DIR`, else `$TFDS_DATA_DIR`, else `~/tensorflow_datasets` (tfds' default)."""
    path = os.environ.get(ENV_DATA_DIR) or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
    return os.path.expanduser(path)


def _cache_file(name: str, split: str, prepared_dir: str) -> str:
    from cnnjax.data.builders import LOCAL_BUILDERS

    version = str(LOCAL_BUILDERS[name].VERSION)
    return os.path.join(prepared_dir, "_cnnjax_arrays", name, version, f"{split}.npz")


def _read_cache(path: str):
    """The cached (images, labels, class_names), or None when there is no cache or it cannot be read: a cache
    that fails to load or to check (truncated, corrupt, wrong shapes) is named in a warning and deleted, so that
    the caller rebuilds it instead of failing on every later load."""
    if not os.path.isfile(path):
        return None
    try:
        with np.load(path) as f:
            images, labels = f["images"], f["labels"]
            class_names = tuple(json.loads(str(f["class_names"])))
        if (images.dtype != np.uint8 or images.ndim != 4 or labels.ndim != 1 or len(labels) != len(images)
                or not class_names or not all(isinstance(c, str) for c in class_names)
                or (labels.size and not 0 <= int(labels.min()) <= int(labels.max()) < len(class_names))):
            raise ValueError(f"it holds images {images.dtype}{images.shape}, labels {labels.dtype}{labels.shape} "
                             f"and {len(class_names)} class names, not a valid split")
    except Exception as err:  # noqa: BLE001 - zipfile, numpy and json raise many types for a damaged file
        warnings.warn(f"load: the array cache {path!r} cannot be read ({type(err).__name__}: {err}); deleting it "
                      f"and building it again.", stacklevel=4)
        try:
            os.remove(path)
        except OSError as remove_err:   # read-only: still rebuilt in memory, the write is then warned about
            warnings.warn(f"load: could not delete the unreadable cache {path!r} ({remove_err}).", stacklevel=4)
        return None
    return images, labels, class_names


def _write_cache(path: str, images, labels, class_names) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp.npz"
    np.savez(tmp, images=images, labels=labels, class_names=np.asarray(json.dumps(list(class_names))))
    os.replace(tmp, path)


def _check_split(builder, split: str, name: str) -> None:
    if builder.info.splits and split not in builder.info.splits:  # (no split info under tfds.testing.mock_data)
        raise ValueError(f"load: split {split!r} is not in dataset {name!r}; its splits are {sorted(builder.info.splits)}.")


def read_tfds_split(builder, split: str, *, progress: bool = True):
    """Decode one split of a tfds builder into (images uint8 NHWC, labels int32, class_names), in file order."""
    import tensorflow_datasets as tfds

    ds = builder.as_dataset(split=split, batch_size=2048, shuffle_files=False)
    images, labels = [], []
    total = builder.info.splits[split].num_examples if split in builder.info.splits else None
    with tqdm(total=total, desc=f"decoding {builder.name} {split}", unit=" images", disable=not progress) as bar:
        for batch in tfds.as_numpy(ds):
            images.append(batch["image"])
            labels.append(batch["label"])
            bar.update(len(batch["label"]))
    class_names = tuple(builder.info.features["label"].names)
    if builder.name == "cifar10":  # tfds fills these from batches.meta.txt only while preparing; same order
        from cnnjax.data.cifar import CIFAR10_CLASSES

        class_names = CIFAR10_CLASSES
    return np.concatenate(images).astype(np.uint8), np.concatenate(labels).astype(np.int32), class_names


def _load_named(name, split, *, data_dir, prepared_dir, download, progress):
    import tensorflow_datasets as tfds

    from cnnjax.data.builders import import_dataset, is_prepared, prepared_path

    if data_dir is not None and not os.path.isdir(data_dir):   # also where a prepared copy would serve: a typo
        raise DataNotFoundError(f"load: data_dir {data_dir!r} is not a folder; point it at the folder with "
                                f"{where_to_put(name)}.")
    cache = _cache_file(name, split, prepared_dir)
    cached = _read_cache(cache)
    if cached is not None:
        return cached
    if is_prepared(name, prepared_dir):
        builder = tfds.builder_from_directory(prepared_path(name, prepared_dir))
    elif data_dir is not None and is_prepared(name, data_dir):
        builder = tfds.builder_from_directory(prepared_path(name, data_dir))
    elif data_dir is not None:
        builder = tfds.builder_from_directory(import_dataset(name, data_dir, data_dir=prepared_dir))
    elif download:
        builder = tfds.builder(name, data_dir=prepared_dir)
        try:
            url = DOWNLOAD_URLS[name]
            if not _can_reach(url):  # fail in seconds, not after minutes of tfds' retries
                raise ConnectionError(f"cannot reach {url} (no network?)")
            builder.download_and_prepare()
        except Exception as err:  # no network shows up as many different exception types
            raise DataNotFoundError(
                f"load: {name!r} is not prepared in {prepared_dir!r} and tfds could not download it ({err!r}). "
                f"Offline, put {where_to_put(name)} and pass data_dir=DIR (CLI: --data-dir DIR), or run "
                f"`cnnjax data import {name} --source DIR`."
            ) from err
        _check_split(builder, split, name)
        return read_tfds_split(builder, split, progress=progress)  # not cached: may be a mock
    else:
        raise DataNotFoundError(
            f"load: {name!r} is not prepared in {prepared_dir!r} and download=False. Put {where_to_put(name)} and "
            f"pass data_dir=DIR (CLI: --data-dir DIR), or run `cnnjax data import {name} --source DIR`."
        )
    _check_split(builder, split, name)
    arrays = read_tfds_split(builder, split, progress=progress)
    try:
        _write_cache(cache, *arrays)
    except OSError as err:  # a read-only prepared_dir still loads, only more slowly next time
        warnings.warn(f"load: could not write the array cache {cache!r} ({err}); later loads decode again.",
                      stacklevel=3)
    return arrays


def resize_images(images: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """(n, h, w, c) uint8 -> (n, H, W, c) uint8, each image resized bilinearly by PIL to (H, W) = image_size."""
    out = np.empty((len(images), *image_size, images.shape[-1]), dtype=np.uint8)
    for i, image in enumerate(images):
        pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
        out[i] = np.asarray(pil.resize((image_size[1], image_size[0]), Image.BILINEAR)).reshape(out.shape[1:])
    return out


def load(
    name: str | os.PathLike,
    split: str,
    *,
    data_dir: str | os.PathLike | None = None,
    data_format: str = "channels_last",
    as_uint8: bool = False,
    image_size: tuple[int, int] | None = None,
    prepared_dir: str | os.PathLike | None = None,
    download: bool = True,
    validation_fraction: float = 0.0,
    seed: int = 0,
    color_mode: str = "rgb",
    skip_corrupt: bool = False,
    progress: bool = True,
) -> Split:
    """Load split `split` of dataset `name` into memory (see the module docstring for where data comes from).

    name: "mnist", "fashion_mnist", "cifar10", or the path of an image folder (see `cnnjax.data.folder`).
    Returns `Split(images, labels, class_names)`: images float32 `x / 255` in [0, 1] (uint8 if `as_uint8`),
    shape (n, h, w, c) for data_format="channels_last" or (n, c, h, w) for "channels_first"; labels (n,) int32.
    `image_size=(h, w)` resizes bilinearly (PIL). Folder options: `validation_fraction`, `seed`, `color_mode`,
    `skip_corrupt` (see `load_image_folder`).
    """
    as_uint8, download, skip_corrupt = (shapes.check_flag(v, n, "load") for v, n in (
        (as_uint8, "as_uint8"), (download, "download"), (skip_corrupt, "skip_corrupt")))  # 'False' is truthy
    if data_format not in DATA_FORMATS:
        raise ValueError(f"load: data_format={data_format!r}; valid values are {DATA_FORMATS}.")
    if not isinstance(split, str):
        raise TypeError(f"load: split must be a str such as 'train' or 'test', got {split!r}.")
    image_size = as_image_size(image_size, "load")
    key = os.fspath(name)
    if key in KNOWN_DATASETS:
        if validation_fraction or color_mode != "rgb":
            raise ValueError(
                f"load: validation_fraction={validation_fraction!r} and color_mode={color_mode!r} apply to image "
                f"folders only; {key!r} has fixed splits {('train', 'test')} and channels (take a validation "
                f"slice of 'train' yourself)."
            )
        prepared = os.fspath(prepared_dir) if prepared_dir is not None else default_data_dir()
        images, labels, class_names = _load_named(
            key, split, data_dir=None if data_dir is None else os.fspath(data_dir), prepared_dir=prepared,
            download=download, progress=progress,
        )
        if image_size is not None and tuple(image_size) != images.shape[1:3]:
            images = resize_images(images, (int(image_size[0]), int(image_size[1])))
    elif os.path.isdir(key):
        images, labels, class_names = load_image_folder(
            key, split, image_size=image_size, color_mode=color_mode, validation_fraction=validation_fraction,
            seed=seed, skip_corrupt=skip_corrupt, progress=progress,
        )
    else:
        raise ValueError(
            f"load: unknown dataset name {key!r}; known datasets are {KNOWN_DATASETS}, or pass the path of an "
            f"existing image folder (one sub-folder per class)."
        )
    if data_format == "channels_first":
        images = images.transpose(0, 3, 1, 2)
    images = np.ascontiguousarray(images) if as_uint8 else images.astype(np.float32) / np.float32(255)
    return Split(images, labels.astype(np.int32), tuple(class_names))


__all__ = ["Split", "load", "default_data_dir", "resize_images", "read_tfds_split"]
