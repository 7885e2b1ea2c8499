"""cnnjax.data.pipeline: epoch batches from arrays (fit's order), image folders and tfds copies through tf.data."""
import os

import jax
import numpy as np
import pytest
from PIL import Image

from cnnjax import Dense, Flatten, Sequential
from cnnjax.data.folder import load_image_folder
from cnnjax.data.pipeline import array_batches, folder_batches, tfds_batches
from cnnjax.train import fit


def test_array_batches_give_fit_the_batches_of_its_in_memory_path():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (80, 5, 5, 1), dtype=np.uint8)
    y = rng.integers(0, 10, 80).astype(np.int32)
    kw = dict(optimizer="sgd", learning_rate=0.1, epochs=2, loop="step", seed=3, progress=False)
    model = Sequential([Flatten(), Dense(10)])
    in_memory, _ = fit(model, (x, y), batch_size=16, **kw)
    streamed, _ = fit(model, array_batches(x, y, batch_size=16, seed=3), **kw)
    for a, b in zip(jax.tree.leaves(in_memory.params), jax.tree.leaves(streamed.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_array_batches_cover_each_row_once_per_epoch_in_whole_batches():
    x = np.arange(50, dtype=np.uint8).reshape(50, 1, 1, 1)
    y = np.arange(50, dtype=np.int32) % 10
    batches = array_batches(x, y, batch_size=8, seed=0)
    assert len(batches) == 6 and len(batches(0)) == 6
    seen = [np.concatenate([b[0].ravel() for b in batches(e)]) for e in (0, 1)]
    for rows in seen:
        assert len(rows) == 48 and len(set(rows.tolist())) == 48      # 2 rows dropped, none twice
    assert not np.array_equal(seen[0], seen[1])                       # epochs are shuffled differently
    np.testing.assert_array_equal(seen[0], np.concatenate([b[0].ravel() for b in batches(0)]))   # repeatable
    ordered = array_batches(x, y, batch_size=8, shuffle=False)
    np.testing.assert_array_equal(np.concatenate([b[0].ravel() for b in ordered(0)]), np.arange(48))


@pytest.mark.parametrize("kwargs, message", [
    (dict(batch_size=0), "batch_size must be an int >= 1, got 0"),
    (dict(batch_size=11), "batch_size 11 is larger than the 10 examples"),
    (dict(batch_size=2, seed=-1), "seed must be an int in"),
    (dict(batch_size=2, shuffle="no"), "shuffle"),
])
def test_array_batches_errors(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        array_batches(np.zeros((10, 2, 2, 1), np.uint8), np.zeros(10, np.int32), **kwargs)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder")
    rng = np.random.default_rng(0)
    for k, name in enumerate(["cat", "dog"]):
        os.makedirs(root / name)
        for i in range(5 + k):
            Image.fromarray(rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    return str(root)


def test_folder_batches_decode_the_images_load_image_folder_reads(folder):
    pytest.importorskip("tensorflow")
    images, labels, classes = load_image_folder(folder, progress=False)
    batches = folder_batches(folder, batch_size=4, seed=0)
    assert len(batches) == 2 and batches.class_names == classes == ("cat", "dog")
    got = list(batches(0))
    assert [b[0].shape for b in got] == [(4, 6, 7, 3)] * 2 and got[0][0].dtype == np.uint8
    by_bytes = {im.tobytes(): lab for im, lab in zip(images, labels)}
    for xb, yb in got:                     # each streamed image is one of the folder's, with its label
        for im, lab in zip(xb, yb):
            assert by_bytes[im.tobytes()] == lab
    again = list(batches(0))
    np.testing.assert_array_equal(np.concatenate([b[1] for b in got]), np.concatenate([b[1] for b in again]))
    orders = {tuple(np.concatenate([b[0].reshape(4, -1)[:, 0] for b in batches(e)]).tolist()) for e in range(4)}
    assert len(orders) > 1                 # the order changes with the epoch
    small = folder_batches(folder, batch_size=3, image_size=(4, 4), color_mode="grayscale")
    assert next(iter(small(0)))[0].shape == (3, 4, 4, 1)


def test_folder_batches_errors(folder, tmp_path):
    with pytest.raises(ValueError, match="split 'test' is not in"):
        folder_batches(folder, "test", batch_size=2)
    with pytest.raises(ValueError, match="color_mode='cmyk'"):
        folder_batches(folder, batch_size=2, color_mode="cmyk")
    with pytest.raises(ValueError, match="batch_size 12 is larger than the 11 examples"):
        folder_batches(folder, batch_size=12)
    with pytest.raises(ValueError, match="is not a folder"):
        folder_batches(str(tmp_path / "missing"), batch_size=2)


def test_tfds_batches_names_a_missing_copy(tmp_path):
    with pytest.raises(FileNotFoundError, match="no tensorflow-datasets copy of 'mnist'"):
        tfds_batches("mnist", "train", data_dir=str(tmp_path), batch_size=8)
    with pytest.raises(ValueError, match="mnistt"):
        tfds_batches("mnistt", "train", data_dir=str(tmp_path), batch_size=8)


def test_tfds_batches_read_a_tfds_copy(tmp_path):
    tf = pytest.importorskip("tensorflow")
    from cnnjax.data.quiet import import_tfds
    tfds = import_tfds()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (20, 28, 28, 1), dtype=np.uint8)
    labels = (np.arange(20) % 10).astype(np.int64)
    builder = tfds.dataset_builders.TfDataBuilder(
        name="mnist", version="3.0.1", data_dir=str(tmp_path),
        split_datasets={"train": tf.data.Dataset.from_tensor_slices({"image": images, "label": labels})},
        features=tfds.features.FeaturesDict({"image": tfds.features.Image(shape=(28, 28, 1)),
                                             "label": tfds.features.ClassLabel(num_classes=10)}))
    builder.download_and_prepare()
    batches = tfds_batches("mnist", "train", data_dir=str(tmp_path), batch_size=6, seed=1)
    assert len(batches) == 3
    got = list(batches(0))
    assert [b[0].shape for b in got] == [(6, 28, 28, 1)] * 3
    by_bytes = {im.tobytes(): lab for im, lab in zip(images, labels)}
    assert all(by_bytes[im.tobytes()] == lab for xb, yb in got for im, lab in zip(xb, yb))
    assert len({im.tobytes() for xb, _ in got for im in xb}) == 18
