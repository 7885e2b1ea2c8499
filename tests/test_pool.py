"""Pooling: the lecture's examples, NumPy and TensorFlow references, Keras/PyTorch conventions."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from cnnjax import functional as F, shapes
from cnnjax.testing import reference, strategies as cst

REF = {F.max_pool: reference.max_pool, F.avg_pool: reference.avg_pool, F.min_pool: reference.min_pool}


def _to_last(a, fmt):
    return np.asarray(a) if fmt == "channels_last" else np.moveaxis(np.asarray(a), 1, -1)


def test_lecture_max_pool_4x4():
    x = np.array([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]], np.float32).reshape(1, 4, 4, 1)
    np.testing.assert_array_equal(F.max_pool(x, (2, 2), (2, 2))[0, :, :, 0], [[6, 8], [3, 4]])
    np.testing.assert_array_equal(F.max_pool(x, 2)[0, :, :, 0], [[6, 8], [3, 4]])     # strides default = pool


def test_lecture_max_pool_2x2_stride1():
    x = np.array([[4, 3], [2, 1]], np.float32).reshape(1, 2, 2, 1)
    valid = F.max_pool(x, 2, strides=1, padding="VALID")
    assert valid.shape == (1, 1, 1, 1) and float(valid.reshape(())) == 4
    same = F.max_pool(x, 2, strides=1, padding="SAME")
    assert same.shape == (1, 2, 2, 1)
    np.testing.assert_array_equal(same[0, :, :, 0], [[4, 3], [2, 1]])


def test_padded_cells_never_win():
    x = -np.arange(1, 10, dtype=np.float32).reshape(1, 3, 3, 1)      # all negative: a zero pad would win
    y = F.max_pool(x, 2, strides=2, padding="same")
    np.testing.assert_array_equal(y[0, :, :, 0], [[-1, -3], [-7, -9]])
    y = F.min_pool(-x, 2, strides=2, padding=((1, 1), (1, 1)))
    np.testing.assert_array_equal(y[0, :, :, 0], [[1, 2], [4, 5]])      # a zero pad would be the min


def test_avg_pool_same_divides_by_real_cells_like_keras():
    x = np.arange(1, 10, dtype=np.float32).reshape(1, 3, 3, 1)
    y = F.avg_pool(x, 2, strides=2, padding="same")[0, :, :, 0]
    np.testing.assert_allclose(y, [[(1 + 2 + 4 + 5) / 4, (3 + 6) / 2], [(7 + 8) / 2, 9]])
    y = F.avg_pool(x, 2, strides=2, padding="same", count_include_pad=True)[0, :, :, 0]
    np.testing.assert_allclose(y, [[12 / 4, 9 / 4], [15 / 4, 9 / 4]])


def test_ceil_mode_like_pytorch():
    x = np.arange(25, dtype=np.float32).reshape(1, 5, 5, 1)
    assert F.max_pool(x, 2).shape == (1, 2, 2, 1)
    y = F.max_pool(x, 2, ceil_mode=True)
    assert y.shape == (1, 3, 3, 1)
    np.testing.assert_array_equal(y[0, :, :, 0], [[6, 8, 9], [16, 18, 19], [21, 23, 24]])
    # PyTorch avg_pool2d(5x5, 2, ceil_mode=True): the partial last window divides by its real cells
    np.testing.assert_allclose(F.avg_pool(x, 2, ceil_mode=True)[0, 2, 2, 0], 24.0)
    # a window that would start in the padding only is dropped: 4 wide, k=2, s=2, pad 1 -> 3, not 4
    assert F.max_pool(np.ones((1, 4, 4, 1), np.float32), 2, 2, padding=1, ceil_mode=True).shape == (1, 3, 3, 1)


@given(cst.pool_configs(max_size=7), st.sampled_from([F.max_pool, F.avg_pool, F.min_pool]), st.booleans(),
       st.integers(0, 2**31 - 1))
def test_pooling_matches_numpy_loop(cfg, op, include_pad, seed):
    x = np.random.default_rng(seed).standard_normal(cfg["input_shape"]).astype(np.float32)
    kw = {a: cfg[a] for a in ("pool_size", "strides", "padding", "ceil_mode")}
    extra = {"count_include_pad": include_pad} if op is F.avg_pool else {}
    y = op(x, data_format=cfg["data_format"], **kw, **extra)
    expected = REF[op](_to_last(x, cfg["data_format"]), **kw, **extra)
    np.testing.assert_allclose(_to_last(y, cfg["data_format"]), expected, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def tf():
    return pytest.importorskip("tensorflow")


@settings(max_examples=40)
@given(cst.pool_configs(max_size=8), st.sampled_from(["max", "avg"]), st.integers(0, 2**31 - 1))
def test_pooling_matches_tensorflow(tf, cfg, kind, seed):
    n = len(cfg["pool_size"])
    padding = cfg["padding"] if isinstance(cfg["padding"], str) else "valid"
    strides = cfg["strides"] or cfg["pool_size"]
    x = np.random.default_rng(seed).standard_normal(cfg["input_shape"]).astype(np.float32)
    x_last = _to_last(x, cfg["data_format"])
    tf_op = tf.nn.max_pool if kind == "max" else tf.nn.avg_pool
    expected = tf_op(x_last, ksize=cfg["pool_size"], strides=strides, padding=padding.upper()).numpy()
    op = F.max_pool if kind == "max" else F.avg_pool
    y = op(x, cfg["pool_size"], strides, padding, data_format=cfg["data_format"])
    assert len(y.shape) == n + 2
    np.testing.assert_allclose(_to_last(y, cfg["data_format"]), expected, rtol=1e-5, atol=1e-5)


def test_channel_max_pool_matches_tensorflow_depthwise(tf):
    x = np.random.default_rng(0).standard_normal((2, 4, 5, 6)).astype(np.float32)
    expected = tf.nn.max_pool(x, ksize=(1, 1, 1, 3), strides=(1, 1, 1, 3), padding="VALID").numpy()
    y = F.channel_max_pool(x, 3)
    assert y.shape == (2, 4, 5, 2)
    np.testing.assert_array_equal(y, expected)
    first = F.channel_max_pool(np.moveaxis(x, -1, 1), 3, data_format="NCHW")
    np.testing.assert_array_equal(np.moveaxis(np.asarray(first), 1, -1), expected)


def test_global_pools_keep_depth():
    x = np.random.default_rng(1).standard_normal((2, 5, 4, 3)).astype(np.float32)
    np.testing.assert_allclose(F.global_avg_pool(x), x.mean(axis=(1, 2)), rtol=1e-6)
    np.testing.assert_array_equal(F.global_max_pool(x), x.max(axis=(1, 2)))
    assert F.global_avg_pool(x, keepdims=True).shape == (2, 1, 1, 3)
    np.testing.assert_allclose(F.global_avg_pool(np.moveaxis(x, -1, 1), data_format="channels_first"),
                               x.mean(axis=(1, 2)), rtol=1e-6)


def test_pool_gradients_flow_to_the_winner():
    x = jnp.array([[1., 5], [3, 2]]).reshape(1, 2, 2, 1)
    g = jax.grad(lambda x: F.max_pool(x, 2).sum())(x)
    np.testing.assert_array_equal(g[0, :, :, 0], [[0, 1], [0, 0]])
    g = jax.grad(lambda x: F.avg_pool(x, 2).sum())(x)
    np.testing.assert_allclose(g[0, :, :, 0], 0.25)


def test_pool_bfloat16_and_jit():
    x = np.random.default_rng(2).standard_normal((2, 6, 6, 3)).astype(np.float32)
    for op in (F.max_pool, F.avg_pool, F.min_pool):
        y = jax.jit(lambda a: op(jnp.asarray(a, jnp.bfloat16), 3, 2, "same"))(x)
        assert y.dtype == jnp.bfloat16
        np.testing.assert_allclose(np.asarray(y, np.float32), REF[op](x, 3, 2, "same"), rtol=0.02, atol=0.02)


@pytest.mark.parametrize("op", [F.max_pool, F.avg_pool, F.min_pool])
def test_pool_gradients_under_jit_equal_eager(op):
    x = jnp.asarray(np.random.default_rng(3).standard_normal((2, 5, 5, 2)), jnp.float32)
    loss = lambda a: jnp.sum(op(a, 2, 2, "same") ** 2)
    np.testing.assert_allclose(jax.jit(jax.grad(loss))(x), jax.grad(loss)(x), rtol=1e-6, atol=1e-6)
    g = jax.jit(jax.grad(lambda a: jnp.sum(F.channel_max_pool(a, 2))))(x)
    assert float(g.sum()) == 2 * 5 * 5                     # one winner per output cell


# --- review fixes ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("op, kw", [(F.max_pool, {}), (F.min_pool, {}), (F.avg_pool, {}),
                                    (F.avg_pool, {"count_include_pad": True}), (F.max_pool, {"ceil_mode": True})])
def test_pool_padding_must_be_smaller_than_the_window(op, kw):
    """padding=3 with a 2x2 window gave -inf cells (max), +inf (min) and NaN (avg, real cells only): windows that
    cover only padding."""
    x = np.ones((1, 4, 4, 1), np.float32)
    name = op.__name__
    with pytest.raises(ValueError, match=rf"{name}: padding 3 on spatial axis 0 \(low side\) must be smaller than "
                                         rf"pool_size 2 \(a window would cover only padding\); got padding=3"):
        op(x, 2, padding=3, **kw)
    with pytest.raises(ValueError, match=rf"{name}: padding 2 on spatial axis 1 \(high side\) must be smaller than "
                                         rf"pool_size 2"):
        op(x, 2, padding=((0, 0), (0, 2)), **kw)
    y = op(x, 2, padding=1, **kw)                                       # padding < pool_size: every cell finite
    assert np.isfinite(np.asarray(y)).all()


def test_pool_shape_formulas_check_the_padding_too():
    with pytest.raises(ValueError, match=r"pool_output_size: padding 2 \(low side\) must be smaller than pool_size 2"):
        shapes.pool_output_size(4, 2, padding=2)
    with pytest.raises(ValueError, match=r"pool_output_shape: padding 3 on spatial axis 0"):
        shapes.pool_output_shape((1, 4, 4, 1), 2, padding=3)


@given(st.integers(1, 12), st.integers(1, 5), st.integers(1, 5), st.integers(0, 4), st.integers(0, 4), st.booleans())
def test_every_pool_window_covers_an_input_cell(size, k, s, lo, hi, ceil_mode):
    """With each side's padding < pool_size (and ceil_mode's extra window starting inside the input or the low
    padding), no window lies entirely in the padding; otherwise a clear error."""
    if max(lo, hi) >= k:
        with pytest.raises(ValueError, match="a window would cover only padding"):
            shapes.pool_output_size(size, k, s, (lo, hi), ceil_mode)
        return
    if k > size + lo + hi:
        with pytest.raises(ValueError, match="larger than the padded input"):
            shapes.pool_output_size(size, k, s, (lo, hi), ceil_mode)
        return
    out = shapes.pool_output_size(size, k, s, (lo, hi), ceil_mode)
    for i in range(out):
        start = i * s - lo                                 # in input coordinates
        assert start < size and start + k > 0, (i, start)


@pytest.mark.parametrize("call, name, flag", [
    (lambda v: F.max_pool(np.ones((1, 5, 5, 1), np.float32), 2, ceil_mode=v), "max_pool", "ceil_mode"),
    (lambda v: F.min_pool(np.ones((1, 5, 5, 1), np.float32), 2, ceil_mode=v), "min_pool", "ceil_mode"),
    (lambda v: F.avg_pool(np.ones((1, 5, 5, 1), np.float32), 2, ceil_mode=v), "avg_pool", "ceil_mode"),
    (lambda v: F.avg_pool(np.ones((1, 5, 5, 1), np.float32), 2, padding=1, count_include_pad=v), "avg_pool",
     "count_include_pad"),
    (lambda v: F.global_avg_pool(np.ones((1, 5, 5, 1), np.float32), keepdims=v), "global_avg_pool", "keepdims"),
    (lambda v: F.global_max_pool(np.ones((1, 5, 5, 1), np.float32), keepdims=v), "global_max_pool", "keepdims"),
    (lambda v: shapes.pool_output_size(5, 2, ceil_mode=v), "pool_output_size", "ceil_mode"),
    (lambda v: shapes.pool_output_shape((1, 5, 5, 1), 2, ceil_mode=v), "pool_output_shape", "ceil_mode"),
    (lambda v: shapes.global_pool_output_shape((1, 5, 5, 1), keepdims=v), "global_pool_output_shape", "keepdims"),
])
def test_pool_flags_must_be_bools(call, name, flag):
    """ceil_mode='False' ran ceil mode (a non-empty string is truthy); pool_output_size(5, 2, ceil_mode='no') gave 3."""
    for bad in ("False", "no", 0, 1, None):
        with pytest.raises(TypeError, match=rf"{name}: {flag} must be a bool, got {bad!r}"):
            call(bad)
    np.testing.assert_array_equal(np.shape(call(np.False_)), np.shape(call(False)))   # NumPy bools are bools
    np.testing.assert_array_equal(np.shape(call(np.True_)), np.shape(call(True)))


def test_channel_max_pool_rejects_a_bool_input():
    """A bool x raised NumPy's 'Invalid integer data type' from jnp.iinfo."""
    with pytest.raises(TypeError, match=r"channel_max_pool: x has dtype bool; pooling needs a floating or integer"):
        F.channel_max_pool(np.ones((1, 2, 2, 4), bool), 2)
