"""Convolution: the lecture's worked examples, references (NumPy loop, TensorFlow) and algebraic properties."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from jax.test_util import check_grads

from cnnjax import functional as F
from cnnjax.testing import reference, strategies as cst, tf_quirks

IMAGE_3x3 = np.arange(1.0, 10.0, dtype=np.float32).reshape(1, 3, 3, 1)


def _to_last(a, fmt):
    return a if fmt == "channels_last" else np.moveaxis(np.asarray(a), 1, -1)


def _rand(rng, shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


# --- SEED_EXAMPLES.md, "Convolution" ------------------------------------------------------------------------

def test_example1_valid_and_same():
    k = np.ones((2, 2, 1, 1), np.float32)
    valid = F.conv2d(IMAGE_3x3, k, padding="VALID")
    assert valid.shape == (1, 2, 2, 1)
    np.testing.assert_array_equal(valid[0, :, :, 0], [[12, 16], [24, 28]])
    same = F.conv2d(IMAGE_3x3, k, padding="SAME")
    assert same.shape == (1, 3, 3, 1)
    np.testing.assert_array_equal(same[0, :, :, 0], [[12, 16, 9], [24, 28, 15], [15, 17, 9]])


def test_example2_three_filters():
    k = np.ones((2, 2, 1, 3), np.float32) * np.array([1, 10, -1], np.float32)
    y = F.conv2d(IMAGE_3x3, k, padding="same")
    base = np.array([[12, 16, 9], [24, 28, 15], [15, 17, 9]], np.float32)
    for m, factor in enumerate([1, 10, -1]):
        np.testing.assert_array_equal(y[0, :, :, m], base * factor)


def test_example3_two_filters_5x5():
    x = np.array([[2, 1, 2, 0, 1], [1, 3, 2, 2, 3], [1, 1, 3, 3, 0], [2, 2, 0, 1, 1], [0, 0, 3, 1, 2]],
                 np.float32).reshape(1, 5, 5, 1)
    k = np.stack([np.array([[2, 3], [0, 1]]), np.array([[0.1, 0.2], [0.3, 0.4]])], axis=-1)
    y = F.conv2d(x, k.reshape(2, 2, 1, 2).astype(np.float32), strides=1, padding="valid")
    assert y.shape == (1, 4, 4, 2)
    np.testing.assert_array_equal(y[0, :, :, 0], [[10, 10, 6, 6], [12, 15, 13, 13], [7, 11, 16, 7], [10, 7, 4, 7]])
    np.testing.assert_allclose(y[0, :, :, 1], [[1.9, 2.2, 1.6, 2.0], [1.4, 2.2, 2.7, 1.7], [1.7, 1.3, 1.3, 1.0],
                                               [0.6, 1.4, 1.5, 1.4]], rtol=1e-6)


def test_example4_row_image_strides():
    x = np.repeat(np.arange(1, 8, dtype=np.float32)[:, None], 7, axis=1).reshape(1, 7, 7, 1)
    k = np.array([[0, 0, 0], [1, 1, 1], [2, 2, 2]], np.float32).reshape(3, 3, 1, 1)
    y1 = F.conv2d(x, k, strides=1)[0, :, :, 0]
    np.testing.assert_array_equal(y1, np.repeat(np.array([24, 33, 42, 51, 60.])[:, None], 5, axis=1))
    y2 = F.conv2d(x, k, strides=2)[0, :, :, 0]
    np.testing.assert_array_equal(y2, np.repeat(np.array([24, 42, 60.])[:, None], 3, axis=1))


def test_example5_explicit_zero_padding():
    y = F.conv2d(np.ones((1, 5, 5, 1), np.float32), np.ones((3, 3, 1, 1), np.float32), padding=1)
    np.testing.assert_array_equal(y[0, :, :, 0], [[4, 6, 6, 6, 4], [6, 9, 9, 9, 6], [6, 9, 9, 9, 6],
                                                  [6, 9, 9, 9, 6], [4, 6, 6, 6, 4]])


def test_example6_kernel6_stride4():
    x, k = np.ones((1, 11, 11, 1), np.float32), np.ones((6, 6, 1, 1), np.float32)
    valid = F.conv2d(x, k, strides=4, padding="valid")
    assert valid.shape == (1, 2, 2, 1)
    np.testing.assert_array_equal(valid[0, :, :, 0], 36)               # every window fully inside
    same = F.conv2d(x, k, strides=4, padding="same")
    assert same.shape == (1, 3, 3, 1)
    # pads 1 before and 2 after: first window covers rows -1..4 (5 real), last rows 7..12 (4 real)
    np.testing.assert_array_equal(same[0, :, :, 0], np.outer([5, 6, 4], [5, 6, 4]))


def test_example7_single_window():
    sample = np.array([[1, 5, 4, 3], [8, 4, 1, 4], [1, 2, 3, 3], [6, 5, 3, 1]], np.float32).reshape(1, 4, 4, 1)
    filt = np.array([[1] * 4, [-1] * 4, [2] * 4, [3] * 4], np.float32).reshape(4, 4, 1, 1)
    assert F.conv2d(sample, filt).reshape(()) == 59


def test_example8_digit_shapes():
    digit = np.random.default_rng(0).random((1, 28, 28, 1), np.float32)
    maps = F.conv2d(digit, np.random.default_rng(1).standard_normal((3, 3, 1, 5)).astype(np.float32),
                    strides=2, padding="SAME")
    assert maps.shape == (1, 14, 14, 5)
    assert F.max_pool(maps, 2, 2, "SAME").shape == (1, 7, 7, 5)


def test_example9_edge_masks():
    img = np.zeros((1, 7, 7, 1), np.float32)
    img[0, :, 3, 0] = 1.0                                   # a vertical line
    vertical = np.array([[0, 0, 0], [-1, 1, 0], [0, 0, 0]], np.float32).reshape(3, 3, 1, 1)
    horizontal = np.array([[0, -1, 0], [0, 1, 0], [0, 0, 0]], np.float32).reshape(3, 3, 1, 1)
    v = F.conv2d(img, vertical, padding="same")[0, :, :, 0]
    h = F.conv2d(img, horizontal, padding="same")[0, :, :, 0]
    assert np.abs(v).sum() > 0 and np.abs(h[1:]).sum() == 0   # a vertical edge answers the vertical mask only
    lines = np.zeros((7, 7, 1, 2), np.float32)
    lines[:, 3, 0, 0] = 1                                   # filter 0: column 3 ones (vertical line)
    lines[3, :, 0, 1] = 1                                   # filter 1: row 3 ones (horizontal line)
    y = F.conv2d(img, lines, padding="same")
    assert y.shape == (1, 7, 7, 2)
    assert float(y[0, 3, 3, 0]) == 7 and float(y[0, 3, 3, 1]) == 1


# --- independent references ---------------------------------------------------------------------------------

@given(cst.conv_configs(max_size=7, max_channels=3), st.integers(0, 2**31 - 1))
def test_conv_matches_numpy_loop(cfg, seed):
    rng = np.random.default_rng(seed)
    x, k = _rand(rng, cfg["input_shape"]), _rand(rng, cfg["kernel_shape"])
    kw = {a: cfg[a] for a in ("strides", "padding", "dilation", "groups")}
    y = F.conv(x, k, data_format=cfg["data_format"], precision="highest", **kw)
    expected = reference.conv(_to_last(x, cfg["data_format"]), k, **kw)
    np.testing.assert_allclose(_to_last(y, cfg["data_format"]), expected, rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def tf():
    return pytest.importorskip("tensorflow")


@settings(max_examples=40)
@given(cst.conv_configs(ranks=(1, 2, 3), max_size=8, grouped=False), st.integers(0, 2**31 - 1))
def test_conv_matches_tensorflow(tf, cfg, seed):
    if not isinstance(cfg["padding"], str):
        cfg["padding"] = "same"                                   # tf.nn.convolution takes only VALID/SAME
    if max(cfg["strides"]) > 1 and max(cfg["dilation"]) > 1:
        cfg["dilation"] = 1                                       # TF forbids strides > 1 with dilation > 1
    rng = np.random.default_rng(seed)
    x = _rand(rng, cfg["input_shape"])
    k = _rand(rng, cfg["kernel_shape"])
    x_last = _to_last(x, cfg["data_format"])
    if cfg["padding"].lower() == "same" and tf_quirks.conv3d_same_may_be_wrong(
            x_last.shape[1:-1], cfg["kernel_shape"][:-2], cfg["strides"]):
        cfg["strides"] = (1, 1, 1)        # TF 2.21's CPU conv3d is wrong there: see test_tensorflow_conv3d_same_bug
    if cfg["padding"].lower() == "valid" and any(
            d * (k - 1) + 1 > n for n, k, d in zip(x_last.shape[1:-1], cfg["kernel_shape"], np.broadcast_to(
                cfg["dilation"], (len(cfg["strides"]),)))):
        return                            # a kernel larger than the input: an error here, an empty array in TF
    try:
        expected = tf.nn.convolution(x_last, k, strides=cfg["strides"], padding=cfg["padding"].upper(),
                                     dilations=cfg["dilation"]).numpy()
    except (ValueError, tf.errors.InvalidArgumentError):   # a config TF itself rejects
        return
    y = F.conv(x, k, strides=cfg["strides"], padding=cfg["padding"], dilation=cfg["dilation"],
               data_format=cfg["data_format"], precision="highest")
    np.testing.assert_allclose(_to_last(y, cfg["data_format"]), expected, rtol=1e-4, atol=1e-4)


def test_depthwise_matches_tensorflow(tf):
    rng = np.random.default_rng(0)
    x, k = _rand(rng, (2, 9, 9, 4)), _rand(rng, (3, 3, 1, 4))
    y = F.conv2d(x, k, groups=4, strides=2, padding="same", precision="highest")
    expected = tf.nn.depthwise_conv2d(x, k.reshape(3, 3, 4, 1), strides=(1, 2, 2, 1), padding="SAME").numpy()
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_conv_transpose_matches_tensorflow(tf):
    rng = np.random.default_rng(1)
    for padding, strides, ksize in [("VALID", 2, 3), ("SAME", 2, 3), ("SAME", 3, 2), ("VALID", 3, 2)]:
        y, k = _rand(rng, (2, 5, 6, 3)), _rand(rng, (ksize, ksize, 3, 4))
        out = F.conv_transpose(y, k, strides=strides, padding=padding, precision="highest")
        # tf kernel layout for conv2d_transpose is (h, w, out_channels, in_channels)
        expected = tf.nn.conv2d_transpose(y, k.swapaxes(-1, -2), output_shape=out.shape, strides=strides,
                                          padding=padding).numpy()
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5, err_msg=f"{padding} s={strides}")


# --- algebraic properties -----------------------------------------------------------------------------------

@settings(max_examples=30)
@given(cst.conv_configs(max_size=6), st.integers(0, 2**31 - 1))
def test_conv_is_bilinear(cfg, seed):
    rng = np.random.default_rng(seed)
    kw = {a: cfg[a] for a in ("strides", "padding", "dilation", "groups", "data_format")}
    x1, x2 = _rand(rng, cfg["input_shape"]), _rand(rng, cfg["input_shape"])
    k1, k2 = _rand(rng, cfg["kernel_shape"]), _rand(rng, cfg["kernel_shape"])
    a, b = 1.5, -0.75
    f = lambda x, k: np.asarray(F.conv(x, k, precision="highest", **kw))
    np.testing.assert_allclose(f(a * x1 + b * x2, k1), a * f(x1, k1) + b * f(x2, k1), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(f(x1, a * k1 + b * k2), a * f(x1, k1) + b * f(x1, k2), rtol=1e-4, atol=1e-4)


@settings(max_examples=30)
@given(cst.conv_configs(max_size=6), st.integers(0, 2**31 - 1))
def test_channels_first_is_transposed_channels_last(cfg, seed):
    rng = np.random.default_rng(seed)
    kw = {a: cfg[a] for a in ("strides", "padding", "dilation", "groups")}
    shape = cfg["input_shape"]
    if cfg["data_format"] == "channels_first":
        shape = (shape[0], *shape[2:], shape[1])
    x, k = _rand(rng, shape), _rand(rng, cfg["kernel_shape"])
    last = F.conv(x, k, data_format="channels_last", precision="highest", **kw)
    first = F.conv(np.moveaxis(x, -1, 1), k, data_format="channels_first", precision="highest", **kw)
    np.testing.assert_allclose(np.moveaxis(np.asarray(first), 1, -1), last, rtol=1e-5, atol=1e-5)


@settings(max_examples=30)
@given(cst.conv_configs(max_size=6, grouped=False), st.integers(0, 2**31 - 1))
def test_conv_transpose_is_the_adjoint_of_conv(cfg, seed):
    """conv_transpose(y, K) == d/dx <conv(x, K^T), y>: the gradient of conv with the swapped kernel."""
    kw = {a: cfg[a] for a in ("strides", "padding", "dilation", "data_format")}
    kshape = cfg["kernel_shape"]
    from cnnjax import shapes
    try:
        x_shape = shapes.conv_transpose_output_shape(cfg["input_shape"], kshape, **kw)
    except ValueError:
        return
    rng = np.random.default_rng(seed)
    y, k = _rand(rng, cfg["input_shape"]), _rand(rng, kshape)
    k_fwd = np.swapaxes(k, -1, -2)
    conv = lambda x: F.conv(x, k_fwd, precision="highest", **kw)     # noqa: E731
    (expected,) = jax.jit(lambda y: jax.vjp(conv, jnp.zeros(x_shape, jnp.float32))[1](y))(jnp.asarray(y))
    got = jax.jit(lambda y: F.conv_transpose(y, k, precision="highest", **kw))(y)  # jitted: op by op, slow
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_vmap_equals_batched_call():
    rng = np.random.default_rng(3)
    x, k, b = _rand(rng, (4, 8, 8, 3)), _rand(rng, (3, 3, 3, 5)), _rand(rng, (5,))
    batched = F.conv2d(x, k, b, strides=2, padding="same")
    mapped = jax.vmap(lambda xi: F.conv2d(xi[None], k, b, strides=2, padding="same")[0])(x)
    np.testing.assert_allclose(mapped, batched, rtol=1e-5, atol=1e-5)
    # vmapping over kernels (an ensemble) equals separate calls
    ks = _rand(rng, (3, 3, 3, 3, 5))
    ens = jax.vmap(lambda kk: F.conv2d(x, kk))(ks)
    for i in range(3):
        np.testing.assert_allclose(ens[i], F.conv2d(x, ks[i]), rtol=1e-5, atol=1e-5)


def test_jit_equals_eager():
    rng = np.random.default_rng(4)
    x, k = _rand(rng, (2, 7, 7, 2)), _rand(rng, (3, 3, 2, 4))
    f = lambda x, k: F.conv2d(x, k, strides=2, padding="same", dilation=1)
    np.testing.assert_allclose(jax.jit(f)(x, k), f(x, k), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kw", [dict(padding="same"), dict(strides=2, padding=1), dict(dilation=2, groups=2)])
def test_gradients(kw):
    rng = np.random.default_rng(5)
    with jax.enable_x64(True):
        x, k, b = (jnp.asarray(_rand(rng, s, np.float64))
                   for s in ((1, 6, 6, 2), (3, 3, 2 // kw.get("groups", 1), 4), (4,)))
        check_grads(lambda x, k, b: F.conv2d(x, k, b, **kw), (x, k, b), order=2, modes=("fwd", "rev"))
        check_grads(lambda y, k: F.conv_transpose(y, k, strides=2, padding="same"),
                    (x, jnp.asarray(_rand(rng, (3, 3, 2, 3), np.float64))), order=1, modes=("fwd", "rev"))


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.float32])
def test_low_precision_dtypes(dtype):
    rng = np.random.default_rng(6)
    x, k = _rand(rng, (2, 8, 8, 3)), _rand(rng, (3, 3, 3, 4))
    y = F.conv2d(jnp.asarray(x, dtype), jnp.asarray(k, dtype), padding="same")
    assert y.dtype == dtype
    np.testing.assert_allclose(np.asarray(y, np.float32), reference.conv(x, k, padding="same"), rtol=0.1, atol=0.15)


def test_conv1d_and_conv3d():
    rng = np.random.default_rng(7)
    x1, k1 = _rand(rng, (2, 10, 3)), _rand(rng, (3, 3, 2))
    np.testing.assert_allclose(F.conv1d(x1, k1, strides=2), reference.conv(x1, k1, strides=2), rtol=1e-4, atol=1e-4)
    x3, k3 = _rand(rng, (1, 5, 5, 5, 2)), _rand(rng, (2, 2, 2, 2, 3))
    np.testing.assert_allclose(F.conv3d(x3, k3, padding="same"), reference.conv(x3, k3, padding="same"),
                               rtol=1e-4, atol=1e-4)


def test_tensorflow_conv3d_same_bug(tf):
    """Why the TF comparison leaves out some 3-D SAME convolutions with strides > 1: TF's CPU conv3d gets some of
    them wrong (seen with TensorFlow 2.21; the class it leaves out: ``cnnjax.testing.tf_quirks``).

    Smallest case found: the input [1, 2, 3] along height (depth and width 1), a 1x1x2 kernel of ones along width,
    stride 2 along width, SAME. Width 1 with a 2-wide kernel pads 0 cells before and 1 after, so every output is
    its input cell plus one zero: [1, 2, 3]. cnnjax gives exactly that; TensorFlow 2.21 on CPU gives 0 (or an
    uninitialised value) in the middle.
    """
    x = np.arange(1, 4, dtype=np.float32).reshape(1, 1, 3, 1, 1)
    k = np.ones((1, 1, 2, 1, 1), np.float32)
    assert tf_quirks.conv3d_same_may_be_wrong(x.shape[1:-1], k.shape[:-2], (1, 1, 2))
    ours = F.conv3d(x, k, strides=(1, 1, 2), padding="same")
    np.testing.assert_array_equal(ours, x)
    theirs = tf.nn.conv3d(x, k, strides=(1, 1, 1, 2, 1), padding="SAME").numpy()
    if np.array_equal(theirs, x):
        pytest.skip(f"TensorFlow {tf.__version__} no longer has the conv3d SAME-stride bug: drop the TF skip above")
