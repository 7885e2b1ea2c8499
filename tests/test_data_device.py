"""On-device batching and augmentation: permutation properties, determinism, and crops checked by search."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax.data.device import epoch_batches, random_crop_flip, to_float


def test_epoch_batches_is_a_permutation_with_remainder_dropped():
    n, b = 103, 10
    images = jnp.arange(n, dtype=jnp.int32)[:, None] * jnp.ones((1, 3), jnp.int32)
    labels = jnp.arange(n, dtype=jnp.int32) + 1000
    xs, ys = epoch_batches(jax.random.key(0), images, labels, b)
    assert xs.shape == (10, 10, 3) and ys.shape == (10, 10)
    ids = np.asarray(xs[..., 0]).ravel()
    assert len(set(ids.tolist())) == 100 and set(ids.tolist()) <= set(range(n))
    np.testing.assert_array_equal(np.asarray(ys), np.asarray(xs[..., 0]) + 1000)  # pairs stay together
    assert not np.array_equal(ids, np.arange(100))  # shuffled


def test_epoch_batches_deterministic_and_jittable():
    images = jnp.arange(64 * 4, dtype=jnp.uint8).reshape(64, 2, 2, 1)
    labels = jnp.arange(64, dtype=jnp.int32)
    a = epoch_batches(jax.random.key(7), images, labels, 16)
    b = jax.jit(epoch_batches, static_argnums=3)(jax.random.key(7), images, labels, 16)
    c = epoch_batches(jax.random.key(8), images, labels, 16)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_epoch_batches_errors():
    x, y = jnp.zeros((10, 2)), jnp.zeros((10,), jnp.int32)
    with pytest.raises(ValueError, match="batch_size=11 is larger than the split \\(10 examples\\)"):
        epoch_batches(jax.random.key(0), x, y, 11)
    with pytest.raises(ValueError, match="labels of shape \\(9,\\)"):
        epoch_batches(jax.random.key(0), x, y[:9], 5)
    with pytest.raises(TypeError, match="batch_size must be an int >= 1, got"):
        epoch_batches(jax.random.key(0), x, y, 2.0)


def test_to_float_matches_numpy():
    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, (2, 3, 3, 3), dtype=np.uint8)
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    expected = (u8 / 255.0 - np.array(mean)) / np.array(std)
    np.testing.assert_allclose(to_float(jnp.asarray(u8), mean, std), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(to_float(jnp.asarray(u8)), u8 / 255.0, rtol=1e-6)
    assert to_float(jnp.asarray(u8), dtype=jnp.bfloat16).dtype == jnp.bfloat16
    nchw = to_float(jnp.asarray(u8.transpose(0, 3, 1, 2)), mean, std, channel_axis=1)
    np.testing.assert_allclose(nchw, expected.transpose(0, 3, 1, 2), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="mean shape \\(2,\\)"):
        to_float(jnp.asarray(u8), (0.1, 0.2), (1.0, 1.0, 1.0))


def _all_crops(image, pad):
    h, w, _ = image.shape
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            crop = padded[dy:dy + h, dx:dx + w]
            yield (dy, dx, False), crop
            yield (dy, dx, True), crop[:, ::-1]


def test_random_crop_flip_outputs_are_crops_of_the_padded_image():
    rng = np.random.default_rng(1)
    images = rng.integers(1, 256, (12, 5, 6, 2), dtype=np.uint8)  # no zeros, so the padding is visible
    out = np.asarray(random_crop_flip(jax.random.key(3), jnp.asarray(images), pad=2))
    assert out.shape == images.shape and out.dtype == np.uint8
    seen = set()
    for image, result in zip(images, out):
        matches = [k for k, crop in _all_crops(image, 2) if np.array_equal(crop, result)]
        assert matches, "output is not a padded crop (or its mirror) of its input"
        seen.add(matches[0])
    assert len(seen) > 6  # offsets and flips vary across the batch
    assert any(k[2] for k in seen) and any(not k[2] for k in seen)


def test_random_crop_flip_identity_and_determinism():
    x = jnp.arange(2 * 4 * 4 * 3, dtype=jnp.float32).reshape(2, 4, 4, 3)
    np.testing.assert_array_equal(random_crop_flip(jax.random.key(0), x, pad=0, flip=False), x)
    a = jax.jit(random_crop_flip, static_argnames=("pad", "flip"))(jax.random.key(5), x, pad=1)
    np.testing.assert_array_equal(a, random_crop_flip(jax.random.key(5), x, pad=1))
    with pytest.raises(ValueError, match="NHWC batch"):
        random_crop_flip(jax.random.key(0), x[0])
    with pytest.raises(ValueError, match="pad=-1"):
        random_crop_flip(jax.random.key(0), x, pad=-1)


def test_whole_epoch_in_one_jit_is_reproducible():
    """The intended use: shuffle, augment and normalise a whole epoch inside one jitted scan."""
    images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (40, 8, 8, 3), dtype=np.uint8))
    labels = jnp.arange(40, dtype=jnp.int32) % 10

    @jax.jit
    def epoch(key):
        k_perm, k_aug = jax.random.split(key)
        xs, ys = epoch_batches(k_perm, images, labels, 8)

        def step(total, batch):
            k, x, y = batch
            x = to_float(random_crop_flip(k, x), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
            return total + x.sum() + y.sum(), None

        return jax.lax.scan(step, jnp.float32(0), (jax.random.split(k_aug, xs.shape[0]), xs, ys))[0]

    assert float(epoch(jax.random.key(1))) == float(epoch(jax.random.key(1)))
    assert float(epoch(jax.random.key(1))) != float(epoch(jax.random.key(2)))


def test_to_float_takes_uint8_only():
    """Float images were divided by 255 a second time (ones became 0.0039)."""
    with pytest.raises(TypeError, match=r"to_float: images have dtype float32, but to_float takes uint8 images "
                                        r"\(0\.\.255\) and divides them by 255"):
        to_float(jnp.ones((1, 1, 1, 3)))
    with pytest.raises(TypeError, match=r"images have dtype int32"):
        to_float(jnp.ones((1, 1, 1, 3), jnp.int32), mean=(0.5,) * 3, std=(0.2,) * 3)


def test_to_float_std_must_be_positive_per_channel():
    u8 = jnp.ones((1, 2, 2, 3), jnp.uint8)
    for std in [(0.0, 0.2, 0.2), (0.2, -0.1, 0.2), np.array([0.2, np.nan, 0.2]), (0.2, 0.2, float("inf"))]:
        with pytest.raises(ValueError, match=r"to_float: std=.* must be a finite number > 0 per channel"):
            to_float(u8, mean=(0.5, 0.5, 0.5), std=std)
    with pytest.raises(ValueError, match=r"to_float: mean=.* must be finite per channel"):
        to_float(u8, mean=(0.5, float("nan"), 0.5))
    # a std given as a (traced) jax array is not read: no check, no error, and it still works under jit
    out = jax.jit(lambda s: to_float(u8, (0.5, 0.5, 0.5), s))(jnp.array([0.25, 0.25, 0.25]))
    np.testing.assert_allclose(out, (1 / 255 - 0.5) / 0.25, rtol=1e-5)


def test_random_crop_flip_pad_must_be_smaller_than_the_image():
    """pad >= the image size gave crops of padding only (blank images)."""
    x = jnp.ones((2, 8, 6, 1))
    with pytest.raises(ValueError, match=r"random_crop_flip: pad=100 must be smaller than the image size 6 "
                                         r"\(images 8x6\)"):
        random_crop_flip(jax.random.key(0), x, pad=100)
    with pytest.raises(ValueError, match=r"pad=6 must be smaller than the image size 6"):
        random_crop_flip(jax.random.key(0), x, pad=6)
    assert random_crop_flip(jax.random.key(0), x, pad=5).shape == x.shape


def test_an_int_key_is_refused_naming_the_key_constructors():
    images, labels = jnp.zeros((8, 4, 4, 1), jnp.uint8), jnp.zeros((8,), jnp.int32)
    match = r"key must be a key from jax\.random\.key\(\.\.\.\) or jax\.random\.PRNGKey\(\.\.\.\), got int 0"
    with pytest.raises(TypeError, match="epoch_batches: " + match):
        epoch_batches(0, images, labels, 4)
    with pytest.raises(TypeError, match="random_crop_flip: " + match):
        random_crop_flip(0, images, pad=1)
    with pytest.raises(TypeError, match=r"epoch_batches: key must be a key from.*got a jax Array of dtype int32"):
        epoch_batches(jnp.array([0, 1]), images, labels, 4)
    xs, _ = epoch_batches(jax.random.PRNGKey(0), images, labels, 4)      # raw uint32 keys stay valid
    assert xs.shape == (2, 4, 4, 4, 1)


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 50), batch=st.integers(1, 50), seed=st.integers(0, 2**31 - 1))
def test_epoch_batches_shapes_property(n, batch, seed):
    images = jnp.arange(n, dtype=jnp.int32)
    if batch > n:
        with pytest.raises(ValueError, match="larger than the split"):
            epoch_batches(jax.random.key(seed), images, images, batch)
        return
    xs, ys = epoch_batches(jax.random.key(seed), images, images, batch)
    assert xs.shape == (n // batch, batch)
    assert len(set(np.asarray(xs).ravel().tolist())) == (n // batch) * batch
