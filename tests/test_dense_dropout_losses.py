"""dense, flatten, dropout, losses, batch norm and activations against closed forms."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax import functional as F


def test_dense_and_flatten():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 13, 13, 32)).astype(np.float32)
    flat = F.flatten(x)
    assert flat.shape == (4, 5408)                                  # the lecture's Flatten (5408)
    np.testing.assert_array_equal(flat[1], x[1].reshape(-1))        # row-major, batch kept
    w, b = rng.standard_normal((5408, 128)).astype(np.float32), rng.standard_normal(128).astype(np.float32)
    np.testing.assert_allclose(F.dense(flat, w, b), np.asarray(flat, np.float64) @ w + b, rtol=2e-3, atol=2e-3)


def test_dropout_statistics_and_scaling():
    x = jnp.ones((200, 500))
    y = F.dropout(x, 0.3, rng=jax.random.key(0))
    kept = np.asarray(y != 0)
    assert abs(kept.mean() - 0.7) < 0.01                            # 100k Bernoulli draws: sd 0.0014
    np.testing.assert_allclose(np.asarray(y)[kept], 1 / 0.7, rtol=1e-6)
    np.testing.assert_array_equal(F.dropout(x, 0.3, rng=jax.random.key(0), deterministic=True), x)
    np.testing.assert_array_equal(F.dropout(x, 0.0, rng=None), x)
    np.testing.assert_array_equal(y, F.dropout(x, 0.3, rng=jax.random.key(0)))      # same key, same mask
    assert not np.array_equal(y, F.dropout(x, 0.3, rng=jax.random.key(1)))


def test_softmax_cross_entropy_closed_form():
    logits = np.array([[0.0, 0.0, 0.0], [2.0, 0.0, -1.0]], np.float32)
    labels = np.array([1, 0], np.int32)
    loss = F.softmax_cross_entropy(logits, labels)
    expected = [np.log(3.0), -(2.0 - np.log(np.exp(2.0) + 1 + np.exp(-1.0)))]
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    smooth = F.softmax_cross_entropy(logits[:1], labels[:1], label_smoothing=0.3)
    np.testing.assert_allclose(smooth, [np.log(3.0)], rtol=1e-6)    # uniform logits: any target costs log 3
    assert F.softmax_cross_entropy(logits.astype(jnp.bfloat16), labels).dtype == jnp.float32
    assert float(F.accuracy(logits, np.array([2, 0], np.int32))) == 0.5


def test_batch_norm_normalises():
    x = np.random.default_rng(1).standard_normal((16, 4, 4, 3)).astype(np.float32) * 3 + 2
    mean, var = F.batch_moments(x, (0, 1, 2))
    np.testing.assert_allclose(mean, x.mean(axis=(0, 1, 2)), rtol=1e-5)
    np.testing.assert_allclose(var, x.var(axis=(0, 1, 2)), rtol=1e-4)
    y = F.batch_norm(x, mean, var, np.full(3, 2.0, np.float32), np.full(3, 1.0, np.float32), epsilon=0.0)
    np.testing.assert_allclose(np.asarray(y).mean(axis=(0, 1, 2)), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(y).std(axis=(0, 1, 2)), 2.0, rtol=1e-4)
    with pytest.raises(ValueError, match=r"batch_norm: mean of shape \(2,\) must have shape \(3,\)"):
        F.batch_norm(x, np.zeros(2, np.float32), var)


@pytest.mark.parametrize("name, x, expected", [
    ("relu", [-1.0, 2.0], [0.0, 2.0]), ("linear", [-1.0, 2.0], [-1.0, 2.0]), (None, [3.0], [3.0]),
    ("sigmoid", [0.0], [0.5]), ("tanh", [0.0], [0.0]), ("softmax", [1.0, 1.0], [0.5, 0.5]), ("RELU", [-2.0], [0.0]),
])
def test_activations_by_name(name, x, expected):
    np.testing.assert_allclose(F.get_activation(name)(jnp.array(x)), expected, rtol=1e-6)


def test_batch_moments_keep_precision_with_a_large_mean():
    x = (1000.0 + np.random.default_rng(2).standard_normal((4096, 2)) * 0.01).astype(np.float32)
    _, var = F.batch_moments(x, (0,))
    np.testing.assert_allclose(var, x.astype(np.float64).var(axis=0), rtol=1e-2)   # one-pass E[x^2]-E[x]^2 fails
