"""cnnjax.models: every model inits, runs at its input shape, and has the parameter count that the shape
formulas give (written here layer by layer from each architecture's description, not read from the code)."""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cnnjax
from cnnjax import models
from cnnjax import shapes as S
from cnnjax.params import count_variables

KEY = jax.random.key(0, impl="rbg")   # rbg: much faster to compile on CPU than threefry, for each param shape


def _abstract_counts(model, input_shape):
    """(trainable, non-trainable) from jax.eval_shape: no parameter is materialised."""
    x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(KEY, x), x)
    return count_variables(variables)


# ------------------------------------------------------------------ expected counts from the shape formulas
def _pool(n):
    return S.pool_output_size(n, 2)


def _bn(c):
    return 2 * c          # scale and bias; the running mean and var are another 2 * c, non-trainable


def _resnet(stage_sizes, widths, projection):
    trainable = S.conv_params(3, 3, widths[0], use_bias=False) + _bn(widths[0])
    channels, non_trainable = widths[0], 2 * widths[0]
    for stage, (blocks, width) in enumerate(zip(stage_sizes, widths)):
        for block in range(blocks):
            trainable += 2 * _bn(width) + S.conv_params(3, channels, width, use_bias=False)
            trainable += S.conv_params(3, width, width, use_bias=False)
            non_trainable += 4 * width
            if projection and (channels != width or (stage > 0 and block == 0)):
                trainable += S.conv_params(1, channels, width, use_bias=False) + _bn(width)
                non_trainable += 2 * width
            channels = width
    return trainable + S.dense_params(channels, 10), non_trainable


def _vgg(blocks):
    trainable, non_trainable, channels = 0, 0, 3
    for block in blocks:
        for filters in block:
            trainable += S.conv_params(3, channels, filters, use_bias=False) + _bn(filters)
            non_trainable += 2 * filters
            channels = filters
    return trainable + S.dense_params(channels, 10), non_trainable


EXPECTED = {
    # Conv2D(32,3) 28->26, pool ->13, Flatten 13*13*32, Dense(128), Dense(10)
    "mnist_cnn": (S.conv_params(3, 1, 32) + S.dense_params(_pool(26) ** 2 * 32, 128) + S.dense_params(128, 10), 0),
    "mnist_cnn2": (S.conv_params(3, 1, 32) + S.conv_params(3, 32, 64)
                   + S.dense_params(_pool(S.conv_output_size(_pool(26), 3)) ** 2 * 64, 64)
                   + S.dense_params(64, 10), 0),
    "cifar10_cnn": (S.conv_params(3, 3, 32) + S.dense_params(_pool(30) ** 2 * 32, 512) + S.dense_params(512, 10), 0),
    "fashion_dnn": (S.dense_params(28 * 28, 128) + S.dense_params(128, 10), 0),
    # 28 -conv-> 26 -pool-> 13 -conv-> 11 -pool-> 5 -conv-> 3
    "fashion_cnn": (S.conv_params(3, 1, 32) + S.conv_params(3, 32, 64) + S.conv_params(3, 64, 64)
                    + S.dense_params(3 * 3 * 64, 64) + S.dense_params(64, 10), 0),
    # C1 5x5x1x6, C3 5x5x6x16 (fully connected), C5 5x5x16x120, F6 120->84, output 84->10
    "lenet5": (S.conv_params(5, 1, 6) + S.conv_params(5, 6, 16) + S.conv_params(5, 16, 120)
               + S.dense_params(120, 84) + S.dense_params(84, 10), 0),
    # whitening conv 2x2x3 -> 24 with bias; per block two bias-free 3x3 convs and two BN (bias only: 1 param and
    # 2 statistics per channel); bias-free Dense(10) on the last width
    "speedrun": (S.conv_params(2, 3, 24)
                 + sum(9 * a * b + 9 * b * b + 2 * b for a, b in zip((24, 64, 256), (64, 256, 256)))
                 + 256 * 10, 2 * 2 * (64 + 256 + 256)),
    # the same for one input channel: 2x2x1 -> 8 whitening filters, widths (32, 64, 64)
    "speedrun_mnist": (S.conv_params(2, 1, 8)
                       + sum(9 * a * b + 9 * b * b + 2 * b for a, b in zip((8, 32, 64), (32, 64, 64)))
                       + 64 * 10, 2 * 2 * (32 + 64 + 64)),
    "resnet20": _resnet((3, 3, 3), (16, 32, 64), projection=False),
    "resnet32": _resnet((5, 5, 5), (16, 32, 64), projection=False),
    "resnet56": _resnet((9, 9, 9), (16, 32, 64), projection=False),
    "resnet18": _resnet((2, 2, 2, 2), (64, 128, 256, 512), projection=True),
    "vgg11": _vgg(((64,), (128,), (256, 256), (512, 512), (512, 512))),
    "vgg16": _vgg(((64, 64), (128, 128), (256,) * 3, (512,) * 3, (512,) * 3)),
}


def test_registry_lists_the_zoo():
    required = {"mnist_cnn", "mnist_cnn2", "cifar10_cnn", "fashion_dnn", "fashion_cnn", "lenet5", "resnet20",
                "resnet18", "vgg11"}
    assert required <= set(models.names())
    assert set(models.names()) == set(EXPECTED)
    assert models.input_shape("mnist_cnn") == (28, 28, 1) and models.dataset("mnist_cnn") == "mnist"
    assert models.input_shape("resnet20") == (32, 32, 3) and models.dataset("resnet20") == "cifar10"
    assert models.dataset("fashion_cnn") == "fashion_mnist"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_param_count_equals_shape_formulas(name):
    trainable, non_trainable = _abstract_counts(models.get(name), models.input_shape(name))
    assert (trainable, non_trainable) == EXPECTED[name]
    assert models.info(name).params == trainable


def test_lecture_totals_and_published_counts():
    # The lecture's totals, and the published counts: ResNet-20 "0.27M" (He et al.), ResNet-18 for CIFAR
    # 11,173,962 (kuangliu/pytorch-cifar, which counts BN scale/bias but not the running statistics).
    assert EXPECTED["mnist_cnn"][0] == 693_962
    assert EXPECTED["mnist_cnn2"][0] == 121_930
    assert EXPECTED["cifar10_cnn"][0] == 3_692_938
    assert round(EXPECTED["resnet20"][0] / 1e6, 2) == 0.27
    assert EXPECTED["resnet18"][0] == 11_173_962


@pytest.mark.parametrize("kwargs,expected", [
    # strides=2: 28 -> floor((28-3)/2)+1 = 13 -> pool 6; padding="same": 28 -> 28 -> pool 14
    (dict(strides=2), S.conv_params(3, 1, 32) + S.dense_params(6 * 6 * 32, 128) + S.dense_params(128, 10)),
    (dict(padding="same"), S.conv_params(3, 1, 32) + S.dense_params(14 * 14 * 32, 128) + S.dense_params(128, 10)),
])
def test_mnist_cnn_variants(kwargs, expected):
    assert _abstract_counts(models.get("mnist_cnn", **kwargs), (28, 28, 1)) == (expected, 0)


def test_variants_are_partials_of_one_model():
    assert type(models.get("resnet20")) is type(models.get("resnet18")) is models.ResNet
    assert type(models.get("mnist_cnn")) is type(models.get("fashion_cnn")) is models.SimpleCNN
    assert isinstance(models.resnet20, functools.partial) and isinstance(models.vgg11, functools.partial)


def _forward(name, batch=2, **kwargs):
    model = models.get(name, **kwargs)
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(batch, *models.input_shape(name))), jnp.float32)
    variables = model.init(KEY, x)
    logits = model.apply(variables, x, train=False)
    assert logits.shape == (batch, 10) and logits.dtype == jnp.float32
    assert bool(jnp.isfinite(logits).all())
    return model, variables, x, logits


@pytest.mark.parametrize("name", ["mnist_cnn", "mnist_cnn2", "cifar10_cnn", "fashion_dnn", "fashion_cnn",
                                  "lenet5", "resnet20"])
def test_forward_at_input_shape(name):
    _forward(name)


@pytest.mark.slow
@pytest.mark.long   # outside README's test command (CI's 8 minutes); `pytest -m long` runs it
@pytest.mark.parametrize("name", ["resnet18", "vgg11"])
def test_forward_at_input_shape_large(name):
    _forward(name, batch=1)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_abstract_forward_of_every_model(name):
    # The whole model traced at its input shape in train and eval mode (jax.eval_shape: no FLOPs). The numeric
    # forward passes above cover each model family; resnet32/56 and vgg16 differ from them only in depth.
    model = models.get(name)
    x = jax.ShapeDtypeStruct((2, *models.input_shape(name)), jnp.float32)

    def run(x):
        variables = model.init(KEY, x)
        train, _ = model.apply(variables, x, train=True, rngs={"dropout": KEY}, mutable=["batch_stats"])
        return model.apply(variables, x), train

    logits, train_logits = jax.eval_shape(run, x)
    assert logits.shape == train_logits.shape == (2, 10)
    assert logits.dtype == train_logits.dtype == jnp.float32


def test_dropout_only_in_training():
    model, variables, x, logits = _forward("cifar10_cnn")
    again = model.apply(variables, x)
    np.testing.assert_array_equal(logits, again)
    trained = model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(1, impl="rbg")})
    assert not np.allclose(trained, logits)
    with pytest.raises(Exception, match="dropout"):
        model.apply(variables, x, train=True)        # no "dropout" rng: flax names the missing stream


def test_resnet_batch_stats_update_in_training():
    model, variables, x, logits = _forward("resnet20")
    assert set(variables) == {"params", "batch_stats"}
    train_logits, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
    before = jax.tree_util.tree_leaves(variables["batch_stats"])
    after = jax.tree_util.tree_leaves(updates["batch_stats"])
    assert len(before) == len(after) and any(not np.allclose(a, b) for a, b in zip(after, before))
    assert not np.allclose(train_logits, logits)


def test_softmax_option_gives_probabilities_with_the_same_params():
    model, variables, x, logits = _forward("mnist_cnn")
    probs = models.get("mnist_cnn", softmax=True).apply(variables, x)
    np.testing.assert_allclose(probs, jax.nn.softmax(logits), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-5)


def test_bfloat16_computation_with_float32_params():
    model, variables, x, logits = _forward("mnist_cnn")
    half = models.get("mnist_cnn", dtype=jnp.bfloat16)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(half.init(KEY, x)))
    half_logits = half.apply(variables, x)
    assert half_logits.dtype == jnp.float32
    np.testing.assert_allclose(half_logits, logits, rtol=0.05, atol=0.05)


def test_registry_errors():
    with pytest.raises(ValueError, match=r"unknown model name='resnet21'.*resnet20"):
        models.get("resnet21")
    with pytest.raises(TypeError, match=r"model 'mnist_cnn' has no argument 'stride'.*strides"):
        models.get("mnist_cnn", stride=2)


@pytest.mark.parametrize("model,shape,exc,match", [
    (models.SimpleCNN(conv_filters=(32, 64), pools=("max",)), (28, 28, 1), ValueError, r"SimpleCNN: pools"),
    (models.SimpleCNN(pools=("median",)), (28, 28, 1), ValueError, r"unknown pool 'median'"),
    (models.ResNet(shortcut="option C"), (32, 32, 3), ValueError, r"ResNet: unknown shortcut='option C'"),
    (models.ResNet(stage_sizes=(3, 3), widths=(16, 32, 64)), (32, 32, 3), ValueError, r"ResNet: stage_sizes"),
    (models.VGG(blocks=()), (32, 32, 3), ValueError, r"VGG: blocks"),
    (models.get("mnist_cnn"), (28, 28), ValueError, r"Conv2D: input of shape \(1, 28, 28\) has rank 3"),
    (models.get("mnist_cnn", activation="rleu"), (28, 28, 1), ValueError, r"activation='rleu'"),
    (models.get("mnist_cnn", num_classes=0), (28, 28, 1), ValueError, r"Dense: units must be an int >= 1, got 0"),
    (models.get("lenet5"), (4, 4, 1), ValueError, r"larger than the padded input"),
])
def test_bad_model_configurations_raise_at_init(model, shape, exc, match):
    with pytest.raises(exc, match=match):
        _abstract_counts(model, shape)


def test_zoo_models_can_be_used_twice_inside_another_module():
    class Pair(nn.Module):
        @nn.compact
        def __call__(self, x):
            return models.get("mnist_cnn")(x) + models.get("mnist_cnn")(x)

    trainable, _ = _abstract_counts(Pair(), (28, 28, 1))
    assert trainable == 2 * EXPECTED["mnist_cnn"][0]


def test_exports():
    assert cnnjax.models is models and cnnjax.Conv2D is cnnjax.layers.Conv2D
    assert callable(cnnjax.summary) and callable(cnnjax.count_params)
