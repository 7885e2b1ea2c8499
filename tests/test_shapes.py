"""Shape and parameter formulas: the lecture's worked examples and property tests against jax.eval_shape."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

from cnnjax import functional as F, shapes
from cnnjax.testing import strategies as cst


# --- SEED_EXAMPLES.md, "Shape and parameter formulas" -------------------------------------------------------

def test_lecture_output_sizes():
    # 4x4 input, 3x3 filter, padding 1, stride 1 -> 4x4
    assert shapes.conv_output_shape((1, 4, 4, 1), (3, 3, 1, 1), padding=1) == (1, 4, 4, 1)
    # 28x32 input, 5x5 filter, padding 2, stride 2 -> 14x16
    assert shapes.conv_output_shape((1, 28, 32, 1), (5, 5, 1, 1), strides=2, padding=2) == (1, 14, 16, 1)
    # 11x11 input, 3x3 filter: stride 1 -> 9, stride 2 -> 5
    assert shapes.conv_output_size(11, 3, 1) == 9
    assert shapes.conv_output_size(11, 3, 2) == 5
    # 7x7 input, 3x3 filter: stride 1 -> 5, 2 -> 3, 3 -> floor(2.33) = 2 with one unused row
    assert [shapes.conv_output_size(7, 3, s) for s in (1, 2, 3)] == [5, 3, 2]
    assert shapes.unused_input(7, 3, 3) == 1
    assert [shapes.unused_input(7, 3, s) for s in (1, 2)] == [0, 0]
    # zero padding 1 makes it 9x9 -> 3x3, with nothing lost
    assert shapes.conv_output_size(7, 3, 3, padding=1) == 3
    assert shapes.unused_input(7, 3, 3, padding=1) == 0


def test_lecture_volumes_and_params():
    assert shapes.conv_output_shape((1, 32, 32, 3), (5, 5, 3, 1)) == (1, 28, 28, 1)
    assert shapes.conv_output_shape((1, 32, 32, 3), (5, 5, 3, 6)) == (1, 28, 28, 6)
    assert shapes.conv_output_shape((1, 28, 28, 6), (5, 5, 6, 10)) == (1, 24, 24, 10)
    # 5x5x3, zero padding 1, two 3x3x3 filters, stride 2 -> 3x3x2 with 2*3*3*3 + 2 = 56 parameters
    assert shapes.conv_output_shape((1, 5, 5, 3), (3, 3, 3, 2), strides=2, padding=1) == (1, 3, 3, 2)
    assert shapes.conv_params(3, 3, 2) == 56
    assert shapes.conv_params((5, 5), 3, 3) == 228
    assert shapes.conv_params(5, 3, 6) == 456
    assert shapes.conv_params(3, 1, 32) == 320
    assert shapes.conv_params(3, 32, 64) == 18496
    assert shapes.dense_params(5408, 128) == 692352
    assert shapes.dense_params(128, 10) == 1290
    # Input (N,H,W,C), filter (R,S,C,M) -> (N,E,F,M)
    assert shapes.conv_output_shape((7, 10, 12, 3), (3, 5, 3, 4)) == (7, 8, 8, 4)


def test_lecture_11x11_kernel6_stride4():
    assert shapes.conv_output_size(11, 6, 4, "valid") == 2
    assert shapes.unused_input(11, 6, 4, "valid") == 1      # last row/column never used
    assert shapes.conv_output_size(11, 6, 4, "same") == 3
    assert shapes.padding_amounts(11, 6, 4, "same") == (1, 2)  # 1 before, 2 after
    assert shapes.unused_input(11, 6, 4, "same") == 0


def test_lecture_pool_sizes():
    # W2 = (W1 - F)/S + 1, D2 = D1
    assert shapes.pool_output_shape((1, 26, 26, 32), 2) == (1, 13, 13, 32)
    assert shapes.pool_output_shape((1, 11, 11, 64), 2) == (1, 5, 5, 64)
    assert shapes.pool_output_shape((1, 2, 2, 1), 2, strides=1, padding="valid") == (1, 1, 1, 1)
    assert shapes.pool_output_shape((1, 2, 2, 1), 2, strides=1, padding="same") == (1, 2, 2, 1)
    assert shapes.pool_output_shape((1, 14, 14, 5), 2, 2, "same") == (1, 7, 7, 5)
    assert shapes.conv_output_shape((1, 28, 28, 1), (3, 3, 1, 5), strides=2, padding="same") == (1, 14, 14, 5)


def test_padding_accepts_every_form():
    base = shapes.conv_output_shape((1, 9, 9, 1), (3, 3, 1, 1), padding=((1, 1), (1, 1)))
    assert shapes.conv_output_shape((1, 9, 9, 1), (3, 3, 1, 1), padding=1) == base
    assert shapes.conv_output_shape((1, 9, 9, 1), (3, 3, 1, 1), padding=(1, 1)) == base
    assert shapes.conv_output_shape((1, 9, 9, 1), (3, 3, 1, 1), padding="SAME") == base
    assert shapes.conv_output_shape((1, 9, 9, 1), (3, 3, 1, 1), padding="Same") == base
    assert shapes.conv_output_shape((1, 1, 9, 9), (3, 3, 1, 1), padding=1, data_format="NCHW") == (1, 1, 9, 9)


# --- properties ---------------------------------------------------------------------------------------------

@given(st.integers(1, 60), st.integers(1, 7), st.integers(1, 5), st.integers(1, 3))
def test_same_padding_gives_ceil(n, k, s, d):
    lo, hi = shapes.padding_amounts(n, k, s, "same", d)
    assert 0 <= hi - lo <= 1                       # the odd cell goes at the end
    assert shapes.conv_output_size(n, k, s, "same", d) == math.ceil(n / s)
    assert shapes.conv_output_size(n, k, s, (lo, hi), d) == math.ceil(n / s)


@given(st.integers(1, 40), st.integers(1, 6), st.integers(1, 5), st.integers(0, 3), st.integers(1, 3))
def test_unused_input_is_what_no_window_covers(n, k, s, p, d):
    k_eff = d * (k - 1) + 1
    if k_eff > n + 2 * p:
        with pytest.raises(ValueError, match="larger than the padded input"):
            shapes.conv_output_size(n, k, s, p, d)
        return
    out = shapes.conv_output_size(n, k, s, p, d)
    covered = set()
    for i in range(out):
        covered.update(range(i * s - p, i * s - p + k_eff))
    trailing = sum(1 for c in range(n) if c > max(covered))   # cells after the last window ends
    assert shapes.unused_input(n, k, s, p, d) == trailing
    # the last window fits and one more would not: the floor in the formula
    assert (out - 1) * s + k_eff <= n + 2 * p < out * s + k_eff


@given(cst.conv_configs())
def test_conv_output_shape_matches_eval_shape(cfg):
    x = jax.ShapeDtypeStruct(cfg["input_shape"], jnp.float32)
    w = jax.ShapeDtypeStruct(cfg["kernel_shape"], jnp.float32)
    kw = {k: cfg[k] for k in ("strides", "padding", "dilation", "groups", "data_format")}
    got = jax.eval_shape(lambda a, b: F.conv(a, b, **kw), x, w).shape
    assert got == shapes.conv_output_shape(cfg["input_shape"], cfg["kernel_shape"], **kw)


@given(cst.pool_configs(), st.sampled_from([F.max_pool, F.avg_pool, F.min_pool]))
def test_pool_output_shape_matches_eval_shape(cfg, op):
    x = jax.ShapeDtypeStruct(cfg["input_shape"], jnp.float32)
    kw = {k: cfg[k] for k in ("pool_size", "strides", "padding", "data_format", "ceil_mode")}
    assert jax.eval_shape(lambda a: op(a, **kw), x).shape == shapes.pool_output_shape(cfg["input_shape"], **kw)


@given(cst.conv_configs(grouped=False))
def test_conv_transpose_inverts_conv_shape_map(cfg):
    """conv maps the transposed conv's output back to its input shape."""
    shape, kshape = cfg["input_shape"], cfg["kernel_shape"]
    kw = {k: cfg[k] for k in ("strides", "padding", "dilation", "data_format")}
    y = jax.ShapeDtypeStruct(shape, jnp.float32)
    k_t = jax.ShapeDtypeStruct(kshape, jnp.float32)                     # (*k, C_y, F)
    k_f = jax.ShapeDtypeStruct(kshape[:-2] + (kshape[-1], kshape[-2]), jnp.float32)
    try:
        expected = shapes.conv_transpose_output_shape(shape, kshape, **kw)
    except ValueError as err:       # explicit padding larger than the transposed output: a clear error
        assert "removes the whole output" in str(err)
        assume(False)
    up = jax.eval_shape(lambda a, b: F.conv_transpose(a, b, **kw), y, k_t)
    assert up.shape == expected
    down = jax.eval_shape(lambda a, b: F.conv(a, b, **kw), up, k_f)
    assert down.shape == shape


# --- review fixes: every formula checks every dimension and scalar argument ------------------------------------

@pytest.mark.parametrize("call, pattern", [
    (lambda: shapes.conv_output_shape((1, 28.5, 28, 1), (3, 3, 1, 32)),
     r"conv_output_shape: input size 28.5 \(axis 1 of input shape \(1, 28.5, 28, 1\)\) must be a positive int"),
    (lambda: shapes.conv_output_shape((1, 28, 28, 1), (3.0, 3, 1, 32)),
     r"conv_output_shape: kernel dimension 3.0 \(axis 0 of kernel shape \(3.0, 3, 1, 32\)\) must be a positive int"),
    (lambda: shapes.conv_output_shape(("x", 28, 28, 1), (3, 3, 1, 32)),
     r"conv_output_shape: batch size 'x' \(axis 0 of input shape .*\) must be an int >= 0"),
    (lambda: shapes.conv_output_shape((-1, 28, 28, 1), (3, 3, 1, 32)), r"conv_output_shape: batch size -1"),
    (lambda: shapes.conv_output_shape((1, 28, 28, 1), (3, 3, 1, 0)), r"kernel dimension 0 \(axis 3 of kernel"),
    (lambda: shapes.conv_output_shape((1, 1, 28, 28), (3, 3, 3, 2), data_format="NCHW"),
     r"conv_output_shape: the input has 1 channels"),      # a valid NCHW shape passes the dims, then is used
    (lambda: shapes.conv_output_shape((1, 0.5, 28, 28), (3, 3, 1, 2), data_format="NCHW"),
     r"input channels 0.5 \(axis 1 of input shape"),
    (lambda: shapes.conv_transpose_output_shape((-1, 4, 4, 1), (3, 3, 1, 2)),
     r"conv_transpose_output_shape: batch size -1"),
    (lambda: shapes.conv_transpose_output_shape((1, 4, 4, 1), (3, 3, 1, 2.5)),
     r"conv_transpose_output_shape: kernel dimension 2.5 \(axis 3"),
    (lambda: shapes.pool_output_shape((-1, 4, 4, 1), 2), r"pool_output_shape: batch size -1"),
    (lambda: shapes.pool_output_shape((1, 4, 4, 1.0), 2), r"pool_output_shape: input channels 1.0"),
    (lambda: shapes.global_pool_output_shape((1, 4, 4, 1.5)), r"global_pool_output_shape: input channels 1.5"),
    (lambda: shapes.global_pool_output_shape((None, 4, 4, 3)), r"global_pool_output_shape: batch size None"),
    (lambda: shapes.channel_pool_output_shape((1, 4, 4.0, 4), 2), r"channel_pool_output_shape: input size 4.0"),
    (lambda: shapes.conv_output_shape(28, (3, 3, 1, 32)), r"conv_output_shape: input_shape must be a tuple of ints"),
])
def test_shape_formulas_check_every_dimension(call, pattern):
    """(1, 28.5, 28, 1) gave (1, 26.0, 26, 32); a float kernel size, a string or a -1 batch passed through."""
    with pytest.raises(ValueError if "tuple of ints" not in pattern else TypeError, match=pattern):
        call()


def test_an_empty_batch_is_a_shape():
    assert shapes.conv_output_shape((0, 8, 8, 1), (3, 3, 1, 2)) == (0, 6, 6, 2)
    assert jax.eval_shape(lambda a: F.max_pool(a, 2), jax.ShapeDtypeStruct((0, 4, 4, 1), jnp.float32)).shape == \
        shapes.pool_output_shape((0, 4, 4, 1), 2) == (0, 2, 2, 1)


@pytest.mark.parametrize("args, exc, pattern", [
    ((3, 0), ValueError, r"effective_kernel_size: dilation=0 must be >= 1\.$"),
    ((-3, 2), ValueError, r"effective_kernel_size: kernel_size=-3 must be >= 1\.$"),
    ((3.5, 2), TypeError, r"effective_kernel_size: kernel_size must be an int, got 3.5"),
    ((3, True), TypeError, r"effective_kernel_size: dilation must be an int, got True"),
])
def test_effective_kernel_size_checks_its_arguments(args, exc, pattern):
    """(3, 0) gave 1, (-3, 2) gave -7, (3.5, 2) gave 6.0; now conv_output_size's messages."""
    with pytest.raises(exc, match=pattern):
        shapes.effective_kernel_size(*args)
    with pytest.raises(exc, match=pattern.replace("effective_kernel_size", "conv_output_size")):
        shapes.conv_output_size(40, args[0], dilation=args[1])


def test_numpy_ints_are_ints_and_bools_are_not():
    """np.int64(3) is the int 3 everywhere; True/False (and NumPy bools) are not sizes."""
    got = shapes.conv_output_size(np.int64(28), np.int64(3), np.int32(1), dilation=np.int64(1))
    assert got == 26 and type(got) is int
    assert shapes.effective_kernel_size(np.int64(3), np.int16(2)) == 5
    shape = shapes.conv_output_shape((np.int64(1), 28, 28, np.int64(1)), (np.int64(3), 3, 1, np.int64(32)),
                                     strides=np.int64(1))
    assert shape == (1, 26, 26, 32) and all(type(d) is int for d in shape)
    assert shapes.pool_output_shape((1, 4, 4, 1), np.int64(2)) == (1, 2, 2, 1)
    assert shapes.conv_params(np.int64(3), np.int64(1), np.int64(32)) == 320
    assert shapes.dense_params(np.int64(5408), np.int32(128)) == 692352
    for bad in (True, False, np.True_):
        with pytest.raises(TypeError, match=r"conv_output_size: kernel_size must be an int"):
            shapes.conv_output_size(28, bad)
        with pytest.raises(TypeError, match=r"dense_params: units must be an int"):
            shapes.dense_params(10, bad)
        with pytest.raises(ValueError, match=r"conv_output_shape: kernel dimension"):
            shapes.conv_output_shape((1, 28, 28, 1), (bad, 3, 1, 32))


@pytest.mark.parametrize("call, exc, pattern", [
    # 'input has rank 4, but a 3-D op needs rank 5' blamed the input for pool_size's extra entry
    (lambda: shapes.pool_output_shape((1, 4, 4, 1), (2, 2, 2)), ValueError,
     r"pool_output_shape: pool_size=\(2, 2, 2\) has 3 entries, but the input of shape \(1, 4, 4, 1\) has 2 spatial "
     r"axes; give one int or 2 ints"),
    (lambda: shapes.pool_output_shape((1, 4, 1), (2, 2)), ValueError, r"has 2 entries.*has 1 spatial axis;"),
    # 'dense_params: in_features=(5, 5) has 2 entries, but the input has 1 spatial axis'
    (lambda: shapes.dense_params((5, 5), 10), TypeError, r"dense_params: in_features must be an int, got \(5, 5\)"),
    # 'filters=0 must be >= 1 on every axis' for a scalar argument
    (lambda: shapes.conv_params(3, 3, 0), ValueError, r"conv_params: filters=0 must be >= 1\.$"),
    (lambda: shapes.conv_params(3, 3, 4, groups=0), ValueError, r"conv_params: groups=0 must be >= 1\.$"),
    (lambda: shapes.dense_params(0, 10), ValueError, r"dense_params: in_features=0 must be >= 1\.$"),
    (lambda: shapes.channel_pool_output_shape((1, 2, 2, 4), 0), ValueError,
     r"channel_pool_output_shape: pool_size=0 must be >= 1\.$"),
    (lambda: F.channel_max_pool(np.ones((1, 2, 2, 4), np.float32), 2, strides=0), ValueError,
     r"channel_max_pool: strides=0 must be >= 1\.$"),
    (lambda: shapes.conv_output_size(28, 3, strides=0), ValueError, r"conv_output_size: strides=0 must be >= 1\.$"),
    (lambda: shapes.unused_input(3, 5), ValueError, r"^unused_input: kernel 5 .* larger than the padded input 3"),
    # truth-tested flags of the parameter formulas
    (lambda: shapes.conv_params(3, 3, 4, use_bias="no"), TypeError, r"conv_params: use_bias must be a bool, got 'no'"),
    (lambda: shapes.dense_params(3, 4, use_bias=0), TypeError, r"dense_params: use_bias must be a bool, got 0"),
])
def test_messages_blame_the_argument_that_is_wrong(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()
