"""Input pipelines: each epoch's batches as a stream, for data that should not become one in-memory array.

Every function here returns a `Batches`: called with an epoch number it gives that epoch's batches (an iterable
of ``(images uint8 [B, H, W, C], labels int32 [B])``), and ``len()`` is the batches per epoch. `cnnjax.train.fit`
takes it as its data (``fit(model, batches, epochs=...)``) and reads it ahead in a thread; because it is a
function of the epoch, a resumed run asks for the same epoch's batches again and sees the same ones.

* `folder_batches(root, split, ...)`: an image folder (``ROOT/<class>/<image>`` or
  ``ROOT/<split>/<class>/<image>``, as `cnnjax.data.folder` reads it; the unpacked CIFAR-10 JPEG copy is one)
  through ``tf.data``: file names shuffled per epoch, decoded and resized in parallel, batched, prefetched.
* `tfds_batches(name, split, ...)`: a tensorflow-datasets copy of MNIST, Fashion-MNIST or CIFAR-10 (a folder
  ``DATA_DIR/<name>/<version>`` that tfds prepared) through ``tf.data``: record files read in a shuffled order,
  then a shuffle buffer, batched, prefetched.
* `array_batches(images, labels, ...)`: in-memory arrays, no TensorFlow: epoch ``e`` visits the rows
  ``numpy.random.default_rng([seed, e]).permutation(N)`` in batches (the order `fit` uses for arrays).

Shuffling is seeded by ``(seed, epoch)``; batches are whole (``drop_remainder``) so every step has one shape.
The first two need TensorFlow (``pip install 'cnnjax[tf]'``).
"""
from __future__ import annotations

import os
from typing import Callable, Iterable

import numpy as np

from cnnjax import shapes
from cnnjax._args import check_int
from cnnjax.data.folder import IMAGE_SUFFIXES, as_image_size, folder_layout
from cnnjax.data.quiet import import_tfds
from cnnjax.data.sources import VERSIONS, check_name

_COLOR_CHANNELS = {"rgb": 3, "grayscale": 1}


class Batches:
    """An epoch's batches on call (``batches(epoch)``), ``len(batches)`` of them, and what they hold:
    ``num_examples``, ``batch_size``, ``class_names``."""

    def __init__(self, make: Callable[[int], Iterable], *, num_examples: int, batch_size: int,
                 class_names: tuple[str, ...], description: str):
        self._make = make
        self.num_examples, self.batch_size, self.class_names = num_examples, batch_size, tuple(class_names)
        self.description = description

    def __call__(self, epoch: int) -> Iterable:
        return self._make(check_int(epoch, "epoch", "Batches", minimum=0))

    def __len__(self) -> int:
        return self.num_examples // self.batch_size

    def __repr__(self) -> str:
        return (f"Batches({self.description}: {self.num_examples} examples, {len(self)} batches of "
                f"{self.batch_size} per epoch)")


def _check_batch_size(fn: str, batch_size, n: int) -> int:
    batch_size = check_int(batch_size, "batch_size", fn)
    if batch_size > n:
        raise ValueError(f"{fn}: batch_size {batch_size} is larger than the {n} examples; use batch_size <= {n}.")
    return int(batch_size)


def _check_seed(fn: str, seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2 ** 31:
        raise ValueError(f"{fn}: seed must be an int in [0, 2**31), got {seed!r}.")
    return int(seed)


def _epoch_seed(seed: int, epoch: int) -> int:
    """One 31-bit tf.data seed per (seed, epoch)."""
    return int(np.random.default_rng([seed, epoch]).integers(2 ** 31))


def array_batches(images, labels, *, batch_size: int, seed: int = 0, shuffle: bool = True) -> Batches:
    """Batches of in-memory arrays (no TensorFlow): epoch e takes the rows ``default_rng([seed, e]).permutation(N)``
    (in order without `shuffle`) in whole batches of `batch_size`."""
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim != 4 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"array_batches: needs images [N, H, W, C] and labels [N]; got shapes {images.shape} and "
                         f"{labels.shape}.")
    n = len(labels)
    batch_size = _check_batch_size("array_batches", batch_size, n)
    seed = _check_seed("array_batches", seed)
    shuffle = shapes.check_flag(shuffle, "shuffle", "array_batches")

    def make(epoch: int):
        order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
        for i in range(n // batch_size):
            rows = order[i * batch_size:(i + 1) * batch_size]
            yield images[rows], labels[rows]

    return Batches(lambda e: _Generated(make, e, n // batch_size), num_examples=n,
                   batch_size=batch_size, class_names=tuple(str(k) for k in range(int(labels.max()) + 1)),
                   description="arrays")


class _Generated:
    """A sized iterable over one epoch of `make`'s batches."""

    def __init__(self, make, epoch: int, n: int):
        self._make, self._epoch, self._n = make, epoch, n

    def __iter__(self):
        return self._make(self._epoch)

    def __len__(self):
        return self._n


def _folder_files(root: str, split: str) -> tuple[list[str], np.ndarray, tuple[str, ...]]:
    splits, classes = folder_layout(root)
    if split not in splits:
        raise ValueError(f"folder_batches: split {split!r} is not in {root!r}; its splits are {sorted(splits)}.")
    files, labels = [], []
    for k, name in enumerate(classes):
        folder = os.path.join(splits[split], name)
        if os.path.isdir(folder):
            names = sorted(e.name for e in os.scandir(folder)
                           if e.is_file() and not e.name.startswith(".") and e.name.lower().endswith(IMAGE_SUFFIXES))
            files += [os.path.join(folder, f) for f in names]
            labels += [k] * len(names)
    return files, np.asarray(labels, np.int32), classes


def folder_batches(root: str | os.PathLike, split: str = "train", *, batch_size: int, seed: int = 0,
                   image_size: tuple[int, int] | int | None = None, color_mode: str = "rgb",
                   shuffle: bool = True) -> Batches:
    """Batches of an image folder's `split`, decoded by ``tf.data`` (see the module docstring).

    Without `image_size` every image must have the size of the first one (a batch of mixed sizes fails in
    ``tf.data`` naming the sizes); with it, images are resized bilinearly to ``(height, width)``.
    """
    root = os.fspath(root)
    if color_mode not in _COLOR_CHANNELS:
        raise ValueError(f"folder_batches: color_mode={color_mode!r}; valid values are {tuple(_COLOR_CHANNELS)}.")
    image_size = as_image_size(image_size, "folder_batches")
    seed = _check_seed("folder_batches", seed)
    shuffle = shapes.check_flag(shuffle, "shuffle", "folder_batches")
    files, labels, classes = _folder_files(root, split)
    batch_size = _check_batch_size("folder_batches", batch_size, len(files))
    channels = _COLOR_CHANNELS[color_mode]

    def make(epoch: int):
        tfds = import_tfds()
        import tensorflow as tf

        ds = tf.data.Dataset.from_tensor_slices((np.asarray(files), labels))
        if shuffle:
            ds = ds.shuffle(len(files), seed=_epoch_seed(seed, epoch), reshuffle_each_iteration=False)

        def decode(path, label):
            image = tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)
            if image_size is not None:
                image = tf.cast(tf.clip_by_value(tf.round(tf.image.resize(image, image_size)), 0, 255), tf.uint8)
            return image, label

        ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
        return tfds.as_numpy(ds)

    return Batches(make, num_examples=len(files), batch_size=batch_size, class_names=classes,
                   description=f"image folder {root!r} split {split!r}")


def tfds_batches(name: str, split: str, *, data_dir: str | os.PathLike, batch_size: int, seed: int = 0,
                 shuffle: bool = True, shuffle_buffer: int = 10_000) -> Batches:
    """Batches of split `split` of the tensorflow-datasets copy of `name` in ``data_dir/<name>/<version>``
    (see the module docstring); `shuffle_buffer` examples are mixed after the record files' order is shuffled."""
    check_name(name, where="tfds_batches")
    seed = _check_seed("tfds_batches", seed)
    shuffle = shapes.check_flag(shuffle, "shuffle", "tfds_batches")
    shuffle_buffer = check_int(shuffle_buffer, "shuffle_buffer", "tfds_batches")
    folder = os.path.join(os.fspath(data_dir), name, VERSIONS[name])
    if not os.path.isfile(os.path.join(folder, "dataset_info.json")):
        raise FileNotFoundError(f"tfds_batches: no tensorflow-datasets copy of {name!r} in {folder!r} (a folder "
                                "with dataset_info.json, as tfds writes); point data_dir at the folder that holds "
                                f"{name}/, or load the distribution files with cnnjax.data.load and use "
                                "array_batches.")
    tfds = import_tfds()
    builder = tfds.builder_from_directory(folder)
    if split not in builder.info.splits:
        raise ValueError(f"tfds_batches: split {split!r} is not in {folder!r}; its splits are "
                         f"{sorted(builder.info.splits)}.")
    n = builder.info.splits[split].num_examples
    batch_size = _check_batch_size("tfds_batches", batch_size, n)

    def make(epoch: int):
        import tensorflow as tf

        epoch_seed = _epoch_seed(seed, epoch)
        ds = builder.as_dataset(split=split, shuffle_files=shuffle,
                                read_config=tfds.ReadConfig(shuffle_seed=epoch_seed))
        ds = ds.map(lambda example: (example["image"], example["label"]))
        if shuffle:
            ds = ds.shuffle(min(shuffle_buffer, n), seed=epoch_seed, reshuffle_each_iteration=False)
        ds = ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
        return tfds.as_numpy(ds)

    return Batches(make, num_examples=n, batch_size=batch_size,
                   class_names=tuple(builder.info.features["label"].names),
                   description=f"tfds copy of {name!r} split {split!r}")
