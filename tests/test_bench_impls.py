"""The per-backend implementations in cnnjax.functional (conv_impl, pool_impl) against the plain lax forms.

Both forms are called directly here (whatever the backend), so the test checks the equivalence that the dispatch
in conv.py / pool.py relies on; tests/test_conv.py and tests/test_pool.py check the dispatched functions against
a NumPy loop and TensorFlow.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from jax import lax

from cnnjax import shapes
from cnnjax.train.cpu_speed import conv_forms, pool_forms
from cnnjax.testing import reference, strategies as cst


def _case(cfg, seed, strides=None):
    """(x, k, kwargs of the conv_impl forms, data format, lhs/rhs/out layout names) for a drawn config."""
    n = len(cfg["kernel_shape"]) - 2
    _, pairs, strides, dilation, fmt = shapes.conv_pairs(
        cfg["input_shape"], cfg["kernel_shape"], cfg["strides"] if strides is None else strides, cfg["padding"],
        cfg["dilation"], cfg.get("groups", 1), cfg["data_format"], fn="test")
    lhs = {1: "NWC", 2: "NHWC", 3: "NDHWC"}[n] if fmt == "channels_last" else {1: "NCW", 2: "NCHW", 3: "NCDHW"}[n]
    rhs = {1: "WIO", 2: "HWIO", 3: "DHWIO"}[n]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(cfg["input_shape"]).astype(np.float32)
    k = rng.standard_normal(cfg["kernel_shape"]).astype(np.float32)
    kw = dict(strides=strides, padding=pairs, dilation=dilation, precision="highest")
    return x, k, kw, fmt, (lhs, rhs, lhs)


def _second_order_aborts_xla_cpu(cfg):
    """Whether the second derivative below may hit an XLA:CPU bug that aborts the process (jaxlib 0.10.2:
    ``algebraic_simplifier.cc: Check failed ... Window dimensions do not match RHS shape``; 0.11.2 and 0.12.0.1
    too), in XLA's own convolution, the reference form of both comparisons. Seen for the gradient with
    respect to the input of a function of the kernel gradient, 2-D and 3-D, where an axis dilated by 2 has an output of 2 (e.g. input 1x6x5x1,
    kernel 4x3x1x2, padding 1, dilation (2, 1)); not in 1-D, nor for dilation 3. Taken more widely here: any
    axis whose dilation is at least its output length, in 2-D or 3-D."""
    out, _, _, dilation, fmt = shapes.conv_pairs(cfg["input_shape"], cfg["kernel_shape"], cfg["strides"],
                                                 cfg["padding"], cfg["dilation"], cfg.get("groups", 1),
                                                 cfg["data_format"], fn="test")
    spatial = out[1:-1] if fmt == "channels_last" else out[2:]
    return len(spatial) > 1 and any(d > 1 and n <= d for n, d in zip(spatial, dilation))


@settings(max_examples=12, deadline=None)
@given(cst.conv_configs(max_size=7, max_channels=3, grouped=False), st.integers(0, 2**31 - 1))
def test_im2col_equals_xla_conv_values_and_gradients(cfg, seed):
    x, k, kw, fmt, dims = _case(cfg, seed)
    xla = lambda x, k: conv_forms.conv_xla(x, k, dimension_numbers=dims, **kw)
    col = lambda x, k: conv_forms.conv_im2col(x, k, channels_last=fmt == "channels_last", **kw)
    np.testing.assert_allclose(jax.jit(col)(x, k), jax.jit(xla)(x, k), rtol=1e-5, atol=1e-5)
    loss = lambda f: jax.jit(jax.grad(lambda x, k: jnp.sum(jnp.sin(f(x, k))), argnums=(0, 1)))(x, k)
    for got, want in zip(loss(col), loss(xla)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@settings(max_examples=12, deadline=None)
@given(cst.conv_configs(max_size=7, max_channels=3, grouped=False), st.integers(0, 2**31 - 1))
def test_im2col_vjp_equals_xla_conv_values_and_gradients(cfg, seed):
    """The custom-VJP im2col form (XLA:CPU's first-layer conv) against plain lax: values, first and second
    reverse-mode derivatives, every layout, stride, dilation and padding the strategy draws."""
    x, k, kw, fmt, dims = _case(cfg, seed)
    xla = lambda x, k: conv_forms.conv_xla(x, k, dimension_numbers=dims, **kw)
    vjp = lambda x, k: conv_forms.conv_im2col_vjp(x, k, channels_last=fmt == "channels_last", **kw)
    np.testing.assert_allclose(jax.jit(vjp)(x, k), jax.jit(xla)(x, k), rtol=1e-5, atol=1e-5)
    grads = lambda f: jax.grad(lambda x, k: jnp.sum(jnp.sin(f(x, k))), argnums=(0, 1))
    for got, want in zip(jax.jit(grads(vjp))(x, k), jax.jit(grads(xla))(x, k)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # reverse over reverse: the gradient of a function of the kernel gradient, with respect to the input
    second = lambda f: jax.jit(jax.grad(lambda x: jnp.sum(grads(f)(x, k)[1] ** 2)))(x)
    if not _second_order_aborts_xla_cpu(cfg):
        np.testing.assert_allclose(second(vjp), second(xla), rtol=1e-3, atol=1e-3)


@settings(max_examples=12, deadline=None)
@given(cst.conv_configs(max_size=7, max_channels=4, grouped=True), st.integers(0, 2**31 - 1), st.integers(1, 3))
def test_split_grad_equals_xla_conv_values_and_gradients(cfg, seed, chunk):
    """The split kernel gradient (XLA:CPU's deeper convs) against plain lax: values and first and second
    reverse-mode derivatives, for every layout, stride, dilation, padding and group count the strategy draws,
    with batch chunks of 1-3 images (so batches split unevenly too)."""
    _, _, kw, _, dims = _case(cfg, seed)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((4, *cfg["input_shape"][1:])).astype(np.float32)      # a batch of 4: 2+ chunks
    k = rng.standard_normal(cfg["kernel_shape"]).astype(np.float32)
    kw = dict(kw, dimension_numbers=dims, groups=cfg["groups"])
    xla = lambda x, k: conv_forms.conv_xla(x, k, **kw)
    split = lambda x, k: conv_forms.conv_split_grad(x, k, chunk=chunk, **kw)
    np.testing.assert_array_equal(split(x, k), xla(x, k))        # the forward pass is XLA's own
    grads = lambda f: jax.grad(lambda x, k: jnp.sum(jnp.sin(f(x, k))), argnums=(0, 1))
    for got, want in zip(jax.jit(grads(split))(x, k), jax.jit(grads(xla))(x, k)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    second = lambda f: jax.jit(jax.grad(lambda x: jnp.sum(grads(f)(x, k)[1] ** 2)))(x)
    if not _second_order_aborts_xla_cpu(cfg):
        np.testing.assert_allclose(second(split), second(xla), rtol=1e-3, atol=1e-3)


def test_cpu_form_choice():
    """Which convolutions take which XLA:CPU form (the measured rules of conv_impl's docstring)."""
    assert conv_forms.uses_im2col((3, 3, 1, 32), 1) and conv_forms.uses_im2col((3, 3, 3, 32), 1)
    assert not conv_forms.uses_im2col((3, 3, 32, 64), 1) and not conv_forms.uses_im2col((3, 3, 1, 32), 2)
    assert conv_forms.uses_split_grad((3, 3, 32, 64), 1, 128)            # Flax example CNN, mnist_cnn2 conv2
    assert conv_forms.uses_split_grad((3, 3, 16, 16), 1, 128)            # ResNet-20 stage 1
    assert conv_forms.uses_split_grad((3, 3, 4, 8), 2, 9)                # grouped, strided: any conv
    assert not conv_forms.uses_split_grad((3, 3, 32, 64), 1, conv_forms.SPLIT_GRAD_CHUNK)   # one chunk
    assert not conv_forms.uses_split_grad((3, 3, 1, 32), 1, 128)         # im2col first


def test_fast_paths_and_forward_mode():
    """The CPU forms carry custom VJPs, which forward mode cannot pass; plain_lax() traces the lax forms,
    whose tangents match a central finite difference."""
    from cnnjax import functional as F
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((2, 6, 6, 1)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((3, 3, 1, 4)), jnp.float32)     # 9 * 1 <= 32: the im2col form on CPU
    t = jnp.asarray(rng.standard_normal(x.shape), jnp.float32)
    f = lambda x: F.max_pool(F.conv2d(x, k, padding="same"), 2)
    if jax.default_backend() == "cpu":
        with pytest.raises(TypeError, match="custom_vjp"):
            jax.jvp(f, (x,), (t,))
    with F.plain_lax():
        _, tangent = jax.jvp(f, (x,), (t,))
        assert F.conv2d(x, k).shape == (2, 4, 4, 4)
    eps = 1e-3
    numeric = (f(x + eps * t) - f(x - eps * t)) / (2 * eps)
    np.testing.assert_allclose(tangent, numeric, rtol=2e-2, atol=2e-2)
    from cnnjax.functional import fast_paths
    assert fast_paths.enabled()       # the context restored the default


def test_im2col_lecture_example():
    """SEED_EXAMPLES.md, convolution example 1 (VALID) through the im2col form."""
    x = jnp.arange(1.0, 10.0).reshape(1, 3, 3, 1)
    y = conv_forms.conv_im2col(x, jnp.ones((2, 2, 1, 1)), strides=(1, 1), padding=((0, 0), (0, 0)),
                              dilation=(1, 1))
    np.testing.assert_array_equal(y[0, :, :, 0], [[12, 16], [24, 28]])


def _reduce_window(x, dims, largest):
    init = np.array(-np.inf if largest else np.inf, x.dtype)
    return lax.reduce_window(x, init, lax.max if largest else lax.min, dims, dims, "VALID")


@pytest.mark.parametrize("largest", [True, False])
@pytest.mark.parametrize("shape,dims", [((2, 6, 6, 3), (1, 2, 2, 1)), ((2, 7, 5, 2), (1, 2, 2, 1)),
                                        ((1, 9, 8, 2), (1, 3, 2, 1)), ((2, 3, 8), (1, 1, 4)),
                                        ((1, 4, 4, 4, 2), (1, 2, 2, 2, 1))])
def test_window_extreme_equals_reduce_window_with_ties(shape, dims, largest):
    rng = np.random.default_rng(0)
    # few distinct values, so many windows hold ties: the gradient must go to the first extreme cell only
    x = jnp.asarray(rng.integers(0, 3, shape).astype(np.float32))
    g = jnp.asarray(rng.standard_normal(_reduce_window(x, dims, largest).shape).astype(np.float32))
    want, vjp_want = jax.vjp(lambda x: _reduce_window(x, dims, largest), x)
    got, vjp_got = jax.vjp(lambda x: pool_forms.window_extreme(x, dims, largest), x)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(vjp_got(g)[0], vjp_want(g)[0])
    jit_grad = jax.jit(jax.grad(lambda x: jnp.sum(pool_forms.window_extreme(x, dims, largest) * g)))(x)
    np.testing.assert_array_equal(jit_grad, vjp_want(g)[0])


def test_window_extreme_lecture_example():
    x = jnp.array([[1., 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]]).reshape(1, 4, 4, 1)
    np.testing.assert_array_equal(pool_forms.window_extreme(x, (1, 2, 2, 1))[0, :, :, 0], [[6, 8], [3, 4]])
    np.testing.assert_array_equal(reference.max_pool(np.asarray(x), 2)[0, :, :, 0], [[6, 8], [3, 4]])


def test_applies_only_to_plain_windows():
    assert pool_forms.applies((1, 2, 2, 1), (1, 2, 2, 1), ((0, 0),) * 4)
    assert not pool_forms.applies((1, 3, 3, 1), (1, 2, 2, 1), ((0, 0),) * 4)        # overlapping
    assert not pool_forms.applies((1, 2, 2, 1), (1, 2, 2, 1), ((0, 0), (0, 1), (0, 1), (0, 0)))  # padded


@pytest.mark.parametrize("shape,kshape,padding", [((2, 6, 6, 1), (3, 3, 1, 8), "same"),      # im2col form
                                                  ((20, 6, 5, 32), (3, 3, 32, 64), "same"),  # split kernel grad
                                                  ((19, 7, 7, 16), (3, 3, 16, 8), "valid")])
def test_dispatched_conv_equals_plain_lax(shape, kshape, padding):
    """F.conv2d as dispatched (its CPU form here) against the same call traced inside plain_lax()."""
    from cnnjax import functional as F
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
    k = jnp.asarray(rng.standard_normal(kshape) / np.sqrt(np.prod(kshape[:3])), jnp.float32)
    loss = lambda x, k: jnp.sum(jnp.tanh(F.conv2d(x, k, padding=padding)))
    got = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(x, k)
    with F.plain_lax():
        want = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(x, k)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
    for g, w in zip(got[1], want[1]):
        np.testing.assert_allclose(g, w, rtol=2e-4, atol=2e-4)
