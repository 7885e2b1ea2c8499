"""Nothing silently wrong (issue 31, part 5): one test per class of numeric or input fault.

Low-precision sums, empty batches through every op and zoo model, bool-only flags, images at their real bit
depth, stray folders, unreadable array caches, and one-line data errors naming the file and the record.
"""
import gzip
import importlib
import struct
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from cnnjax import functional as F
from cnnjax import layers as L
from cnnjax import models
from cnnjax.data.folder import load_image_folder
from cnnjax.data.idx import read_idx_pair

load_module = importlib.import_module("cnnjax.data.loading")


# --- 1. float16/bfloat16 sums and means accumulate in float32 ------------------------------------------------

@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_low_precision_means_do_not_overflow(dtype):
    # the mean fits the dtype, a window sum of 4, 9 or 16 does not (bfloat16 has float32's range: a sum past
    # 3.4e38 overflows in float32 too, so its case is the sum that fits float32)
    big = 60000.0 if dtype == jnp.float16 else 1e37
    x = jnp.full((2, 4, 4, 3), big, dtype)
    for fn in (lambda a: F.avg_pool(a, 2), lambda a: F.avg_pool(a, 3, 2, "same", count_include_pad=True),
               lambda a: F.avg_pool(a, 3, 2, ceil_mode=True, data_format="channels_first"), F.global_avg_pool):
        y, ref = fn(x), fn(x.astype(jnp.float32)).astype(dtype)    # the float32 result, rounded once
        assert y.dtype == dtype and np.isfinite(np.asarray(y, np.float32)).all()
        np.testing.assert_array_equal(np.asarray(y, np.float32), np.asarray(ref, np.float32))
    np.testing.assert_allclose(np.asarray(F.avg_pool(x, 2), np.float32), big, rtol=1e-2)
    mean, var = F.batch_moments(x, (0, 1, 2))
    np.testing.assert_allclose(mean, big, rtol=1e-2) and np.testing.assert_array_equal(var, 0.0)
    y = F.dense(jnp.full((1, 8), 1.0, dtype), jnp.full((8, 2), big / 4, dtype))   # 8 products of big / 4: 2 * big
    assert y.dtype == dtype
    if dtype == jnp.float16:                            # 2 * 60000 is past float16's max: inf is the right result
        assert np.isinf(np.asarray(y, np.float32)).all()
    # small values: float32 accumulation gives the float32 result rounded once
    small = jax.random.uniform(jax.random.key(0), (1, 16, 16, 1)).astype(dtype)
    ref = F.avg_pool(small.astype(jnp.float32), 16).astype(dtype)
    np.testing.assert_array_equal(np.asarray(F.avg_pool(small, 16), np.float32), np.asarray(ref, np.float32))


def test_float32_and_float64_results_unchanged():
    x = jax.random.normal(jax.random.key(1), (2, 5, 5, 3))
    sums = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    np.testing.assert_array_equal(F.avg_pool(x, 2), sums * np.float32(0.25))
    np.testing.assert_array_equal(F.global_avg_pool(x), jnp.mean(x, axis=(1, 2)))
    assert F.avg_pool(x, 2).dtype == jnp.float32
    with jax.enable_x64(True):
        x64 = jnp.asarray(np.random.default_rng(0).normal(size=(1, 4, 4, 2)))
        assert F.avg_pool(x64, 2).dtype == jnp.float64 and F.global_avg_pool(x64).dtype == jnp.float64
        np.testing.assert_array_equal(F.global_avg_pool(x64), jnp.mean(x64, axis=(1, 2)))


# --- 2. empty batches ---------------------------------------------------------------------------------------

E = jnp.zeros((0, 8, 8, 3))
OPS = {
    "flatten": (lambda: F.flatten(E), (0, 192)),
    "flatten_1d": (lambda: F.flatten(jnp.zeros((0,))), (0, 1)),
    "dense": (lambda: F.dense(jnp.zeros((0, 5)), jnp.ones((5, 2)), jnp.ones(2)), (0, 2)),
    "dropout": (lambda: F.dropout(E, 0.5, rng=jax.random.key(0)), (0, 8, 8, 3)),
    "dropout_det": (lambda: F.dropout(E, 0.5, deterministic=True), (0, 8, 8, 3)),
    "max_pool": (lambda: F.max_pool(E, 2), (0, 4, 4, 3)),
    "min_pool": (lambda: F.min_pool(E, 3, 1, "same"), (0, 8, 8, 3)),
    "avg_pool": (lambda: F.avg_pool(E, 3, 2, "same"), (0, 4, 4, 3)),
    "avg_pool_f16": (lambda: F.avg_pool(E.astype(jnp.float16), 3, 2, ceil_mode=True), (0, 4, 4, 3)),
    "global_avg_pool": (lambda: F.global_avg_pool(E), (0, 3)),
    "global_max_pool": (lambda: F.global_max_pool(E), (0, 3)),
    "channel_max_pool": (lambda: F.channel_max_pool(E, 3), (0, 8, 8, 1)),
    "conv2d": (lambda: F.conv2d(E, jnp.ones((3, 3, 3, 4)), jnp.ones(4), padding="same"), (0, 8, 8, 4)),
    "conv_transpose": (lambda: F.conv_transpose(E, jnp.ones((3, 3, 3, 4)), strides=2), (0, 17, 17, 4)),
    "batch_norm": (lambda: F.batch_norm(E, jnp.zeros(3), jnp.ones(3), jnp.ones(3), jnp.zeros(3)), (0, 8, 8, 3)),
    "softmax_cross_entropy": (lambda: F.softmax_cross_entropy(jnp.zeros((0, 10)), np.zeros(0, np.int32)), (0,)),
    "activation": (lambda: F.get_activation("softmax")(jnp.zeros((0, 10))), (0, 10)),
}


@pytest.mark.parametrize("op", sorted(OPS))
def test_empty_batch_through_every_op(op):
    fn, shape = OPS[op]
    y = fn()
    assert y.shape == shape and not np.isnan(np.asarray(y, np.float32)).any()


def test_empty_batch_statistics_refused_not_nan():
    with pytest.raises(ValueError, match=r"batch_moments: x of shape \(0, 8, 8, 3\) has no elements"):
        F.batch_moments(E, (0, 1, 2))
    bn = L.BatchNormalization()
    variables = bn.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))
    assert bn.apply(variables, E, train=False).shape == (0, 8, 8, 3)
    with pytest.raises(ValueError, match="BatchNormalization: train=True on an input of shape"):
        bn.apply(variables, E, train=True, mutable=["batch_stats"])


RUN_FOR_REAL = ("mnist_cnn", "lenet5", "resnet20", "cifar10_cnn", "speedrun_mnist")


@pytest.mark.parametrize("name", models.names())
def test_empty_batch_through_every_zoo_model(name):
    model, shape = models.get(name), models.input_shape(name)
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, *shape)), train=False))
    if name in RUN_FOR_REAL:   # run (compiled once): parameters of ones, the variables' real shapes
        variables = jax.tree.map(lambda v: jnp.ones(v.shape, v.dtype), variables)
        out = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, jnp.zeros((0, *shape)))
        assert isinstance(out, jax.Array)
    else:   # shapes only: no compile, no parameters
        out = jax.eval_shape(lambda v: model.apply(v, jnp.zeros((0, *shape)), train=False), variables)
    assert out.shape == (0, 10)


# --- 3. flags take bools only ------------------------------------------------------------------------------

X = jnp.zeros((1, 4, 4, 2))
LAYER_FLAGS = [
    (L.BatchNormalization(), "train", {}),
    (L.BatchNormalization(center="no"), "center", {}),
    (L.BatchNormalization(scale=1), "scale", {}),
    (L.Dropout(0.5), "train", {}),
    (L.Dense(2, use_bias="False"), "use_bias", {}),
    (L.Conv2D(2, 3, use_bias="False"), "use_bias", {}),
    (L.DepthwiseConv2D(3, use_bias=0), "use_bias", {}),
    (L.Conv2DTranspose(2, 3, use_bias="yes"), "use_bias", {}),
    (L.MaxPooling2D(ceil_mode="False"), "ceil_mode", {}),
    (L.AveragePooling2D(count_include_pad="False"), "count_include_pad", {}),
    (L.GlobalAveragePooling2D(keepdims="False"), "keepdims", {}),
    (L.Sequential([L.Flatten(), L.Dense(2)]), "train", {}),
]


@pytest.mark.parametrize("layer,arg,_", LAYER_FLAGS, ids=lambda v: type(v).__name__ if hasattr(v, "init") else "")
def test_layer_flags_take_bools_only(layer, arg, _):
    name = type(layer).__name__
    call = {"train": "False"} if arg == "train" else {}
    with pytest.raises(TypeError, match=rf"^{name}: {arg} must be a bool, got "):
        layer.init({"params": jax.random.key(0), "dropout": jax.random.key(1)}, X, **call)


def test_layer_flags_accept_numpy_bools():
    bn = L.BatchNormalization(center=np.bool_(True))
    variables = bn.init(jax.random.key(0), X, train=np.bool_(False))
    assert bn.apply(variables, X, train=np.True_, mutable=["batch_stats"])[0].shape == X.shape
    assert L.Dropout(0.5).apply({}, X, train=np.False_).shape == X.shape


@pytest.mark.parametrize("call,arg", [
    (lambda: F.dropout(X, 0.5, deterministic="True"), "deterministic"),
    (lambda: F.avg_pool(X, 2, count_include_pad="False"), "count_include_pad"),
    (lambda: F.max_pool(X, 2, ceil_mode=1), "ceil_mode"),
    (lambda: F.global_avg_pool(X, keepdims="False"), "keepdims"),
    (lambda: F.global_max_pool(X, keepdims=None), "keepdims"),
])
def test_functional_flags_take_bools_only(call, arg):
    with pytest.raises(TypeError, match=rf"^\w+: {arg} must be a bool, got "):
        call()


def test_data_flags_take_bools_only(tmp_path):
    from cnnjax.data import load
    with pytest.raises(TypeError, match="^load: as_uint8 must be a bool, got 'False'"):
        load(str(tmp_path), "train", as_uint8="False")
    with pytest.raises(TypeError, match="^load_image_folder: skip_corrupt must be a bool, got 'no'"):
        load_image_folder(tmp_path, skip_corrupt="no")


# --- 4. images decoded at their real bit depth, or refused ------------------------------------------------------

def _png16(path, array, color_type):
    """A 16-bit PNG written by hand (PIL cannot write 16-bit colour)."""
    import zlib
    h, w = array.shape[:2]
    raw = b"".join(b"\x00" + array[i].astype(">u2").tobytes() for i in range(h))
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))  # noqa: E731
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _two_classes(root, a_writer):
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    a_writer(root / "a")
    Image.fromarray(np.full((4, 4), 7, np.uint8)).save(root / "b" / "x.png")


def test_16bit_and_float_images_scaled_not_clipped(tmp_path):
    def write(folder):
        Image.fromarray(np.array([[0, 1000, 32768, 65535]] * 4, np.uint16)).save(folder / "g16.png")   # I;16
        Image.fromarray(np.array([[0.0, 0.5, 0.1, 1.0]] * 4, np.float32)).save(folder / "f.tif")         # F
        _png16(folder / "rgb16.png", np.full((4, 4, 3), 65535, np.uint16), 2)
    _two_classes(tmp_path, write)
    images, labels, _ = load_image_folder(tmp_path, color_mode="grayscale", progress=False)
    by_name = dict(zip(["f.tif", "g16.png", "rgb16.png"], images[labels == 0, 0, :, 0].tolist()))
    assert by_name["g16.png"] == [0, 4, 128, 255]          # round(v * 255 / 65535), not min(v, 255)
    assert by_name["f.tif"] == [0, 128, 26, 255]           # round(255 * v), not 0s and 1s
    assert by_name["rgb16.png"] == [255] * 4
    rgb, _, _ = load_image_folder(tmp_path, progress=False)
    assert rgb.shape[-1] == 3 and rgb[0, 0, 1].tolist() == [128, 128, 128]


@pytest.mark.parametrize("writer,mode", [
    (lambda f: Image.fromarray(np.full((4, 4), 2.0, np.float32)).save(f / "big.tif"), "'F'"),
    (lambda f: Image.fromarray(np.full((4, 4), 70000, np.int32)).save(f / "i32.tif"), "'I'"),
])
def test_images_of_unknown_range_refused_in_one_line(tmp_path, writer, mode):
    _two_classes(tmp_path, writer)
    with pytest.raises(ValueError) as info:
        load_image_folder(tmp_path, progress=False)
    message = str(info.value)
    assert "\n" not in message and mode in message and str(tmp_path / "a") in message


# --- 5. every class folder read or named ---------------------------------------------------------------------

def test_stray_folder_beside_splits_is_named(tmp_path):
    for split in ("train", "test"):
        _two_classes(tmp_path / split, lambda f: Image.fromarray(np.zeros((4, 4), np.uint8)).save(f / "y.png"))
    _two_classes(tmp_path / "extra", lambda f: Image.fromarray(np.zeros((4, 4), np.uint8)).save(f / "y.png"))
    (tmp_path / "empty_test_folder").mkdir()
    with pytest.raises(ValueError, match=r"also the folder\(s\) \['empty_test_folder', 'extra'\]"):
        load_image_folder(tmp_path, progress=False)
    for name in ("extra", "empty_test_folder"):
        for p in sorted((tmp_path / name).rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
        (tmp_path / name).rmdir()
    (tmp_path / "train" / "a" / "nested").mkdir()
    with pytest.warns(UserWarning, match="nested"):
        images, _, classes = load_image_folder(tmp_path, "test", progress=False)
    assert classes == ("a", "b") and len(images) == 2


# --- 6. an unreadable array cache is rebuilt with a warning -----------------------------------------------------

@pytest.mark.parametrize("damage", ["truncate", "garbage", "wrong_shapes"])
def test_unreadable_cache_is_named_deleted_and_rebuilt(tmp_path, damage):
    path = str(tmp_path / "cache" / "train.npz")
    images, labels = np.zeros((3, 2, 2, 1), np.uint8), np.array([0, 1, 1], np.int32)
    load_module._write_cache(path, images, labels, ("x", "y"))
    assert [a.tolist() for a in load_module._read_cache(path)[:2]] == [images.tolist(), labels.tolist()]
    if damage == "truncate":
        data = open(path, "rb").read()
        open(path, "wb").write(data[: len(data) // 2])
    elif damage == "garbage":
        open(path, "wb").write(b"not a zip file")
    else:
        load_module._write_cache(path, images, labels[:2], ("x", "y"))
    with pytest.warns(UserWarning, match=r"array cache '.*train\.npz' cannot be read .*deleting it"):
        assert load_module._read_cache(path) is None
    assert not (tmp_path / "cache" / "train.npz").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_module._read_cache(path) is None     # gone: the caller builds it again, silently


# --- 7. data errors name the file and the record, in one line -------------------------------------------------

def _idx(array):
    return bytes([0, 0, 8, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape) + array.tobytes()


def test_out_of_range_idx_label_named_in_one_line(tmp_path):
    (tmp_path / "images.gz").write_bytes(gzip.compress(_idx(np.zeros((50, 28, 28), np.uint8))))
    labels = (np.arange(50) % 10).astype(np.uint8)
    labels[[17, 30]] = 12
    (tmp_path / "labels").write_bytes(_idx(labels))
    with pytest.raises(ValueError) as info:
        read_idx_pair(tmp_path / "images.gz", tmp_path / "labels", num_classes=10)
    message = str(info.value)
    assert "\n" not in message and len(message) < 300
    assert str(tmp_path / "labels") in message and "label 12 at record 17" in message and "0..9" in message
    assert read_idx_pair(tmp_path / "images.gz", tmp_path / "labels")[1][17] == 12   # no num_classes: unchecked


@pytest.mark.parametrize("shape,layer,stored,needed", [
    ((2, 32, 32, 3), "Conv2D 'Conv2D_0'", r"\(3, 3, 1, 32\)", r"\(3, 3, 3, 32\)"),
    ((2, 32, 32, 1), "Dense 'Dense_0'", r"\(5408, 128\)", r"\(7200, 128\)"),
])
def test_variables_applied_to_another_input_shape_name_the_layer_and_shapes(shape, layer, stored, needed):
    """Flax's own ScopeParamShapeError names neither the input's shape nor what would fit."""
    import jax
    from cnnjax import models
    model = models.get("mnist_cnn")
    variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    with pytest.raises(ValueError, match=rf"{layer}: its kernel in the variables has shape {stored}, but its input, "
                                         rf"of shape .*, needs {needed}; apply the variables to inputs of the shape"):
        jax.eval_shape(model.apply, variables, jnp.zeros(shape))
