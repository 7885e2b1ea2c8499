"""Shapes with ``jax.export`` symbolic dimensions (issue 27, item 3).

The shape formulas and the ops' checks take symbolic sizes: always the batch axis, and spatial sizes where the
arithmetic is defined for them (floor/ceil division by a constant stride). A check that cannot be decided for a
symbolic size is skipped (jax.export checks the concrete shapes at call time); concrete bad values keep their
messages. Every zoo model and the functional ops export with a symbolic batch, serialize, deserialize and give the
jitted function's output at two batch sizes (one for the ResNets and VGGs, to keep the file fast).
"""
import math
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export

from cnnjax import functional as F
from cnnjax import models, shapes

# one scope: sizes from separate symbolic_shape calls cannot meet in one expression
B, H, W = export.symbolic_shape("b, h, w")

# XLA:CPU compiles the larger models several times faster without its expensive LLVM passes; the exported and
# the jitted function get the same options, so they compute the same thing
_FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def _run(f, *args):
    return jax.jit(f).lower(*args).compile(_FAST_COMPILE)(*args)


def _round_trip(f, specs, args_per_batch, *, atol=1e-5, rtol=1e-5):
    """Exports ``f`` for ``specs`` (with symbolic sizes), serializes and deserializes it, and compares its output
    with the jitted ``f`` on each tuple of concrete arguments. Returns the deserialized Exported and the outputs."""
    exp = export.export(jax.jit(f))(*specs)
    blob = exp.serialize()
    assert isinstance(blob, (bytes, bytearray)) and blob
    restored = export.deserialize(blob)
    outputs = []
    for args in args_per_batch:
        got = _run(restored.call, *args)
        want = _run(f, *args)
        chex.assert_trees_all_equal_shapes_and_dtypes(got, want)
        chex.assert_trees_all_close(got, want, atol=atol, rtol=rtol)
        outputs.append(got)
    return restored, outputs


def _spec(shape, dtype=jnp.float32):
    return jax.ShapeDtypeStruct(shape, dtype)


def _normal(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


# ---------------------------------------------------------------------------------------------------- formulas

def test_symbolic_batch_passes_through_the_shape_formulas():
    assert shapes.conv_output_shape((B, 28, 28, 1), (3, 3, 1, 32)) == (B, 26, 26, 32)
    assert shapes.conv_output_shape((B, 3, 32, 32), (5, 5, 3, 6), padding="same",
                                    data_format="channels_first") == (B, 6, 32, 32)
    assert shapes.conv_output_shape((B, 10, 4), (3, 4, 8), strides=2, padding=1) == (B, 5, 8)
    assert shapes.conv_transpose_output_shape((B, 7, 7, 8), (3, 3, 8, 4), strides=2) == (B, 15, 15, 4)
    assert shapes.pool_output_shape((B, 26, 26, 32), 2) == (B, 13, 13, 32)
    assert shapes.pool_output_shape((B, 7, 7, 3), 3, 2, ceil_mode=True) == (B, 3, 3, 3)
    assert shapes.global_pool_output_shape((B, 5, 5, 64)) == (B, 64)
    assert shapes.global_pool_output_shape((B, 5, 5, 64), keepdims=True) == (B, 1, 1, 64)
    assert shapes.channel_pool_output_shape((B, 4, 4, 6), 2) == (B, 4, 4, 3)
    # a symbolic batch is an int >= 0 for the checks: jax.export assumes every symbol >= 1
    assert shapes.conv_output_shape((2 * B, 28, 28, 1), (3, 3, 1, 1)) == (2 * B, 26, 26, 1)


def test_symbolic_batch_dense_and_flatten_shapes():
    x = _spec((B, 13, 13, 32))
    flat = jax.eval_shape(F.flatten, x)
    chex.assert_equal(flat.shape, (B, 5408))
    out = jax.eval_shape(F.dense, flat, _spec((5408, 128)), _spec((128,)))
    chex.assert_equal(out.shape, (B, 128))
    # and the ops' shapes are the formulas'
    conv = jax.eval_shape(lambda a, k: F.conv2d(a, k, strides=2, padding="same"), _spec((B, 28, 28, 1)),
                          _spec((3, 3, 1, 8)))
    chex.assert_equal(conv.shape, shapes.conv_output_shape((B, 28, 28, 1), (3, 3, 1, 8), 2, "same"))
    pool = jax.eval_shape(lambda a: F.max_pool(a, 2), x)
    chex.assert_equal(pool.shape, shapes.pool_output_shape((B, 13, 13, 32), 2))


@pytest.mark.parametrize("strides", [1, 2, 3])
def test_symbolic_spatial_conv_valid_and_same(strides):
    k = 3
    valid = shapes.conv_output_shape((B, H, W, 3), (k, k, 3, 8), strides=strides)
    assert valid == (B, (H - k) // strides + 1, (W - k) // strides + 1, 8)
    same = shapes.conv_output_shape((B, H, W, 3), (k, k, 3, 8), strides=strides, padding="same")
    assert same == (B, -(-H // strides), -(-W // strides), 8)
    assert shapes.conv_output_size(H, k, strides) == (H - k) // strides + 1
    assert shapes.conv_output_size(H, k, strides, padding="same") == -(-H // strides)
    dilated = shapes.conv_output_size(H, k, strides, dilation=2)     # k_eff = 5
    assert dilated == (H - 5) // strides + 1
    lo, hi = shapes.padding_amounts(H, k, strides, "same")
    if strides == 1:
        assert (lo, hi) == (1, 1)    # "same" at stride 1 pads k - 1, whatever the size
    assert lo + hi == (-(-H // strides) - 1) * strides + k - H


def test_symbolic_spatial_pool_transpose_and_unused_input():
    assert shapes.pool_output_shape((B, H, W, 3), 2) == (B, (H - 2) // 2 + 1, (W - 2) // 2 + 1, 3)
    assert shapes.pool_output_shape((B, H, W, 3), 3, 2, "same") == (B, -(-H // 2), -(-W // 2), 3)
    assert shapes.conv_transpose_output_shape((B, H, W, 3), (3, 3, 3, 8), strides=2,
                                              padding="same") == (B, 2 * H, 2 * W, 8)
    assert shapes.conv_transpose_output_size(H, 3, 2) == 2 * H + 1
    assert shapes.unused_input(H, 3, 2) == H - ((H - 3) // 2 * 2 + 3)
    assert shapes.global_pool_output_shape((B, H, W, 3)) == (B, 3)


def test_undecidable_checks_are_skipped_for_symbolic_sizes():
    # a 5-wide kernel may or may not fit a symbolic h: jax.export checks it when the function is called
    assert shapes.conv_output_size(H, 5) == H - 4
    assert shapes.conv_output_shape((B, H, 7, 1), (5, 5, 1, 2)) == (B, H - 4, 3, 2)
    assert shapes.pool_output_size(H, 4) == (H - 4) // 4 + 1
    # decidable ones still raise: a 9-wide kernel never fits the concrete axis of 7
    with pytest.raises(ValueError, match=r"conv_output_shape: kernel 5x9 is larger than the padded input"):
        shapes.conv_output_shape((B, H, 7, 1), (5, 9, 1, 2))


def test_ceil_mode_on_a_symbolic_size_that_leaves_it_open_raises_clearly():
    # pool 1, stride 2: the last partial window is kept for odd h and dropped for even h
    with pytest.raises(ValueError, match=r"pool_output_shape: ceil_mode=True needs a concrete input size"):
        shapes.pool_output_shape((B, H, 4, 1), 1, 2, ceil_mode=True)
    # pool 3, stride 2: the extra padding depends on h's parity; lax cannot take symbolic pads
    with pytest.raises(ValueError, match=r"max_pool: ceil_mode=True on the symbolic input shape"):
        jax.eval_shape(lambda a: F.max_pool(a, 3, 2, ceil_mode=True), _spec((B, H, 4, 1)))


# --------------------------------------------------------------------------- concrete bad values, same messages

@pytest.mark.parametrize("call, error, message", [
    (lambda: shapes.conv_output_shape((-1, 28, 28, 1), (3, 3, 1, 32)), ValueError,
     r"conv_output_shape: batch size -1 (axis 0 of input shape (-1, 28, 28, 1)) must be an int >= 0."),
    (lambda: shapes.conv_output_shape(("b", 28, 28, 1), (3, 3, 1, 32)), ValueError,
     r"conv_output_shape: batch size 'b' (axis 0 of input shape ('b', 28, 28, 1)) must be an int >= 0."),
    (lambda: shapes.conv_output_shape((1, 28.5, 28, 1), (3, 3, 1, 32)), ValueError,
     r"conv_output_shape: input size 28.5 (axis 1 of input shape (1, 28.5, 28, 1)) must be a positive int."),
    (lambda: shapes.conv_output_shape((1, 0, 28, 1), (3, 3, 1, 32)), ValueError,
     r"conv_output_shape: input size 0 (axis 1 of input shape (1, 0, 28, 1)) must be a positive int."),
    (lambda: shapes.conv_output_shape((1, 28, 28, True), (3, 3, 1, 32)), ValueError,
     r"conv_output_shape: input channels True (axis 3 of input shape (1, 28, 28, True)) must be a positive int."),
    (lambda: shapes.conv_output_size(3, 5), ValueError,
     r"conv_output_size: kernel 5 (dilation 1, spans 5) is larger than the padded input 3 with "
     r"padding='valid'; use padding='same' or a smaller kernel."),
    (lambda: shapes.pool_output_shape((B, 3, 3, 1), 4), ValueError,
     r"pool_output_shape: pool_size 4x4 is larger than the padded input 3x3 with padding='valid'; use "
     r"padding='same' or a smaller pool_size."),
    (lambda: shapes.pool_output_size(8, 2, padding=2), ValueError,
     r"pool_output_size: padding 2 (low side) must be smaller than pool_size 2 (a window would cover only "
     r"padding); got padding=2."),
    (lambda: shapes.conv_output_shape((B, 28, 28, 3), (3, 3, 1, 8), groups=2), ValueError,
     r"conv_output_shape: the input has 3 channels, which is not divisible by groups=2."),
    (lambda: shapes.conv_output_shape((B, 28, 28, 3), (3, 3, 4, 8)), ValueError,
     r"conv_output_shape: the input has 3 channels (groups=1), so the kernel needs 3 input channels (axis -2), "
     r"but kernel of shape (3, 3, 4, 8) has 4."),
    (lambda: shapes.channel_pool_output_shape((B, 4, 4, 5), 2), ValueError,
     r"channel_pool_output_shape: 5 channels are not divisible by pool_size=2"),
    (lambda: shapes.channel_pool_output_shape((B, 4, 4, 2), 3), ValueError,
     r"channel_pool_output_shape: pool_size=3 is larger than the 2 input channels."),
    (lambda: shapes.conv_transpose_output_size(1, 3, 1, padding=(2, 2)), ValueError,
     r"conv_transpose_output_size: padding=(2, 2) removes the whole output (size -1)."),
    (lambda: F.conv2d(jnp.zeros((1, 3, 3, 1)), jnp.zeros((5, 5, 1, 1))), ValueError,
     r"conv2d: kernel 5x5 is larger than the padded input 3x3 with padding='valid'; use padding='same' or a "
     r"smaller kernel."),
    (lambda: F.max_pool(jnp.zeros((1, 3, 3, 1)), 4), ValueError,
     r"max_pool: pool_size 4x4 is larger than the padded input 3x3 with padding='valid'"),
])
def test_concrete_bad_values_keep_their_messages(call, error, message):
    with pytest.raises(error, match="^" + re.escape(message)):
        call()


# ------------------------------------------------------------------------------------------- export round trip

def _model_variables(name):
    """The model's variables with random values of the right shapes, without running (or compiling) its init:
    He-scaled normal kernels, normal biases, running variances in [0.5, 1.5]."""
    model = models.get(name)
    shapes_tree = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, *models.input_shape(name))))
    rng = np.random.default_rng(0)

    def fill(path, leaf):
        keys = [getattr(p, "key", "") for p in path]
        if "var" in keys[-1:]:
            value = rng.uniform(0.5, 1.5, leaf.shape)
        else:
            fan_in = math.prod(leaf.shape[:-1]) if len(leaf.shape) > 1 else 1
            value = rng.normal(size=leaf.shape) * (math.sqrt(2.0 / fan_in) if len(leaf.shape) > 1 else 0.1)
            if keys[-1:] == ["scale"]:
                value = 1.0 + value
        return jnp.asarray(value, leaf.dtype)

    return model, jax.tree_util.tree_map_with_path(fill, shapes_tree)


_HEAVY = ("resnet", "vgg")


@pytest.mark.parametrize("name", models.names())
def test_zoo_model_exports_with_a_symbolic_batch(name):
    model, variables = _model_variables(name)
    shape = models.input_shape(name)

    def predict(v, x):
        return model.apply(v, x, train=False)

    v_specs = jax.tree.map(lambda a: _spec(a.shape, a.dtype), variables)
    batches = (2,) if name.startswith(_HEAVY) else (1, 3)
    xs = [_normal((n, *shape), seed=n) for n in batches]
    restored, outputs = _round_trip(predict, (v_specs, _spec((B, *shape))), [(variables, x) for x in xs],
                                    atol=1e-4, rtol=1e-4)
    assert str(restored.out_avals[0].shape[0]) == "b"     # deserialized: the same symbol, in its own scope
    for n, out in zip(batches, outputs):
        chex.assert_shape(out, (n, 10))


_OPS = {
    "conv2d": lambda x: F.conv2d(x, _normal((3, 3, 3, 4), 1), _normal((4,), 2), strides=2, padding="same"),
    "conv2d_valid": lambda x: F.conv2d(x, _normal((3, 3, 3, 4), 1), strides=(1, 2)),
    "max_pool": lambda x: F.max_pool(x, 2),
    "max_pool_same": lambda x: F.max_pool(x, 3, 2, padding="same"),
    "avg_pool": lambda x: F.avg_pool(x, 2),
    "avg_pool_same": lambda x: F.avg_pool(x, 3, 2, padding="same"),
    "avg_pool_same_count_pad": lambda x: F.avg_pool(x, 3, 2, padding="same", count_include_pad=True),
    "min_pool": lambda x: F.min_pool(x, 3, 1, padding="same"),
    "max_pool_ceil": lambda x: F.max_pool(x, 3, 2, ceil_mode=True),
    "global_avg_pool": F.global_avg_pool,
    "global_max_pool": lambda x: F.global_max_pool(x, keepdims=True),
    "channel_max_pool": lambda x: F.channel_max_pool(jnp.concatenate([x, x], axis=-1), 2),
    "dense": lambda x: F.dense(x, _normal((3, 5), 3), _normal((5,), 4)),
    "flatten": F.flatten,
    "dropout": lambda x: F.dropout(x, 0.3, rng=jax.random.key(7)),
    "batch_norm": lambda x: F.batch_norm(x, *F.batch_moments(x, (0, 1, 2)), _normal((3,), 5), _normal((3,), 6)),
    "batch_norm_running": lambda x: F.batch_norm(x, _normal((3,), 5), jnp.full((3,), 2.0), epsilon=1e-3),
    "conv_transpose": lambda x: F.conv_transpose(x, _normal((3, 3, 3, 2), 1), strides=2, padding="same"),
}


@pytest.mark.parametrize("op", sorted(_OPS))
def test_functional_op_exports_with_a_symbolic_batch(op):
    f = _OPS[op]
    restored, outputs = _round_trip(f, (_spec((B, 9, 8, 3)),), [(_normal((n, 9, 8, 3), seed=n),) for n in (1, 3)])
    assert str(restored.out_avals[0].shape[0]) == "b"
    assert [out.shape[0] for out in outputs] == [1, 3]


@pytest.mark.parametrize("op", ["conv2d", "conv2d_valid", "max_pool_same", "avg_pool_same",
                                "avg_pool_same_count_pad", "min_pool", "global_avg_pool", "flatten", "dropout",
                                "conv_transpose"])
def test_functional_op_exports_with_symbolic_spatial_sizes(op):
    # odd and even sizes: "same" pads by the size's parity at stride 2
    f = _OPS[op]
    restored, outputs = _round_trip(f, (_spec((B, H, W, 3)),),
                                    [(_normal(s, seed=s[1]),) for s in ((1, 7, 8, 3), (2, 6, 9, 3))])
    assert str(restored.out_avals[0].shape[0]) == "b"
    assert [out.shape[0] for out in outputs] == [1, 2]
