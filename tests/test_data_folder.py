"""Image folders: crafted trees of solid-colour images, so every pixel and label is known in closed form."""
import re
import warnings

import numpy as np
import pytest
from PIL import Image

from cnnjax.data import load
from cnnjax.data.folder import load_image_folder


def make_tree(root, spec, size=(6, 4), fmt="png"):
    """spec: {class: n_images}; image j of class k is solid (10*k + j) in all channels, size (w, h)."""
    for k, (cls, n) in enumerate(sorted(spec.items())):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for j in range(n):
            Image.fromarray(np.full((size[1], size[0], 3), 10 * k + j, np.uint8)).save(root / cls / f"{j:03d}.{fmt}")
    return root


def test_labels_from_sorted_folder_names(tmp_path):
    root = make_tree(tmp_path / "pets", {"dogs": 2, "cats": 3})
    (root / "cats" / "notes.txt").write_text("ignored")
    x, y, names = load_image_folder(root, progress=False)
    assert names == ("cats", "dogs")
    assert x.shape == (5, 4, 6, 3) and x.dtype == np.uint8
    assert y.tolist() == [0, 0, 0, 1, 1]
    assert x[:, 0, 0, 0].tolist() == [0, 1, 2, 10, 11]


def test_load_float_nchw_and_resize(tmp_path):
    root = make_tree(tmp_path / "pets", {"a": 1, "b": 1}, size=(5, 7))
    s = load(str(root), "train", image_size=(3, 2), data_format="channels_first", progress=False)
    assert s.images.shape == (2, 3, 3, 2) and s.images.dtype == np.float32
    np.testing.assert_allclose(s.images[1], 10 / 255, rtol=1e-6)  # a solid image stays solid when resized
    g = load(str(root), "train", color_mode="grayscale", as_uint8=True, progress=False)
    assert g.images.shape == (2, 7, 5, 1) and g.images.dtype == np.uint8


def test_split_layout_like_tfds_imagefolder(tmp_path):
    make_tree(tmp_path / "d" / "train", {"x": 2, "y": 2})
    make_tree(tmp_path / "d" / "test", {"x": 1, "y": 1})
    x, y, names = load_image_folder(tmp_path / "d", "test", progress=False)
    assert names == ("x", "y") and y.tolist() == [0, 1]
    with pytest.raises(ValueError, match="split 'validation' is not in .* its splits are \\['test', 'train'\\]"):
        load_image_folder(tmp_path / "d", "validation", progress=False)


def test_validation_split_is_stratified_disjoint_and_seeded(tmp_path):
    root = make_tree(tmp_path / "d", {"a": 10, "b": 5})
    tr = load_image_folder(root, "train", validation_fraction=0.2, seed=3, progress=False)
    va = load_image_folder(root, "validation", validation_fraction=0.2, seed=3, progress=False)
    assert np.bincount(va[1]).tolist() == [2, 1] and np.bincount(tr[1]).tolist() == [8, 4]
    pix = lambda s: {(int(l), int(v)) for l, v in zip(s[1], s[0][:, 0, 0, 0])}  # noqa: E731
    assert pix(tr).isdisjoint(pix(va)) and len(pix(tr) | pix(va)) == 15
    again = load_image_folder(root, "validation", validation_fraction=0.2, seed=3, progress=False)
    np.testing.assert_array_equal(again[0], va[0])
    other = [load_image_folder(root, "validation", validation_fraction=0.2, seed=s, progress=False)[0][:, 0, 0, 0]
             for s in range(4, 10)]
    assert any(not np.array_equal(o, va[0][:, 0, 0, 0]) for o in other)
    with pytest.raises(ValueError, match="pass validation_fraction > 0"):
        load_image_folder(root, "validation", progress=False)
    with pytest.raises(ValueError, match="validation_fraction=1.5"):
        load_image_folder(root, "train", validation_fraction=1.5, progress=False)


def test_corrupt_image_named_or_skipped(tmp_path):
    root = make_tree(tmp_path / "d", {"a": 2, "b": 2})
    (root / "b" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(ValueError, match="broken.jpg.*skip_corrupt=True"):
        load_image_folder(root, progress=False)
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        x, y, _ = load_image_folder(root, skip_corrupt=True, progress=False)
    assert len(x) == len(y) == 4


def test_empty_class_one_class_and_mixed_sizes(tmp_path):
    root = make_tree(tmp_path / "d", {"a": 2, "b": 1})
    (root / "c").mkdir()
    with pytest.raises(ValueError, match="class folder .*c' holds no images"):
        load_image_folder(root, progress=False)
    one = make_tree(tmp_path / "one", {"only": 2})
    with pytest.raises(ValueError, match="only one class folder \\['only'\\]"):
        load_image_folder(one, progress=False)
    mixed = make_tree(tmp_path / "m", {"a": 1}, size=(4, 4))
    make_tree(mixed, {"b": 1}, size=(5, 5))
    with pytest.raises(ValueError, match="different sizes.*image_size"):
        load_image_folder(mixed, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_image_folder(mixed, image_size=(4, 4), progress=False)[0].shape == (2, 4, 4, 3)
        assert load_image_folder(mixed, image_size=3, progress=False)[0].shape == (2, 3, 3, 3)    # one int: square


def test_bad_options(tmp_path):
    root = make_tree(tmp_path / "d", {"a": 1, "b": 1})
    with pytest.raises(ValueError, match="color_mode='cmyk'"):
        load_image_folder(root, color_mode="cmyk", progress=False)
    with pytest.raises(ValueError, match="image_size=\\(0, 3\\)"):
        load(str(root), "train", image_size=(0, 3), progress=False)
    for bad in (0, 2.5, "64x64", (4, 4, 3), True):
        with pytest.raises(ValueError, match=re.escape(f"load: image_size={bad!r};") + ".*or one int for a square"):
            load(str(root), "train", image_size=bad, progress=False)
    with pytest.raises(ValueError, match="not a folder"):
        load_image_folder(tmp_path / "nope", progress=False)
