"""cnnjax.layers: each layer equals its functional call on the same params; Keras defaults; errors at init."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cnnjax
from cnnjax import functional as F
from cnnjax import layers as L

# rbg keys: XLA's RngBitGenerator compiles ~10x faster on CPU than threefry for each new parameter shape.
KEY = jax.random.key(0, impl="rbg")


def _x(shape, seed=1):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _init_apply(layer, x, **kwargs):
    variables = layer.init(KEY, x)
    return variables, layer.apply(variables, x, **kwargs)


# ------------------------------------------------------------------------------ layer == functional call
CONV_CASES = [
    (L.Conv1D, dict(filters=4, kernel_size=3), (2, 9, 3), F.conv1d),
    (L.Conv1D, dict(filters=4, kernel_size=2, strides=2, padding="same", data_format="channels_first"),
     (2, 3, 9), F.conv1d),
    (L.Conv2D, dict(filters=5, kernel_size=3, activation="relu"), (2, 8, 7, 3), F.conv2d),
    (L.Conv2D, dict(filters=6, kernel_size=(3, 2), strides=(2, 1), padding="same", dilation_rate=1, groups=3),
     (2, 9, 8, 6), F.conv2d),
    (L.Conv2D, dict(filters=4, kernel_size=3, dilation_rate=2, padding=1, data_format="NCHW", use_bias=False),
     (1, 2, 9, 9), F.conv2d),
    (L.Conv3D, dict(filters=2, kernel_size=2, activation="tanh"), (1, 4, 5, 3, 2), F.conv3d),
]


@pytest.mark.parametrize("cls,kwargs,shape,op", CONV_CASES)
def test_conv_layers_equal_functional_conv(cls, kwargs, shape, op):
    x = _x(shape)
    variables, y = _init_apply(cls(**kwargs), x)
    p = variables["params"]
    expected = op(x, p["kernel"], p.get("bias"), strides=kwargs.get("strides", 1),
                  padding=kwargs.get("padding", "valid"), dilation=kwargs.get("dilation_rate", 1),
                  groups=kwargs.get("groups", 1), data_format=kwargs.get("data_format", "channels_last"))
    expected = F.get_activation(kwargs.get("activation"))(expected)
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)
    assert ("bias" in p) == kwargs.get("use_bias", True)


def test_conv2d_on_the_lecture_image():
    # SEED_EXAMPLES Convolution 1: [[1,2,3],[4,5,6],[7,8,9]], 2x2 kernel of ones.
    x = jnp.arange(1.0, 10.0).reshape(1, 3, 3, 1)
    layer = L.Conv2D(1, 2, use_bias=False, kernel_init=jax.nn.initializers.ones)
    _, y = _init_apply(layer, x)
    assert y[0, :, :, 0].tolist() == [[12, 16], [24, 28]]
    _, y = _init_apply(layer.clone(padding="same"), x)
    assert y[0, :, :, 0].tolist() == [[12, 16, 9], [24, 28, 15], [15, 17, 9]]


def test_depthwise_conv_is_grouped_conv():
    x = _x((2, 7, 7, 3))
    variables, y = _init_apply(L.DepthwiseConv2D(3, depth_multiplier=2, padding="same"), x)
    p = variables["params"]
    assert p["kernel"].shape == (3, 3, 1, 6)
    np.testing.assert_allclose(y, F.conv2d(x, p["kernel"], p["bias"], padding="same", groups=3), rtol=1e-6)
    # Output channel c * M + m sees only input channel c: zeroing channel 1 changes only outputs 2 and 3.
    y2 = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same").apply(variables, x.at[..., 1].set(0.0))
    changed = np.abs(np.asarray(y2 - y)).max(axis=(0, 1, 2)) > 0
    assert changed.tolist() == [False, False, True, True, False, False]


@pytest.mark.parametrize("padding,strides,expected", [("valid", 2, 15), ("same", 2, 14), ("valid", 1, 9)])
def test_conv_transpose_equals_functional_and_keras_size(padding, strides, expected):
    x = _x((1, 7, 7, 3))
    variables, y = _init_apply(L.Conv2DTranspose(4, 3, strides=strides, padding=padding), x)
    p = variables["params"]
    assert p["kernel"].shape == (3, 3, 3, 4)
    assert y.shape == (1, expected, expected, 4)   # valid: n*s + max(k - s, 0); same: n*s
    np.testing.assert_allclose(y, F.conv_transpose(x, p["kernel"], p["bias"], strides=strides, padding=padding),
                               rtol=1e-6, atol=1e-6)


POOL_CASES = [
    (L.MaxPooling2D, {}, (2, 8, 8, 3), lambda x: F.max_pool(x, (2, 2))),
    (L.MaxPool1D, dict(pool_size=3, strides=1, padding="same"), (2, 7, 2),
     lambda x: F.max_pool(x, (3,), (1,), "same")),
    (L.AveragePooling2D, dict(pool_size=3, strides=2, padding="same"), (1, 7, 7, 2),
     lambda x: F.avg_pool(x, (3, 3), (2, 2), "same")),
    (L.AvgPool2D, dict(pool_size=3, strides=2, padding="same", count_include_pad=True), (1, 7, 7, 2),
     lambda x: F.avg_pool(x, (3, 3), (2, 2), "same", count_include_pad=True)),
    (L.MinPooling2D, dict(pool_size=2, ceil_mode=True), (1, 5, 5, 2), lambda x: F.min_pool(x, (2, 2), ceil_mode=True)),
    (L.MaxPooling3D, dict(data_format="channels_first"), (1, 2, 4, 4, 4),
     lambda x: F.max_pool(x, (2, 2, 2), data_format="channels_first")),
    (L.GlobalAveragePooling2D, {}, (2, 5, 4, 3), F.global_avg_pool),
    (L.GlobalMaxPool2D, dict(keepdims=True), (2, 5, 4, 3), lambda x: F.global_max_pool(x, keepdims=True)),
    (L.GlobalAvgPool1D, dict(data_format="channels_first"), (2, 3, 5),
     lambda x: F.global_avg_pool(x, data_format="channels_first")),
    (L.ChannelMaxPool, dict(pool_size=3), (2, 4, 4, 6), lambda x: F.channel_max_pool(x, 3)),
    (L.Flatten, {}, (2, 3, 4, 5), F.flatten),
    (L.Activation, dict(activation="softmax"), (2, 5), jax.nn.softmax),
]


@pytest.mark.parametrize("cls,kwargs,shape,op", POOL_CASES)
def test_parameter_free_layers_equal_functional(cls, kwargs, shape, op):
    x = _x(shape)
    variables, y = _init_apply(cls(**kwargs), x)
    assert cnnjax.count_params(variables) == 0
    np.testing.assert_allclose(y, op(x), rtol=1e-6, atol=1e-6)


def test_pool_defaults_follow_keras_not_flax():
    # Keras: pool_size 2, strides = pool_size, valid. The lecture: [[1,1,2,4],[5,6,7,8],[3,2,1,0],[1,2,3,4]].
    x = jnp.array([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]], jnp.float32).reshape(1, 4, 4, 1)
    _, y = _init_apply(L.MaxPool2D(), x)
    assert y[0, :, :, 0].tolist() == [[6, 8], [3, 4]]
    assert L.MaxPool2D is L.MaxPooling2D and L.AvgPool2D is L.AveragePooling2D


def test_dense_equals_functional_and_keras_init():
    x = _x((3, 200))
    variables, y = _init_apply(L.Dense(300, activation="relu"), x)
    p = variables["params"]
    np.testing.assert_allclose(y, jax.nn.relu(F.dense(x, p["kernel"], p["bias"])), rtol=1e-6)
    # glorot uniform: U(-limit, limit), limit = sqrt(6 / (fan_in + fan_out)); variance limit^2 / 3.
    limit = math.sqrt(6 / (200 + 300))
    kernel = np.asarray(p["kernel"])
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.95 * limit
    assert abs(kernel.var() / (limit ** 2 / 3) - 1) < 0.05
    assert not np.asarray(p["bias"]).any()


def test_conv_kernel_init_is_glorot_uniform_over_receptive_field():
    variables = L.Conv2D(64, 3).init(KEY, jnp.zeros((1, 8, 8, 32)))
    kernel = np.asarray(variables["params"]["kernel"])
    limit = math.sqrt(6 / (9 * 32 + 9 * 64))    # fans include the 3x3 receptive field, as in Keras
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.95 * limit


def test_dense_acts_on_last_axis():
    x = _x((2, 4, 4, 3))
    variables, y = _init_apply(L.Dense(5), x)
    assert y.shape == (2, 4, 4, 5)
    p = jax.tree.map(np.asarray, variables["params"])
    np.testing.assert_allclose(y, np.asarray(x) @ p["kernel"] + p["bias"], rtol=1e-5, atol=1e-5)


def test_dropout_is_identity_unless_training():
    x = jnp.ones((4, 1000))
    layer = L.Dropout(0.3)
    variables, y = _init_apply(layer, x)
    assert variables == {} or cnnjax.count_params(variables) == 0
    np.testing.assert_array_equal(y, x)
    y1 = layer.apply(variables, x, train=True, rngs={"dropout": jax.random.key(1, impl="rbg")})
    y2 = layer.apply(variables, x, train=True, rngs={"dropout": jax.random.key(2, impl="rbg")})
    values = np.unique(np.asarray(y1))
    assert len(values) == 2 and values[0] == 0.0 and np.isclose(values[1], 1 / 0.7)
    assert abs(float((y1 == 0).mean()) - 0.3) < 0.03
    assert bool((y1 != y2).any())


def test_batch_norm_train_and_eval_equal_functional():
    x = _x((8, 3, 3, 4)) * 3 + 1
    layer = L.BatchNormalization(momentum=0.9)
    variables = layer.init(KEY, x)
    assert variables["batch_stats"]["mean"].shape == (4,)
    # eval: the running statistics (zeros / ones at init)
    y = layer.apply(variables, x)
    np.testing.assert_allclose(y, F.batch_norm(x, jnp.zeros(4), jnp.ones(4), jnp.ones(4), jnp.zeros(4),
                                               epsilon=1e-3, axis=3), rtol=1e-6)
    # train: batch statistics, and the running ones move by momentum (NumPy reference for the moments)
    y, updates = layer.apply(variables, x, train=True, mutable=["batch_stats"])
    xn = np.asarray(x, np.float64)
    mean, var = xn.mean(axis=(0, 1, 2)), xn.var(axis=(0, 1, 2))
    np.testing.assert_allclose(y, (xn - mean) / np.sqrt(var + 1e-3), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(updates["batch_stats"]["mean"], 0.1 * mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(updates["batch_stats"]["var"], 0.9 + 0.1 * var, rtol=1e-5)


def test_batch_norm_bfloat16_gradient_tracks_float32():
    """A bfloat16 BatchNorm's input gradient is the float32 one (to bfloat16 rounding), also for a channel whose
    variance is tiny against its mean, where the gradient's three terms (through x, the mean and the variance)
    are large and cancel: summed in bfloat16 they gave gradients ~1000x too large (the MNIST speedrun diverged)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 4, 4, 3)).astype(np.float32)
    x[..., 0] = 1.0 + 0.01 * x[..., 0]                     # std 0.01 around 1: bfloat16 steps are 0.0078 there
    x = jnp.asarray(x, jnp.bfloat16)                       # the same rounded input for both
    w = jnp.asarray(rng.normal(size=x.shape), jnp.float32)
    layer = L.BatchNormalization(epsilon=1e-12, scale=False)
    variables = layer.init(KEY, x)

    def grad(dtype):
        def loss(v):
            y, _ = layer.clone(dtype=dtype).apply(variables, v, train=True, mutable=["batch_stats"])
            return jnp.sum(y.astype(jnp.float32) * w)
        return np.asarray(jax.grad(loss)(x.astype(dtype)), np.float32)

    g32, g16 = grad(jnp.float32), grad(jnp.bfloat16)
    scale = np.abs(g32).max(axis=(0, 1, 2))
    np.testing.assert_array_less(np.abs(g16 - g32).max(axis=(0, 1, 2)), 0.02 * scale)


def test_batch_norm_channels_first_axis():
    x = _x((4, 3, 5, 5))
    variables = L.BatchNorm(axis=1).init(KEY, x)
    y, _ = L.BatchNorm(axis=1).apply(variables, x, train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(np.asarray(y).mean(axis=(0, 2, 3)), 0, atol=1e-5)


def test_sequential_passes_train_to_layers_that_take_it():
    model = L.Sequential([L.Dense(8), jax.nn.relu, L.Dropout(0.5), L.BatchNorm(), L.Dense(2)])
    x = _x((16, 4))
    variables = model.init(KEY, x)
    assert set(variables["params"]) == {"layers_0", "layers_3", "layers_4"}
    eval_1, eval_2 = model.apply(variables, x), model.apply(variables, x)
    np.testing.assert_array_equal(eval_1, eval_2)
    train, updates = model.apply(variables, x, train=True, rngs={"dropout": KEY}, mutable=["batch_stats"])
    assert not np.allclose(train, eval_1)
    assert not np.allclose(updates["batch_stats"]["layers_3"]["mean"], 0)


def test_mixed_precision_keeps_float32_params():
    x = _x((2, 8, 8, 3))
    layer = L.Conv2D(4, 3, dtype=jnp.bfloat16)
    variables, y = _init_apply(layer, x)
    assert y.dtype == jnp.bfloat16
    assert variables["params"]["kernel"].dtype == jnp.float32
    p = variables["params"]
    expected = F.conv2d(x, p["kernel"], p["bias"])
    np.testing.assert_allclose(np.asarray(y, np.float32), expected, rtol=0.05, atol=0.05)
    _, y = _init_apply(L.Dense(3, dtype=jnp.bfloat16), x)
    assert y.dtype == jnp.bfloat16


# ---------------------------------------------------------------------------------------- errors at init
@pytest.mark.parametrize("layer,shape,exc,match", [
    (L.Conv2D(8, 3, activation="relu7"), (1, 8, 8, 1), ValueError, r"Conv2D: activation='relu7'.*relu6"),
    (L.Dense(-3), (1, 4), ValueError, r"Dense: units must be an int >= 1, got -3\."),
    (L.Dense(2.5), (1, 4), TypeError, r"Dense: units"),
    (L.Conv2D(8, 3), (8, 8, 1), ValueError, r"Conv2D: input of shape \(8, 8, 1\) has rank 3.*rank 4"),
    (L.Conv1D(8, 3), (1, 8, 8, 1), ValueError, r"Conv1D: .*rank 3"),
    (L.Conv2D(8, (3, 3, 3)), (1, 8, 8, 1), ValueError, r"Conv2D: kernel_size=\(3, 3, 3\)"),
    (L.Conv2D(0, 3), (1, 8, 8, 1), ValueError, r"Conv2D: filters must be an int >= 1, got 0\."),
    (L.Conv2D(8, 3, groups=3), (1, 8, 8, 4), ValueError, r"Conv2D: groups=3"),
    (L.Conv2D(8, 5), (1, 3, 3, 1), ValueError, r"conv2d: kernel 5x5 .* larger than the padded input 3x3"),
    (L.Conv2D(8, 3, padding="full"), (1, 8, 8, 1), ValueError, r"padding='full'"),
    (L.Conv2D(8, 3, data_format="NWC"), (1, 8, 8, 1), ValueError, r"data_format='NWC'"),
    (L.MaxPooling2D(), (1, 8, 1), ValueError, r"MaxPooling2D: .*rank 4"),
    (L.MaxPooling2D(pool_size=0), (1, 8, 8, 1), ValueError, r"pool_size=0"),
    (L.GlobalAveragePooling2D(), (1, 8, 1), ValueError, r"GlobalAveragePooling2D: .*rank 4"),
    (L.Dropout(1.5), (1, 4), ValueError, r"dropout: rate=1.5"),
    (L.BatchNorm(axis=4), (1, 4, 4, 2), ValueError, r"BatchNormalization: axis=4"),
    (L.Sequential([]), (1, 4), ValueError, r"Sequential: layers"),
    (L.Activation("nope"), (1, 4), ValueError, r"Activation: activation='nope'"),
])
def test_bad_configurations_raise_clear_errors_at_init(layer, shape, exc, match):
    with pytest.raises(exc, match=match):
        layer.init(KEY, jnp.zeros(shape))


def test_sequential_names_a_member_that_is_not_a_layer():
    with pytest.raises(TypeError, match=r"Sequential: layer 1 is int 5, not a layer \(a flax Module or a callable\)"):
        L.Sequential([L.Dense(3), 5]).init(KEY, jnp.ones((2, 3)))
    _, y = _init_apply(L.Sequential([L.Dense(3), jax.nn.relu]), jnp.ones((2, 3)))     # functions stay layers
    assert y.shape == (2, 3)


@pytest.mark.parametrize("layer,shape", [
    (L.Conv2D(4, 3, dtype="float33"), (1, 5, 5, 1)),
    (L.DepthwiseConv2D(3, dtype="float33"), (1, 5, 5, 1)),
    (L.Conv2DTranspose(4, 3, dtype="float33"), (1, 5, 5, 1)),
    (L.Dense(3, dtype="float33"), (1, 4)),
])
def test_a_dtype_that_is_not_a_dtype_names_the_layer(layer, shape):
    name = type(layer).__name__
    with pytest.raises(ValueError, match=rf"^{name}: dtype='float33' is not a dtype; use e\.g\. 'float32', "
                                         r"'bfloat16' or 'float16'\."):
        layer.init(KEY, jnp.zeros(shape))
    with pytest.raises(ValueError, match=rf"^{name}: dtype='int32' is not a floating-point dtype"):
        layer.clone(dtype="int32").init(KEY, jnp.zeros(shape))
    with pytest.raises(ValueError, match=r"^Conv2D: dtype='float33'"):         # inside a Sequential too
        L.Sequential([L.Conv2D(4, 3, dtype="float33")]).init(KEY, jnp.zeros((1, 5, 5, 1)))


@pytest.mark.parametrize("epsilon", [-1.0, 0.0, float("nan"), "1e-3"])
def test_batch_norm_epsilon_must_be_positive(epsilon):
    """epsilon=-1 gave NaN outputs: sqrt(var - 1) of a variance below 1."""
    with pytest.raises(ValueError, match=r"BatchNormalization: epsilon=.* must be a finite number > 0"):
        L.BatchNormalization(epsilon=epsilon).init(KEY, jnp.ones((2, 3)))


def test_uint8_input_gets_the_functional_type_error():
    with pytest.raises(TypeError, match=r"uint8.*astype"):
        L.Conv2D(2, 3).init(KEY, jnp.zeros((1, 5, 5, 1), jnp.uint8))


def test_conv1d_transpose_inverts_conv1d_shape():
    x = _x((2, 6, 3))
    variables, y = _init_apply(L.Conv1DTranspose(2, 4, strides=3), x)      # 6*3 + max(4 - 3, 0) = 19
    p = variables["params"]
    assert y.shape == (2, 19, 2)
    np.testing.assert_allclose(y, F.conv_transpose(x, p["kernel"], p["bias"], strides=3), rtol=1e-6, atol=1e-6)
    assert L.Conv1D(3, 4, strides=3).apply(L.Conv1D(3, 4, strides=3).init(KEY, y), y).shape == x.shape


def test_layers_under_jit_and_grad():
    model = L.Sequential([L.Conv2D(4, 3, padding="same", activation="relu"), L.BatchNorm(), L.MaxPool2D(),
                          L.Flatten(), L.Dense(3)])
    x = _x((4, 6, 6, 2))
    variables = model.init(KEY, x)

    def loss(params):
        logits, _ = model.apply({**variables, "params": params}, x, train=True, mutable=["batch_stats"])
        return F.softmax_cross_entropy(logits, jnp.array([0, 1, 2, 0])).mean()

    grads = jax.jit(jax.grad(loss))(variables["params"])
    assert jax.tree_util.tree_structure(grads) == jax.tree_util.tree_structure(variables["params"])
    assert all(bool(jnp.isfinite(g).all()) for g in jax.tree_util.tree_leaves(grads))
    assert float(jnp.abs(grads["layers_0"]["kernel"]).sum()) > 0
