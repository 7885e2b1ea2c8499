"""Every user mistake named in the functional layer's contract raises a clear error, before XLA sees it."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax import functional as F, shapes

X = np.ones((1, 8, 8, 3), np.float32)
K = np.ones((3, 3, 3, 4), np.float32)


@pytest.mark.parametrize("call, exc, pattern", [
    # wrong rank
    (lambda: F.conv2d(np.ones((8, 8, 3), np.float32), K), ValueError, r"conv2d: x of shape \(8, 8, 3\) has rank 3"),
    (lambda: F.conv2d(X, np.ones((3, 3, 3, 3, 4), np.float32)), ValueError, r"conv2d: kernel .* rank 5.*2-D"),
    (lambda: F.conv(X, np.ones((3, 4), np.float32)), ValueError, r"conv: kernel of shape \(3, 4\) has rank 2"),
    (lambda: F.max_pool(np.ones((8, 8), np.float32), 2), ValueError, r"max_pool: x of shape \(8, 8\) has rank 2"),
    # channels that do not match the kernel, or groups
    (lambda: F.conv2d(X, np.ones((3, 3, 2, 4), np.float32)), ValueError, r"conv2d: the input has 3 channels.*has 2"),
    (lambda: F.conv2d(X, np.ones((3, 3, 1, 4), np.float32), groups=2), ValueError, r"not divisible by groups=2"),
    (lambda: F.conv2d(np.ones((1, 8, 8, 4), np.float32), np.ones((3, 3, 2, 3), np.float32), groups=2),
     ValueError, r"3 filters, which is not divisible by groups=2"),
    # kernel or pool window larger than the padded input
    (lambda: F.conv2d(np.ones((1, 3, 3, 1), np.float32), np.ones((5, 5, 1, 1), np.float32)), ValueError,
     r"conv2d: kernel 5x5 is larger than the padded input 3x3 with padding='valid'"),
    (lambda: F.conv2d(np.ones((1, 5, 5, 1), np.float32), np.ones((3, 3, 1, 1), np.float32), dilation=3),
     ValueError, r"kernel 3x3 with dilation 3x3 \(spans 7x7\) is larger than the padded input 5x5"),
    (lambda: F.max_pool(np.ones((1, 3, 3, 1), np.float32), 4), ValueError,
     r"max_pool: pool_size 4x4 is larger than the padded input 3x3"),
    # stride, dilation, pool size of 0 or below
    (lambda: F.conv2d(X, K, strides=0), ValueError, r"conv2d: strides=0 must be >= 1"),
    (lambda: F.conv2d(X, K, strides=(1, -1)), ValueError, r"strides=\(1, -1\) must be >= 1"),
    (lambda: F.conv2d(X, K, dilation=0), ValueError, r"dilation=0 must be >= 1"),
    (lambda: F.avg_pool(X, 0), ValueError, r"avg_pool: pool_size=0 must be >= 1"),
    (lambda: F.max_pool(X, 2, strides=0), ValueError, r"strides=0 must be >= 1"),
    # negative padding, unknown strings
    (lambda: F.conv2d(X, K, padding=-1), ValueError, r"conv2d: padding=-1 has a negative amount"),
    (lambda: F.conv2d(X, K, padding="full"), ValueError, r"unknown padding='full'; use 'valid', 'same'"),
    (lambda: F.conv2d(X, K, padding=(1, 2, 3)), ValueError, r"padding=\(1, 2, 3\) is not valid for 2 spatial"),
    (lambda: F.conv2d(X, K, data_format="NHCW"), ValueError, r"unknown data_format='NHCW'"),
    (lambda: F.conv2d(X, K, data_format="NCDHW"), ValueError, r"data_format='NCDHW' is for 3-D inputs"),
    (lambda: F.max_pool(X, 2, data_format="chanels_last"), ValueError, r"unknown data_format='chanels_last'"),
    # non-floating input to conv
    (lambda: F.conv2d(X.astype(np.uint8), K), TypeError, r"conv2d: x has dtype uint8, but it must be floating"),
    (lambda: F.conv2d(X, K.astype(np.int32)), TypeError, r"conv2d: kernel has dtype int32"),
    # a pool size with the wrong number of axes
    (lambda: F.max_pool(X, (2, 2, 2)), ValueError, r"max_pool: pool_size=\(2, 2, 2\) has 3 entries.*2 spatial"),
    (lambda: F.conv2d(X, K, strides=(1, 1, 1)), ValueError, r"strides=\(1, 1, 1\) has 3 entries"),
    (lambda: F.max_pool(X, "2"), TypeError, r"pool_size must be an int or a sequence"),
    # bias of the wrong length
    (lambda: F.conv2d(X, K, np.ones(3, np.float32)), ValueError,
     r"conv2d: bias of shape \(3,\) must have shape \(4,\)"),
    (lambda: F.dense(np.ones((2, 5), np.float32), np.ones((5, 3), np.float32), np.ones(2, np.float32)), ValueError,
     r"dense: bias of shape \(2,\) must have shape \(3,\)"),
    # dense kernel that does not match the features
    (lambda: F.dense(np.ones((2, 6), np.float32), np.ones((5, 3), np.float32)), ValueError,
     r"dense: x of shape \(2, 6\) has 6 features.*expects 5"),
    (lambda: F.dense(np.ones((2, 5), np.float32), np.ones((5,), np.float32)), ValueError, r"dense: kernel .* rank 1"),
    # dropout rate outside [0, 1)
    (lambda: F.dropout(X, 1.0, rng=jax.random.key(0)), ValueError, r"dropout: rate=1.0 must be a number in \[0, 1\)"),
    (lambda: F.dropout(X, -0.1, rng=jax.random.key(0)), ValueError, r"rate=-0.1"),
    (lambda: F.dropout(X, 0.5), ValueError, r"dropout: rng is None"),
    # channel count not divisible by the channel-pool size
    (lambda: F.channel_max_pool(np.ones((1, 2, 2, 5), np.float32), 3), ValueError,
     r"channel_max_pool: 5 channels are not divisible by pool_size=3"),
    (lambda: F.channel_max_pool(np.ones((1, 2, 2, 2), np.float32), 3), ValueError, r"pool_size=3 is larger than"),
    # losses
    (lambda: F.softmax_cross_entropy(np.ones((2, 3), np.float32), np.ones((2,), np.float32)), TypeError,
     r"softmax_cross_entropy: labels have dtype float32"),
    (lambda: F.softmax_cross_entropy(np.ones((2, 3), np.float32), np.ones((3,), np.int32)), ValueError,
     r"labels of shape \(3,\) must have the shape of logits without the class axis, \(2,\)"),
    (lambda: F.get_activation("rellu"), ValueError, r"unknown activation='rellu'.*relu"),
    # shape formulas check the same things
    (lambda: shapes.conv_output_size(3, 5), ValueError,
     r"conv_output_size: kernel 5 .* larger than the padded input 3"),
    (lambda: shapes.conv_output_shape((1, 8, 8, 3), (3, 3, 3, 4), strides=0), ValueError, r"strides=0"),
    (lambda: shapes.pool_output_shape((1, 8, 8, 3), 2, padding="bad"), ValueError, r"unknown padding='bad'"),
    (lambda: shapes.conv_params(3, 3, 0), ValueError, r"conv_params: filters=0 must be >= 1"),
])
def test_clear_errors(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_errors_come_before_tracing_under_jit():
    """Inside jit the same message appears (shapes are static), not an XLA error."""
    with pytest.raises(ValueError, match="kernel 5x5 is larger than the padded input 3x3"):
        jax.jit(F.conv2d)(jnp.ones((1, 3, 3, 1)), jnp.ones((5, 5, 1, 1)))


def test_a_kernel_that_does_not_tile_is_legal():
    y = F.conv2d(np.ones((1, 7, 7, 1), np.float32), np.ones((3, 3, 1, 1), np.float32), strides=3)
    assert y.shape == (1, 2, 2, 1)
    assert shapes.unused_input(7, 3, 3) == 1


# --- review fixes: each of these was a silent wrong result or a raw JAX/NumPy error --------------------------

KEY = jax.random.key(0)
X4 = jnp.ones((1, 4, 4, 3))


def test_dropout_rejects_integer_input():
    """An int32 x gave inf: the keep factor 1 / (1 - rate) was cast to x's integer dtype (0)."""
    with pytest.raises(TypeError, match=r"dropout: x has dtype int32, but it must be floating"):
        F.dropout(jnp.ones((2, 8), jnp.int32), 0.3, rng=KEY)
    with pytest.raises(TypeError, match=r"dropout: x has dtype uint8"):     # the same in eval mode
        F.dropout(np.ones((2, 8), np.uint8), 0.3, deterministic=True)


@pytest.mark.parametrize("axis", [5, 4, -5, -9])
def test_batch_norm_axis_out_of_range(axis):
    """axis=5 on a rank-4 x wrapped silently to axis 1 (axis % ndim)."""
    with pytest.raises(ValueError, match=rf"batch_norm: axis={axis} is out of range for x of rank 4 \(valid: -4..3\)"):
        F.batch_norm(X4, jnp.zeros(3), jnp.ones(3), axis=axis)
    with pytest.raises(TypeError, match=r"batch_norm: axis must be an int or a sequence of ints, got 1.0"):
        F.batch_norm(X4, jnp.zeros(3), jnp.ones(3), axis=1.0)


def test_batch_moments_axes_out_of_range_or_repeated():
    """(0, 7) raised a bare IndexError from NumPy's axis normalisation."""
    with pytest.raises(ValueError, match=r"batch_moments: axes=\(0, 7\) has axis 7, which is out of range for x of "
                                         r"rank 4 \(valid: -4..3\)"):
        F.batch_moments(X4, (0, 7))
    with pytest.raises(ValueError, match=r"batch_moments: axes=\(0, -4\) names axis 0 more than once"):
        F.batch_moments(X4, (0, -4))
    with pytest.raises(TypeError, match=r"batch_moments: axes must be an int or a sequence of ints, got 'hw'"):
        F.batch_moments(X4, "hw")
    mean, var = F.batch_moments(X4, (0, -3, 2))          # negative axes are fine
    assert mean.shape == var.shape == (3,)


@pytest.mark.parametrize("epsilon", [-1.0, float("nan"), float("inf"), np.float32(-1e-3)])
def test_batch_norm_epsilon_must_be_finite_and_not_negative(epsilon):
    """epsilon=-1.0 gave NaN (sqrt of var - 1)."""
    with pytest.raises(ValueError, match=r"batch_norm: epsilon=.* must be a finite number >= 0"):
        F.batch_norm(X4, jnp.zeros(3), jnp.ones(3), epsilon=epsilon)


def test_batch_norm_epsilon_types():
    with pytest.raises(TypeError, match=r"batch_norm: epsilon must be a Python or NumPy number, got str '1e-3'"):
        F.batch_norm(X4, jnp.zeros(3), jnp.ones(3), epsilon="1e-3")
    # NumPy numbers are numbers; a jax array (traced or not) is used unread
    for eps in (np.float32(1e-3), np.array(1e-3), jnp.asarray(1e-3)):
        np.testing.assert_allclose(F.batch_norm(X4, jnp.zeros(3), jnp.ones(3), epsilon=eps), 1 / np.sqrt(1.001),
                                   rtol=1e-5)
    y = jax.jit(lambda e: F.batch_norm(X4, jnp.zeros(3), jnp.ones(3), epsilon=e))(1e-3)
    np.testing.assert_allclose(y, 1 / np.sqrt(1.001), rtol=1e-5)


CONV_OPS = [
    (lambda p: F.conv2d(X4, jnp.ones((3, 3, 3, 2)), precision=p), "conv2d"),
    (lambda p: F.conv(X4, jnp.ones((3, 3, 3, 2)), precision=p), "conv"),
    (lambda p: F.conv1d(jnp.ones((1, 5, 3)), jnp.ones((3, 3, 2)), precision=p), "conv1d"),
    (lambda p: F.conv3d(jnp.ones((1, 3, 3, 3, 3)), jnp.ones((2, 2, 2, 3, 2)), precision=p), "conv3d"),
    (lambda p: F.conv_transpose(X4, jnp.ones((3, 3, 3, 2)), precision=p), "conv_transpose"),
]


@pytest.mark.parametrize("call, name", CONV_OPS)
def test_conv_precision_is_checked_by_name(call, name):
    """precision='bad' raised JAX's 'Precision argument must be one of', naming no cnnjax op."""
    for bad in ("bad", "HIGHEST_", 2, ("high",), ("high", "bad")):
        with pytest.raises(ValueError, match=rf"{name}: precision=.*; valid: None, 'default', 'high', 'highest'"):
            call(bad)
    for good in (None, "highest", "tensorfloat32", "float32", "bfloat16", jax.lax.Precision.HIGH,
                 ("high", "highest"), (jax.lax.Precision.DEFAULT, jax.lax.Precision.HIGHEST)):
        assert call(good).ndim >= 3


def test_dropout_rate_must_be_a_static_number():
    """A jax array rate was reported as 'rate=Array(0.5) must be a number in [0, 1)', as if its value were wrong."""
    x = jnp.ones((4, 8))
    with pytest.raises(TypeError, match=r"dropout: rate must be a Python or NumPy number \(a static value\), got a "
                                        r"jax Array"):
        F.dropout(x, jnp.array(0.5), rng=KEY)
    with pytest.raises(TypeError, match=r"dropout: rate must be a Python or NumPy number \(a static value\), got a "
                                        r"traced jax Array"):
        jax.jit(lambda r: F.dropout(x, r, rng=KEY))(0.5)
    with pytest.raises(TypeError, match=r"dropout: rate must be .*, got str '0.5'"):
        F.dropout(x, "0.5", rng=KEY)
    with pytest.raises(ValueError, match=r"dropout: rate=np.float32\(1.5\) must be a number in \[0, 1\)"):
        F.dropout(x, np.float32(1.5), rng=KEY)


@pytest.mark.parametrize("rng, shown", [(0, r"int 0"), (1.5, r"float 1.5"), ("key", r"str 'key'"),
                                        (jnp.zeros(2), r"a jax Array of dtype float32 and shape \(2,\)"),
                                        (jax.random.split(KEY, 3), r"a jax Array of dtype key<fry> and shape \(3,\)")])
def test_dropout_rng_must_be_a_key(rng, shown):
    """rng=0 raised JAX's 'invalid PRNG key data'."""
    with pytest.raises(TypeError, match=r"dropout: rng must be a key from jax.random.key\(...\) or "
                                        rf"jax.random.PRNGKey\(...\), got {shown}"):
        F.dropout(jnp.ones((4, 8)), 0.5, rng=rng)


def test_conv_transpose_errors_name_the_op():
    """They were labelled 'conv_transpose_output_shape:' whatever the user called."""
    with pytest.raises(ValueError, match=r"^conv_transpose: the input has 3 channels"):
        F.conv_transpose(X4, jnp.ones((3, 3, 2, 2)))
    with pytest.raises(ValueError, match=r"^conv_transpose: padding=5 removes the whole output"):
        F.conv_transpose(X4, jnp.ones((3, 3, 3, 2)), padding=5)
    with pytest.raises(ValueError, match=r"^conv_transpose_output_shape: the input has 3 channels"):
        shapes.conv_transpose_output_shape(X4.shape, (3, 3, 2, 2))
