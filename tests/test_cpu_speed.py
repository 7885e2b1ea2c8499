"""The trainer's XLA:CPU forms (cnnjax.train.cpu_speed: conv_forms, pool_forms, and the swap that puts them into a
loss) against the plain lax ops of cnnjax.functional.

The forms are called directly here (whatever the backend), so the test checks the equivalence that the swap
relies on; tests/test_conv.py and tests/test_pool.py check the functional ops against a NumPy loop and TensorFlow.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings, strategies as st
from jax import lax

from cnnjax import shapes
from cnnjax.train.cpu_speed import conv_forms, loop_choice, pool_forms, swap
from cnnjax.testing import reference, strategies as cst


def _case(cfg, seed, strides=None):
    """(x, k, kwargs of the conv_forms, data format, lhs/rhs/out layout names) for a drawn config."""
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
    """Which convolutions take which XLA:CPU form (the rules of conv_forms' docstring)."""
    assert conv_forms.uses_im2col((3, 3, 1, 32), 1) and conv_forms.uses_im2col((3, 3, 3, 32), 1)
    assert not conv_forms.uses_im2col((3, 3, 32, 64), 1) and not conv_forms.uses_im2col((3, 3, 1, 32), 2)
    assert conv_forms.uses_split_grad((3, 3, 32, 64), 1, 128)            # Flax example CNN, mnist_cnn2 conv2
    assert conv_forms.uses_split_grad((3, 3, 16, 16), 1, 128)            # ResNet-20 stage 1
    assert conv_forms.uses_split_grad((3, 3, 4, 8), 2, 9)                # grouped, strided: any conv
    assert not conv_forms.uses_split_grad((3, 3, 32, 64), 1, conv_forms.SPLIT_GRAD_CHUNK)   # one chunk
    assert not conv_forms.uses_split_grad((3, 3, 1, 32), 1, 128)         # im2col first


def test_functional_ops_take_forward_mode_and_the_swap_does_not():
    """The functional ops are plain lax: jax.jvp works on them (tangents match a central finite difference) on
    every backend; the trainer's swapped loss carries custom VJPs, so forward mode is refused there (it is for
    reverse-mode training steps only)."""
    from cnnjax import functional as F
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((2, 6, 6, 1)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((3, 3, 1, 4)), jnp.float32)     # 9 * 1 <= 32: the im2col form
    t = jnp.asarray(rng.standard_normal(x.shape), jnp.float32)
    f = lambda x: F.max_pool(F.conv2d(x, k, padding="same"), 2)
    _, tangent = jax.jvp(f, (x,), (t,))
    eps = 1e-3
    numeric = (f(x + eps * t) - f(x - eps * t)) / (2 * eps)
    np.testing.assert_allclose(tangent, numeric, rtol=2e-2, atol=2e-2)
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jvp(swap.with_cpu_forms(f), (x,), (t,))


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
def test_swapped_loss_equals_plain_lax(shape, kshape, padding):
    """A loss of F.conv2d and F.max_pool with the CPU forms swapped in (what the trainer differentiates) against
    the plain loss: the same values and gradients to float rounding, and the forms are really in the program."""
    from cnnjax import functional as F
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
    k = jnp.asarray(rng.standard_normal(kshape) / np.sqrt(np.prod(kshape[:3])), jnp.float32)
    loss = lambda x, k: jnp.sum(jnp.tanh(F.max_pool(F.conv2d(x, k, padding=padding), 2)))
    fast = swap.with_cpu_forms(loss)
    text = str(jax.make_jaxpr(fast)(x, k))
    assert "custom_vjp_call" in text and "reduce_window_max" not in text
    assert ("conv_general_dilated" in text) == (kshape[2] * 9 > conv_forms.IM2COL_MAX_DEPTH)  # im2col: no conv
    got = jax.jit(jax.value_and_grad(fast, argnums=(0, 1)))(x, k)
    want = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(x, k)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
    for g, w in zip(got[1], want[1]):
        np.testing.assert_allclose(g, w, rtol=2e-4, atol=2e-4)


def test_swap_reaches_into_jit_and_keeps_other_primitives():
    """Convolutions inside a nested jax.jit are swapped too; a scan, BatchNorm-style reductions, dropout's random
    bits and outputs of several kinds (pytrees, has_aux) pass through unchanged."""
    from cnnjax import functional as F
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((4, 8, 8, 1)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((3, 3, 1, 2)), jnp.float32)

    @jax.jit
    def inner(x, k):
        return F.max_pool(F.conv2d(x, k), 2)

    def fn(x, k, key):
        y = F.dropout(inner(x, k), 0.5, rng=key)
        total, _ = lax.scan(lambda c, row: (c + jnp.sum(row), None), 0.0, y)
        return {"total": total, "mean": jnp.mean(y, axis=(0, 1, 2))}, y.shape[0]

    key = jax.random.key(0)
    text = str(jax.make_jaxpr(swap.with_cpu_forms(fn))(x, k, key))
    assert "reduce_window_max" not in text and "conv_general_dilated" not in text
    got, want = swap.with_cpu_forms(fn)(x, k, key), fn(x, k, key)
    assert jax.tree.structure(got) == jax.tree.structure(want) and got[1] == 4
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), got[0], want[0])


@pytest.mark.parametrize("name,size", [("mnist_cnn2", 28), pytest.param("resnet20", 12, marks=pytest.mark.long)])
def test_swapped_model_loss_equals_plain(name, size):
    """A zoo model's training loss (BatchNorm statistics as an output, dropout) with and without the swap, in
    float64, where the two agree to 1e-10 (in float32, ResNet-20's gradients differ in the third digit: rounding
    of another summation order, amplified through 19 BatchNorms)."""
    from cnnjax import models
    model = models.get(name)
    with jax.enable_x64(True):
        x = jax.random.uniform(jax.random.key(1), (10, size, size, models.input_shape(name)[-1]), jnp.float64)
        variables = jax.tree.map(lambda a: a.astype(jnp.float64), model.init(jax.random.key(0), x[:1]))
        rest = {k: v for k, v in variables.items() if k != "params"}

        def loss(params):
            kw = {"mutable": list(rest)} if rest else {}
            out = model.apply({"params": params, **rest}, x, train=True, rngs={"dropout": jax.random.key(2)}, **kw)
            logits, updates = out if rest else (out, {})
            return jnp.mean(logits ** 2), updates

        (lw, uw), gw = jax.jit(jax.value_and_grad(loss, has_aux=True))(variables["params"])
        (lg, ug), gg = jax.jit(jax.value_and_grad(swap.with_cpu_forms(loss), has_aux=True))(variables["params"])
    np.testing.assert_allclose(lg, lw, rtol=1e-12)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12), (ug, gg), (uw, gw))


def test_conv_form_of_leaves_unsupported_convolutions_alone():
    """Transposed (lhs-dilated) convolutions, other kernel layouts and a requested output dtype keep XLA's."""
    from cnnjax import functional as F
    x = jnp.ones((2, 5, 5, 1))

    def forms(fn, *args):
        jaxpr = jax.make_jaxpr(fn)(*args).jaxpr
        return [swap.conv_form_of(e.params, e.invars[0].aval.shape, e.invars[1].aval.shape)
                for e in jaxpr.eqns if e.primitive.name == "conv_general_dilated"]

    assert forms(lambda x: F.conv_transpose(x, jnp.ones((3, 3, 1, 2)), strides=2), x) == [None]
    oihw = lambda x: lax.conv_general_dilated(x, jnp.ones((2, 1, 3, 3)), (1, 1), "VALID",  # noqa: E731
                                              dimension_numbers=("NHWC", "OIHW", "NHWC"))
    assert forms(oihw, x) == [None]
    typed = lambda x: lax.conv_general_dilated(x, jnp.ones((3, 3, 1, 2)), (1, 1), "VALID",  # noqa: E731
                                               dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                               preferred_element_type=jnp.float32)
    assert forms(typed, x) == [None]
    assert forms(lambda x: F.conv2d(x, jnp.ones((3, 3, 1, 2))), x)[0].func is conv_forms.conv_im2col_vjp


def test_loop_rule():
    """fit(loop="auto")'s rule: the scan off the CPU and for steps without XLA convolutions; unrolled chunks for
    a few; one step per call for deep models. The counts of the zoo's models, traced."""
    from cnnjax import models
    assert loop_choice.rule("gpu", 18) == "scan" and loop_choice.rule("cpu", 0) == "scan"
    assert loop_choice.rule("cpu", 1) == "unroll" and loop_choice.rule("cpu", loop_choice.UNROLL_MAX_CONVOLUTIONS) \
        == "unroll"
    assert loop_choice.rule("cpu", loop_choice.UNROLL_MAX_CONVOLUTIONS + 1) == "step"
    counts = {}
    for name in ("mnist_cnn", "mnist_cnn2", "cifar10_cnn", "resnet20"):
        model = models.get(name)
        x = jax.ShapeDtypeStruct((16, *models.input_shape(name)), jnp.float32)
        variables = jax.eval_shape(model.init, jax.random.key(0), x)
        apply = lambda v, x: model.apply(v, x, train=False)      # noqa: E731
        counts[name] = (loop_choice.xla_convolutions(apply, variables, x),
                        loop_choice.xla_convolutions(apply, variables, x, cpu_forms=False))
    # mnist_cnn / cifar10_cnn: one 3x3 conv on 1 or 3 channels (im2col); mnist_cnn2: + a 32->64 conv;
    # ResNet-20: 19 3x3 convs (the first one im2col) and 2 strided 1x1 projections
    assert counts == {"mnist_cnn": (0, 1), "mnist_cnn2": (1, 2), "cifar10_cnn": (0, 1), "resnet20": (18, 19)}


def test_swap_leaves_alone_what_its_forms_do_not_cover():
    """A pool window larger than the input (reduce_window gives an empty axis) and a convolution inside remat
    keep their own primitives; the loop rule counts a remat'd convolution as an XLA convolution."""
    x = jnp.ones((1, 1, 1, 2))
    big = lambda x: lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")  # noqa: E731
    assert swap.with_cpu_forms(big)(x).shape == big(x).shape == (1, 0, 0, 2)
    k = jnp.ones((3, 3, 1, 2))
    conv = lambda x: lax.conv_general_dilated(x, k, (1, 1), "VALID",  # noqa: E731
                                              dimension_numbers=("NHWC", "HWIO", "NHWC"))
    x = jnp.ones((2, 6, 6, 1))
    assert loop_choice.xla_convolutions(conv, x) == 0                       # im2col at the top level
    assert loop_choice.xla_convolutions(jax.checkpoint(conv), x) == 1       # inside remat: not swapped
    assert "conv_general_dilated" in str(jax.make_jaxpr(swap.with_cpu_forms(jax.checkpoint(conv)))(x))


def test_symbolic_batch_keeps_the_whole_batch_kernel_gradient():
    """The split kernel gradient needs a concrete batch size; a symbolic one keeps XLA's convolution."""
    from jax import export
    b, = export.symbolic_shape("b")
    dn = lax.conv_dimension_numbers((1, 6, 6, 32), (3, 3, 32, 64), ("NHWC", "HWIO", "NHWC"))
    params = dict(window_strides=(1, 1), padding=((1, 1), (1, 1)), lhs_dilation=(1, 1), rhs_dilation=(1, 1),
                  dimension_numbers=dn, feature_group_count=1, batch_group_count=1, precision=None,
                  preferred_element_type=None)
    assert swap.conv_form_of(params, (b, 6, 6, 32), (3, 3, 32, 64)) is None
    assert swap.conv_form_of(params, (16, 6, 6, 32), (3, 3, 32, 64)).func is conv_forms.conv_split_grad


def test_strategy_cpu_forms_default_and_check():
    """make_strategy: the forms on a CPU for one device and pmap, not for the sharded mode; a non-bool refused."""
    from cnnjax import models
    from cnnjax.train import make_strategy
    model, tx = models.get("fashion_dnn"), optax.sgd(0.1)
    assert make_strategy("none", model, tx).cpu_forms == (jax.default_backend() == "cpu")
    assert make_strategy("shard", model, tx).cpu_forms is False
    assert make_strategy("none", model, tx, cpu_forms=False).cpu_forms is False
    with pytest.raises(TypeError, match="make_strategy: cpu_forms must be True, False or None, got 'no'"):
        make_strategy("none", model, tx, cpu_forms="no")
