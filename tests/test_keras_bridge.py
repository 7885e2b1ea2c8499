"""cnnjax.keras_bridge against Keras itself: converted models compute what the Keras model computes.

Keras runs on whatever backend the process already has (TensorFlow by default; the tests pass with
``KERAS_BACKEND=jax`` too); outputs are read with ``keras.ops.convert_to_numpy``. Every Keras weight is set to random values first (not Keras' zero biases and unit
statistics), so that a weight read in the wrong layout or into the wrong place shows.
"""
import ast
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

keras = pytest.importorskip("keras")

from cnnjax import keras_bridge  # noqa: E402
from cnnjax.keras_bridge import from_keras, to_keras  # noqa: E402
from cnnjax.model_summary import layer_table  # noqa: E402

KL = keras.layers
TOL = dict(rtol=1e-4, atol=1e-5)


def _randomize(keras_model, seed):
    """Every weight random: normal, except variances (uniform in [0.5, 1.5], they must be positive)."""
    rng = np.random.default_rng(seed)
    for w in keras_model.weights:
        shape = tuple(w.shape)
        if "variance" in w.name:
            w.assign(rng.uniform(0.5, 1.5, shape).astype("float32"))
        else:
            w.assign((0.5 * rng.standard_normal(shape)).astype("float32"))
    return keras_model


def _keras_run(fn, *args, **kwargs):
    """``fn(*args)`` of Keras, as NumPy; rank promotion allowed (Keras' JAX backend broadcasts biases by rank, which
    the suite's strict setting refuses; cnnjax's own calls stay strict)."""
    with jax.numpy_rank_promotion("allow"):
        return keras.ops.convert_to_numpy(fn(*args, **kwargs))


def _keras_out(keras_model, x):
    return _keras_run(keras_model, x, training=False)


def _assert_same(keras_model, x, converted=None):
    """from_keras(keras_model) (or ``converted``) applied to x equals keras_model(x); returns (model, variables)."""
    model, variables = converted or from_keras(keras_model)
    got = jax.jit(model.apply)(variables, jnp.asarray(x))        # one compile: faster than op by op
    np.testing.assert_allclose(np.asarray(got), _keras_out(keras_model, x), **TOL)
    return model, variables


def _total_params(model, input_shape):
    table = layer_table(model, input_shape)
    return table["trainable"] + table["non_trainable"]


def test_lecture_mnist_cnn_matches_keras_and_its_summary():
    # The notes' MNIST example 1, as Keras code (SEED_EXAMPLES.md, "Models"), with its final softmax.
    km = _randomize(keras.Sequential([
        keras.Input((28, 28, 1)), KL.Conv2D(32, (3, 3), activation="relu"), KL.MaxPooling2D((2, 2)), KL.Flatten(),
        KL.Dense(128, activation="relu"), KL.Dense(10, activation="softmax")]), seed=0)
    x = np.random.default_rng(1).uniform(0, 1, (2, 28, 28, 1)).astype("float32")
    model, variables = _assert_same(km, x)
    table = layer_table(model, (28, 28, 1))
    assert [(r["type"], r["output_shape"][1:], r["trainable"] + r["non_trainable"]) for r in table["rows"]] == [
        (type(layer).__name__, tuple(layer.output.shape[1:]), layer.count_params()) for layer in km.layers]
    assert table["trainable"] == km.count_params() == 693_962   # the notes' total


def _random_stack(rng, functional):
    """A Keras model of 2-5 random layers on a small image, then a head; square spatial size tracked."""
    size, channels = int(rng.integers(7, 11)), int(rng.integers(1, 4))
    inp = keras.Input((size, size, channels))
    made = []
    for _ in range(int(rng.integers(2, 6))):
        kind = rng.choice(["conv", "conv", "pool", "bn", "depthwise", "transpose", "act", "dropout"])
        padding = str(rng.choice(["valid", "same"]))
        if kind in ("conv", "depthwise"):
            k = int(rng.integers(1, 4))
            dilation = int(rng.integers(1, 3)) if k > 1 else 1
            strides = 1 if dilation > 1 else int(rng.integers(1, 3))
            k_eff = dilation * (k - 1) + 1
            if padding == "valid" and k_eff > size:
                padding = "same"
            size = -(-size // strides) if padding == "same" else (size - k_eff) // strides + 1
            act = str(rng.choice(["relu", "tanh", "gelu", "linear"]))
            if kind == "conv":
                made.append(KL.Conv2D(int(rng.integers(1, 5)), k, strides=strides, padding=padding,
                                      dilation_rate=dilation, activation=act, use_bias=bool(rng.integers(2))))
            else:
                made.append(KL.DepthwiseConv2D(k, strides=strides, padding=padding, dilation_rate=dilation,
                                               depth_multiplier=int(rng.integers(1, 3)), activation=act))
        elif kind == "pool" and size >= 2:
            strides = int(rng.integers(1, 3))
            size = -(-size // strides) if padding == "same" else (size - 2) // strides + 1
            pool = KL.MaxPooling2D if rng.integers(2) else KL.AveragePooling2D
            made.append(pool(2, strides=strides, padding=padding))
        elif kind == "bn":
            made.append(KL.BatchNormalization(epsilon=float(rng.choice([1e-3, 1e-5]))))
        elif kind == "transpose" and size <= 8:
            k, strides = int(rng.integers(1, 4)), int(rng.integers(1, 3))
            size = size * strides if padding == "same" else size * strides + max(k - strides, 0)
            made.append(KL.Conv2DTranspose(int(rng.integers(1, 4)), k, strides=strides, padding=padding))
        elif kind == "act":
            made.append([lambda: KL.ReLU(), lambda: KL.ReLU(max_value=6.0), lambda: KL.LeakyReLU(0.1),
                         lambda: KL.ELU(0.5), lambda: KL.Activation("selu")][int(rng.integers(5))]())
        elif kind == "dropout":
            made.append(KL.Dropout(0.3))
    head = [KL.Flatten(), KL.Dense(3)] if rng.integers(2) else [KL.GlobalMaxPooling2D(), KL.Dense(3, "softmax")]
    made += head
    if functional:
        out = inp
        for layer in made:
            out = layer(out)
        return keras.Model(inp, out), tuple(inp.shape[1:])
    return keras.Sequential([inp, *made]), tuple(inp.shape[1:])


@pytest.mark.parametrize("seed", range(5))
def test_random_stacks_match_keras(seed):
    rng = np.random.default_rng(100 + seed)
    km, input_shape = _random_stack(rng, functional=seed % 2 == 1)
    _randomize(km, seed)
    x = rng.standard_normal((2, *input_shape)).astype("float32")
    model, variables = _assert_same(km, x)
    assert _total_params(model, input_shape) == km.count_params()


@pytest.mark.parametrize("flatten_format", ["channels_last", "channels_first"])
def test_channels_first_stack_and_both_flatten_orders(flatten_format):
    # Keras' Flatten flattens (C, H, W) after channels_first layers unless it is itself channels_first, which moves
    # the channels last first: the Dense after it sees the features in another order in each case.
    # Shapes chosen so that no biased layer's output is as wide as it has channels: there Keras 3.15's TensorFlow
    # backend adds a channels_first bias along the width (keras.ops.add's bias_add shortcut picks NHWC whenever the
    # last axis has as many entries as the bias), which is a Keras bug, not the definition.
    cf = dict(data_format="channels_first")
    km = _randomize(keras.Sequential([
        keras.Input((3, 12, 10)), KL.Conv2D(4, 3, strides=(2, 1), padding="same", activation="relu", **cf),
        KL.BatchNormalization(axis=1), KL.MaxPooling2D(2, **cf), KL.DepthwiseConv2D(2, depth_multiplier=2, **cf),
        KL.AveragePooling2D(2, strides=1, padding="same", **cf), KL.Flatten(data_format=flatten_format),
        KL.Dense(5)]), seed=3)
    for layer in km.layers:
        shape = layer.output.shape
        assert len(shape) == 2 or shape[-1] != shape[1], layer.name      # see above
    x = np.random.default_rng(4).standard_normal((2, 3, 12, 10)).astype("float32")
    model, _ = _assert_same(km, x)
    assert (keras_bridge.channels_first_to_last in model.layers) == (flatten_format == "channels_first")
    assert _total_params(model, (3, 12, 10)) == km.count_params()


def test_one_and_three_dimensional_layers_match_keras():
    i1 = keras.Input((12, 2))
    h = KL.Conv1D(3, 3, padding="causal", dilation_rate=2, activation="elu")(i1)
    h = KL.MaxPooling1D(2)(KL.Conv1DTranspose(2, 3, strides=2)(h))
    m1 = keras.Model(i1, KL.GlobalAveragePooling1D()(h))
    rng = np.random.default_rng(5)
    _assert_same(_randomize(m1, 5), rng.standard_normal((2, 12, 2)).astype("float32"))
    m3 = _randomize(keras.Sequential([keras.Input((5, 6, 5, 2)), KL.Conv3D(3, 2, padding="same"),
                                      KL.AveragePooling3D(2), KL.GlobalMaxPooling3D(keepdims=True)]), 6)
    _assert_same(m3, rng.standard_normal((2, 5, 6, 5, 2)).astype("float32"))


def test_activations_equal_keras_definitions():
    x = np.linspace(-4, 4, 24, dtype="float32").reshape(2, 12)
    for name in keras_bridge.ACTIVATION_NAMES:
        km = keras.Sequential([keras.Input((12,)), KL.Activation(name)])
        model, variables = from_keras(km)
        expected = _keras_run(keras.activations.get(name), x)
        np.testing.assert_allclose(np.asarray(model.apply(variables, x)), expected, rtol=1e-5, atol=1e-6,
                                   err_msg=name)


def test_keras_file_round_trip(tmp_path):
    km = _randomize(keras.Sequential([keras.Input((6, 6, 2)), KL.Conv2D(3, 3, activation="relu"),
                                      KL.BatchNormalization(), KL.Flatten(), KL.Dense(4)]), seed=7)
    path = tmp_path / "model.keras"
    km.save(path)
    x = np.random.default_rng(8).standard_normal((3, 6, 6, 2)).astype("float32")
    for source in (path, str(path)):
        _assert_same(km, x, from_keras(source))


def test_to_keras_writes_cnnjax_variables_back():
    km = keras.Sequential([
        keras.Input((7, 7, 2)), KL.Conv2DTranspose(3, 3, strides=2, padding="same"),
        keras.Sequential([KL.DepthwiseConv2D(3, depth_multiplier=2), KL.BatchNormalization()]),  # nested
        KL.Activation("relu"), KL.Flatten(), KL.Dense(4)])
    model, variables = from_keras(km)
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 7, 7, 2)).astype("float32")
    # New variables, none equal to Keras' (variances stay positive).
    fresh = jax.tree_util.tree_map(lambda a: jnp.asarray(rng.uniform(0.5, 1.5, a.shape), jnp.float32), variables)
    returned = to_keras(fresh, km)
    assert returned is km
    _assert_same(km, x, (model, fresh))
    back = from_keras(km)[1]                        # and read back: the same numbers
    jax.tree_util.tree_map(np.testing.assert_array_equal, back, jax.tree_util.tree_map(np.asarray, fresh))


def test_to_keras_takes_a_train_state():
    from cnnjax.train import TrainState
    km = keras.Sequential([keras.Input((5,)), KL.Dense(3), KL.BatchNormalization()])
    model, variables = from_keras(km)
    rng = np.random.default_rng(10)
    new = jax.tree_util.tree_map(lambda a: jnp.asarray(rng.uniform(0.5, 1.5, a.shape), jnp.float32), variables)
    state = TrainState(step=jnp.zeros((), jnp.int32), params=new["params"], opt_state=None,
                       batch_stats=new["batch_stats"], rng=jax.random.key(0))
    to_keras(state, km)
    _assert_same(km, rng.standard_normal((2, 5)).astype("float32"), (model, new))


# ------------------------------------------------------------------------------------------------ clear errors
def test_unsupported_layers_options_and_graphs_are_named():
    with pytest.raises(NotImplementedError, match=r"'pad' \(ZeroPadding2D\) has no cnnjax equivalent"):
        from_keras(keras.Sequential([keras.Input((4, 4, 1)), KL.ZeroPadding2D(name="pad")]))
    with pytest.raises(ValueError, match=r"'up' \(Conv2DTranspose\) has output_padding=\(1, 1\)"):
        from_keras(keras.Sequential([keras.Input((4, 4, 1)),
                                     KL.Conv2DTranspose(2, 3, strides=2, output_padding=1, name="up")]))
    with pytest.raises(ValueError, match=r"'d' \(Dense\) has activation='mish'.*supported: elu"):
        from_keras(keras.Sequential([keras.Input((3,)), KL.Dense(2, activation="mish", name="d")]))
    with pytest.raises(ValueError, match=r"'r' \(ReLU\) has threshold=0.5"):
        from_keras(keras.Sequential([keras.Input((3,)), KL.ReLU(threshold=0.5, name="r")]))
    inp = keras.Input((3,))
    a = KL.Dense(2, name="a")(inp)
    out = KL.Add(name="add")([a, KL.Dense(2, name="b")(inp)])
    with pytest.raises(NotImplementedError, match=r"'b' \(Dense\) does not take the previous layer's output"):
        from_keras(keras.Model(inp, out))
    with pytest.raises(ValueError, match=r"'h' \(Dense\) has dtype policy='mixed_float16'"):
        from_keras(keras.Sequential([keras.Input((3,)), KL.Dense(2, dtype="mixed_float16", name="h")]))

    class Sub(keras.Model):
        def __init__(self):
            super().__init__(name="sub")
            self.dense = KL.Dense(2)

        def call(self, x):
            return self.dense(x)

    sub = Sub()
    _keras_run(sub, np.zeros((1, 3), "float32"))
    with pytest.raises(NotImplementedError, match="'sub' .*is a subclassed model"):
        from_keras(sub)
    with pytest.raises(ValueError, match="is not built"):
        from_keras(keras.Sequential([KL.Dense(2)]))
    with pytest.raises(FileNotFoundError, match="no Keras model file at '.*missing.keras'"):
        from_keras("missing.keras")
    with pytest.raises(TypeError, match="expected a Keras 3 model.*got int"):
        from_keras(3)


def test_to_keras_checks_shapes_and_entries():
    km = keras.Sequential([keras.Input((4, 4, 2)), KL.Conv2D(3, 2, name="c"), KL.Flatten(), KL.Dense(2)])
    model, variables = from_keras(km)
    _, wrong = from_keras(keras.Sequential([keras.Input((4, 4, 2)), KL.Conv2D(5, 2), KL.Flatten(), KL.Dense(2)]))
    before = [w.numpy().copy() for w in km.weights]
    with pytest.raises(ValueError, match=r"'c' \(Conv2D\)'s 'kernel' has shape \(2, 2, 2, 3\), .* has shape "
                                         r"\(2, 2, 2, 5\)"):
        to_keras(wrong, km)
    assert all(np.array_equal(w.numpy(), b) for w, b in zip(km.weights, before))   # nothing written
    extra = {"params": {**variables["params"], "layers_9": {"kernel": jnp.zeros(1)}}}
    with pytest.raises(ValueError, match=r"entries \['layers_9'\]"):
        to_keras(extra, km)
    with pytest.raises(ValueError, match=r"variables\['params'\]\['layers_2'\]\['kernel'\] is missing.*"
                                         r"'dense.*' \(Dense\)'s 'kernel'"):
        to_keras({"params": {"layers_0": variables["params"]["layers_0"]}}, km)
    with pytest.raises(TypeError, match="keras_model must be a Keras model object"):
        to_keras(variables, "model.keras")
    with pytest.raises(TypeError, match="variables must be the dict"):
        to_keras([1, 2], km)


def test_module_imports_keras_only_inside_functions():
    # cnnjax must import without Keras: no module-level import of keras or tensorflow.
    tree = ast.parse(inspect.getsource(keras_bridge))
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = [a.name for n in top for a in n.names] + [n.module for n in top if isinstance(n, ast.ImportFrom)]
    assert not [n for n in names if n and n.split(".")[0] in ("keras", "tensorflow")]
