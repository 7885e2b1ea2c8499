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


def _numpy_keep_mask(seeds, n, keep_prob):
    """The documented formula of random_mask.keep_mask, transcribed in NumPy uint64 arithmetic mod 2**32."""
    m = np.uint64(0xFFFFFFFF)

    def fmix(h):
        h = h ^ (h >> np.uint64(16))
        h = (h * np.uint64(0x85EBCA6B)) & m
        h = h ^ (h >> np.uint64(13))
        h = (h * np.uint64(0xC2B2AE35)) & m
        return h ^ (h >> np.uint64(16))

    i = np.arange(n, dtype=np.uint64)
    h = fmix(fmix((i * np.uint64(0x9E3779B9) + np.uint64(seeds[0])) & m) ^ np.uint64(seeds[1]))
    return h < np.uint64(round(keep_prob * 2 ** 32))


def test_keep_mask_is_the_documented_hash():
    key = jax.random.key(7)
    seeds = np.asarray(jax.random.bits(key, (2,), jnp.uint32))
    mask = F.random_mask.keep_mask(key, (3, 50, 7), 0.8)
    np.testing.assert_array_equal(np.asarray(mask).reshape(-1), _numpy_keep_mask(seeds, 1050, 0.8))


def test_keep_mask_statistics():
    n = 1 << 20
    masks = [np.asarray(F.random_mask.keep_mask(jax.random.key(k), (n,), 0.975)) for k in range(2)]
    for mask in masks:                                              # binomial sd of the kept fraction: 1.5e-4
        assert abs(mask.mean() - 0.975) < 8e-4
    a, b = masks
    both = (a & b).mean()                                           # independent keys: P(both) = 0.975**2
    assert abs(both - 0.975 ** 2) < 1e-3
    drop = ~a                                                       # neighbours independent: no clustering
    assert abs((drop[1:] & drop[:-1]).mean() - 0.025 ** 2) < 2e-4
    pairs = (drop[0::2] & drop[1::2]).mean()
    assert abs(pairs - 0.025 ** 2) < 3e-4
    # uniform hash: the fraction kept follows keep_prob at every level (a KS-style check on 9 levels)
    for p in np.linspace(0.1, 0.9, 9):
        frac = np.asarray(F.random_mask.keep_mask(jax.random.key(3), (1 << 16,), float(p))).mean()
        assert abs(frac - p) < 0.01                                 # sd <= 0.002
    with pytest.raises(ValueError, match=r"keep_mask: keep_prob=1.5 must be in \[0, 1\]"):
        F.random_mask.keep_mask(jax.random.key(0), (3,), 1.5)


def test_dropout_masks_under_vmap_and_jit_match_eager():
    keys = jax.random.split(jax.random.key(0), 3)
    x = jnp.ones((3, 64))
    batched = jax.jit(jax.vmap(lambda k, v: F.dropout(v, 0.5, rng=k)))(keys, x)
    for i in range(3):
        np.testing.assert_array_equal(batched[i], F.dropout(x[i], 0.5, rng=keys[i]))
    assert len({tuple(np.asarray(r != 0)) for r in batched}) == 3      # each key its own mask


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


@pytest.mark.parametrize("bad", [[3, 0], [-1, 0]])
def test_labels_outside_the_classes_are_an_error(bad):
    logits = np.zeros((2, 3), np.float32)
    for fn in (F.softmax_cross_entropy, F.accuracy):     # 3 gave a NaN loss, -1 the last class, silently
        with pytest.raises(ValueError, match=r"labels must be class indices in \[0, 3\) .* got labels from"):
            fn(logits, np.array(bad, np.int32))
    # jax arrays are not read (under jit their values are unknown): in range they work traced, passed in or
    # closed over (reading a closed-over array's values inside the trace failed in the first version)
    good = np.array([2, 0], np.int32)
    assert np.isfinite(jax.jit(F.softmax_cross_entropy)(logits, good)).all()
    closed = jnp.asarray(good)
    assert np.isfinite(jax.jit(lambda z: F.softmax_cross_entropy(z, closed))(logits)).all()
    assert float(jax.jit(lambda z: F.accuracy(z, closed))(logits)) == 0.5      # argmax of zeros: class 0
    assert np.isfinite(jax.grad(lambda z: jnp.sum(F.softmax_cross_entropy(z, closed)))(logits)).all()
    assert np.isfinite(F.softmax_cross_entropy(logits, jnp.asarray([3, 0]))).any()     # not checked: no error


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


def test_dropout_accepts_numpy_rates_and_raw_keys():
    """NumPy scalars and 0-d NumPy arrays are the numbers they hold; jax.random.PRNGKey keys work as typed ones."""
    x = jnp.ones((20, 50))
    y = F.dropout(x, 0.3, rng=jax.random.key(0))
    for rate in (np.float64(0.3), np.array(0.3)):
        np.testing.assert_array_equal(F.dropout(x, rate, rng=jax.random.key(0)), y)
    np.testing.assert_array_equal(F.dropout(x, np.float32(0.5), rng=jax.random.key(0)),
                                  F.dropout(x, 0.5, rng=jax.random.key(0)))
    np.testing.assert_array_equal(F.dropout(x, np.int64(0), rng=None), x)
    raw = F.dropout(x, 0.3, rng=jax.random.PRNGKey(0))
    assert abs(float(jnp.mean(raw != 0)) - 0.7) < 0.05
    np.testing.assert_array_equal(raw, F.dropout(x, 0.3, rng=np.asarray(jax.random.PRNGKey(0))))


def test_dropout_deterministic_must_be_a_bool():
    """deterministic='False' is truthy: it silently turned dropout off."""
    x = jnp.ones((4, 8))
    with pytest.raises(TypeError, match=r"dropout: deterministic must be a bool, got 'False'"):
        F.dropout(x, 0.5, rng=jax.random.key(0), deterministic="False")
    np.testing.assert_array_equal(F.dropout(x, 0.5, deterministic=np.True_), x)


def test_batch_norm_checks_axis_and_epsilon_under_jit():
    """The checks read static values only: the same errors inside jit, and a traced epsilon is used unread."""
    x, mean, var = jnp.ones((2, 4, 4, 3)), jnp.zeros(3), jnp.ones(3)
    with pytest.raises(ValueError, match=r"batch_norm: axis=4 is out of range for x of rank 4"):
        jax.jit(lambda a: F.batch_norm(a, mean, var, axis=4))(x)
    with pytest.raises(ValueError, match=r"batch_norm: epsilon=-0.5 must be a finite number >= 0"):
        jax.jit(lambda a: F.batch_norm(a, mean, var, epsilon=-0.5))(x)
    y = jax.jit(lambda a, e: F.batch_norm(a, mean, var, epsilon=e, axis=-1))(x, 0.0)
    np.testing.assert_allclose(y, 1.0)
