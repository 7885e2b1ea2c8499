"""Reading a tensorflow-datasets copy of MNIST, Fashion-MNIST or CIFAR-10 (prepared by tfds or by
`cnnjax data import`) back into arrays in the distribution files' order. Reading needs TensorFlow (`cnnjax[tf]`);
finding a copy (`prepared_path`, `is_prepared`) and the order (`tfds_stored_order`) do not.

Order: tfds' builders give example i of a split (i-th record of the distribution files) the key i, and unless a
dataset is written with `disable_shuffling`, tfds stores the examples sorted by the 128-bit hash

    h(i) = int(md5(split_name.encode() + str(i).encode()).hexdigest(), 16)

(`tensorflow_datasets.core.hashing.Hasher(salt=split_name)`), so the r-th stored example is record
`tfds_stored_order(n, split)[r]`. `read_prepared` puts each one back at its record index; a copy written with
`disable_shuffling` (as `cnnjax data import` now writes) is already in file order.
"""
from __future__ import annotations

import hashlib
import os

import numpy as np
from tqdm.auto import tqdm

from cnnjax.data.quiet import bar_disabled, import_tfds
from cnnjax.data.sources import CLASS_NAMES, VERSIONS, check_name


def prepared_path(name: str, data_dir: str | os.PathLike) -> str:
    """`DATA_DIR/<name>/<version>`, the folder tfds reads a prepared dataset from."""
    check_name(name, where="prepared_path")
    return os.path.join(os.fspath(data_dir), name, VERSIONS[name])


def is_prepared(name: str, data_dir: str | os.PathLike) -> bool:
    """Whether `DATA_DIR/<name>/<version>/dataset_info.json` exists (how tfds itself decides)."""
    return os.path.isfile(os.path.join(prepared_path(name, data_dir), "dataset_info.json"))


def tfds_stored_order(n: int, split: str) -> np.ndarray:
    """(n,) int64: the record index of each example of a shuffled tfds split of n examples, in stored order
    (record indices sorted by h(i), see the module docstring)."""
    salt = hashlib.md5(split.encode())

    def h(i: int) -> int:
        md5 = salt.copy()
        md5.update(str(i).encode())
        return int(md5.hexdigest(), 16)

    return np.asarray(sorted(range(n), key=h), dtype=np.int64)


def to_file_order(images: np.ndarray, labels: np.ndarray, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Arrays in tfds' shuffled stored order -> the same arrays in the distribution files' order."""
    order = tfds_stored_order(len(labels), split)
    out_images, out_labels = np.empty_like(images), np.empty_like(labels)
    out_images[order], out_labels[order] = images, labels
    return out_images, out_labels


def read_prepared(name: str, split: str, folder: str | os.PathLike, *, progress: bool = True):
    """Decode split `split` of the tfds copy in `folder` (`DATA_DIR/<name>/<version>`) into (images uint8 NHWC,
    labels int32, class_names) in the distribution files' order. Needs TensorFlow (ImportError naming
    `cnnjax[tf]` otherwise); ValueError if the copy lacks the split."""
    tfds = import_tfds()
    builder = tfds.builder_from_directory(os.fspath(folder))
    if builder.info.splits and split not in builder.info.splits:  # (no split info under tfds.testing.mock_data)
        raise ValueError(f"load: split {split!r} is not in dataset {name!r}; its splits are "
                         f"{sorted(builder.info.splits)}.")
    images, labels = [], []
    total = builder.info.splits[split].num_examples if split in builder.info.splits else None
    ds = builder.as_dataset(split=split, batch_size=2048, shuffle_files=False)
    with tqdm(total=total, desc=f"decoding {name} {split}", unit=" images", disable=bar_disabled(progress)) as bar:
        for batch in tfds.as_numpy(ds):
            images.append(batch["image"])
            labels.append(batch["label"])
            bar.update(len(batch["label"]))
    images, labels = np.concatenate(images).astype(np.uint8), np.concatenate(labels).astype(np.int32)
    if not builder.info.disable_shuffling:
        images, labels = to_file_order(images, labels, split)
    return images, labels, CLASS_NAMES[name]  # (tfds fills cifar10's names only while preparing; same order)


__all__ = ["is_prepared", "prepared_path", "read_prepared", "tfds_stored_order", "to_file_order"]
