"""`load(name, split)`: a dataset split as numpy arrays, from local distribution files, a cache, a tfds copy,
or a download; named datasets always in the distribution files' order (record i of the files is row i).

Where a named dataset comes from, in order (the first that applies):

1. the array cache `PREPARED_DIR/_cnnjax_arrays/<name>/<version>/<split>.npz` (`cnnjax.data.cache`; a second
   load of MNIST reads 55 MB of uint8 and takes well under a second);
2. the standard distribution files in `data_dir` (MNIST/Fashion-MNIST: the four `*-ubyte.gz` IDX files in
   `data_dir/<name>/` or `data_dir`; CIFAR-10: `cifar-10-python.tar.gz`, `cifar-10-binary.tar.gz` or
   `cifar10-jpeg.tar.xz` in `data_dir` or `data_dir/cifar10/`), decoded once by cnnjax's own readers into the
   cache (`cnnjax.data.prepare`; no TensorFlow, no network);
3. a tensorflow-datasets copy `PREPARED_DIR/<name>/<version>/` (or the same under `data_dir`), decoded once into
   the cache (`cnnjax.data.tfds_prepared`; needs TensorFlow, `cnnjax[tf]`);
4. with no `data_dir` and `download=True`: the distribution files downloaded into `PREPARED_DIR/downloads/<name>/`
   (`cnnjax.data.download`, sha256-checked), then as in 2.

`PREPARED_DIR` is `prepared_dir` if given, else `default_data_dir()`: `$CNNJAX_DATA_DIR`, else tfds' default
(`$TFDS_DATA_DIR`, else `~/tensorflow_datasets`). `data_dir` may be read-only. Each preparation step prints one
line to stderr ("preparing MNIST from DIR once"); progress bars show only on a terminal.
"""
from __future__ import annotations

import os
import warnings
from typing import NamedTuple

import numpy as np
from PIL import Image

from cnnjax import shapes
from cnnjax.data.cache import cache_file, read_cache, write_cache
from cnnjax.data.download import download_files
from cnnjax.data.folder import as_image_size, load_image_folder
from cnnjax.data.prepare import prepare_from_files
from cnnjax.data.quiet import say
from cnnjax.data.sources import (DISPLAY_NAMES, KNOWN_DATASETS, DataNotFoundError, check_split, find_sources,
                                 where_to_put)
from cnnjax.data.tfds_prepared import is_prepared, prepared_path, read_prepared

DATA_FORMATS = ("channels_last", "channels_first")
ENV_DATA_DIR = "CNNJAX_DATA_DIR"
_read_cache, _write_cache = read_cache, write_cache  # their earlier private names here (tests use them)


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


def _has_files(name: str, folder: str) -> bool:
    try:
        find_sources(name, folder, where="load")
        return True
    except DataNotFoundError:
        return False


def _from_tfds_copy(name, split, folder, cache, progress):
    say(f"preparing {DISPLAY_NAMES[name]} {split} from the tensorflow-datasets copy {folder} once "
        f"(into {os.path.dirname(cache)})")
    arrays = read_prepared(name, split, folder, progress=progress)
    try:
        write_cache(cache, *arrays)
    except OSError as err:  # a read-only prepared_dir still loads, only more slowly next time
        warnings.warn(f"load: could not write the array cache {cache!r} ({err}); later loads decode again.",
                      stacklevel=4)
    return arrays


def _load_named(name, split, *, data_dir, prepared_dir, download, progress):
    check_split(name, split, where="load")
    if data_dir is not None and not os.path.isdir(data_dir):   # also where a prepared copy would serve: a typo
        raise DataNotFoundError(f"load: data_dir {data_dir!r} is not a folder; point it at the folder with "
                                f"{where_to_put(name)}.")
    cache = cache_file(name, split, prepared_dir)
    cached = read_cache(cache)
    if cached is not None:
        return cached
    if data_dir is not None and _has_files(name, data_dir):
        return prepare_from_files(name, data_dir, prepared_dir, progress=progress)[split]
    for folder in (prepared_dir, data_dir):
        if folder is not None and is_prepared(name, folder):
            return _from_tfds_copy(name, split, prepared_path(name, folder), cache, progress)
    if data_dir is not None:
        find_sources(name, data_dir, where="load")  # raises DataNotFoundError saying what to put where
    if not download:
        raise DataNotFoundError(
            f"load: {name!r} is not prepared in {prepared_dir!r} (prepared_dir, CLI --prepared-dir) and "
            f"download=False. Put {where_to_put(name)} and pass data_dir=DIR (CLI: --data-dir DIR), or run "
            f"`cnnjax data import {name} --data-dir DIR`."
        )
    target = os.path.join(prepared_dir, "downloads", name)
    try:
        download_files(name, target, progress=progress)
    except (OSError, ValueError) as err:  # no network shows up as many different OSError types
        raise DataNotFoundError(
            f"load: {name!r} is not prepared in {prepared_dir!r} and could not be downloaded ({err}). Offline, put "
            f"{where_to_put(name)} and pass data_dir=DIR (CLI: --data-dir DIR), or run "
            f"`cnnjax data import {name} --data-dir DIR`."
        ) from err
    return prepare_from_files(name, target, prepared_dir, progress=progress)[split]


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


__all__ = ["Split", "load", "default_data_dir", "resize_images"]
