"""cnnjax.functional.augment: shapes and dtypes, determinism per key, jit/vmap equal to eager, the law of the
offsets, flips and cutout centers, padding modes against numpy.pad, cutout's square, from_spec and the errors."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax import functional as F
from cnnjax.functional import augment as A

KEY = jax.random.key(0)
AUGS = {
    "flip": functools.partial(A.random_flip, p=0.5),
    "translate-reflect": functools.partial(A.random_translate, pad=2),
    "translate-edge": functools.partial(A.random_translate, pad=3, mode="edge"),
    "crop": functools.partial(A.random_crop, pad=2),
    "cutout": functools.partial(A.cutout, size=3),
    "spec": A.from_spec("flip,translate:2,cutout:3"),
}
JITTED = {name: jax.jit(f) for name, f in AUGS.items()}


def _images(dtype, n=6, h=7, w=8, c=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(1, 256, (n, h, w, c))          # no zeros, so cutout's zeros are countable
    return x.astype(dtype) if dtype == np.uint8 else (x / 255).astype(dtype)


@pytest.mark.parametrize("name", sorted(AUGS))
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_shape_dtype_determinism_and_jit(name, dtype):
    x = _images(dtype)
    jitted = JITTED[name](KEY, x)
    assert jitted.shape == x.shape and jitted.dtype == x.dtype
    if dtype == np.float32:   # eager runs op by op (slow to warm up on the CPU): one dtype is enough
        np.testing.assert_array_equal(np.asarray(AUGS[name](KEY, x)), np.asarray(jitted))
    np.testing.assert_array_equal(np.asarray(JITTED[name](KEY, x)), np.asarray(jitted))   # same key, same output
    others = [np.asarray(JITTED[name](jax.random.key(s), x)) for s in range(1, 4)]
    assert all(not np.array_equal(o, np.asarray(jitted)) for o in others)                  # other keys differ
    # the pixel values are only moved or zeroed, never changed
    assert set(np.unique(np.asarray(jitted))) <= set(np.unique(x)) | {0}


@pytest.mark.parametrize("name", ["flip", "translate-reflect", "cutout", "spec"])
def test_vmap_over_keys_and_batches_equals_eager(name):
    x = np.stack([_images(np.float32, seed=s) for s in range(3)])      # (3, N, H, W, C)
    keys = jax.random.split(jax.random.key(7), 3)
    batched = jax.jit(jax.vmap(AUGS[name]))(keys, x)
    for b in range(3):
        np.testing.assert_array_equal(np.asarray(batched[b]), np.asarray(AUGS[name](keys[b], x[b])))


def test_raw_keys_and_empty_batches():
    x = _images(np.uint8)
    out = JITTED["spec"](jax.random.PRNGKey(3), x)
    assert out.shape == x.shape
    empty = np.zeros((0, 7, 8, 3), np.uint8)
    for f in JITTED.values():
        assert f(KEY, empty).shape == empty.shape


# ------------------------------------------------------------------------------------------------ the laws

def _marker_offsets(out, h, w):
    """Offsets (dy, dx) of a single marker pixel placed at the center of h x w images."""
    n = out.shape[0]
    flat = np.asarray(out).reshape(n, -1).argmax(axis=1)
    assert (np.asarray(out).reshape(n, -1).max(axis=1) == 1).all()      # the marker is never lost
    return flat // w - h // 2, flat % w - w // 2


def _chi2(counts):
    expected = counts.sum() / counts.size
    return float(((counts - expected) ** 2 / expected).sum())


@pytest.mark.parametrize("fn", [A.random_translate, A.random_crop])
def test_offsets_are_uniform_per_axis_and_jointly(fn):
    pad, h, w, n = 2, 9, 9, 10000
    x = np.zeros((n, h, w, 1), np.float32)
    x[:, h // 2, w // 2, 0] = 1
    out = jax.jit(functools.partial(fn, pad=pad, mode="constant"))(jax.random.key(11), x)
    dy, dx = _marker_offsets(out, h, w)
    span = 2 * pad + 1
    assert dy.min() == dx.min() == -pad and dy.max() == dx.max() == pad
    for d in (dy, dx):   # 4 degrees of freedom: P(chi2 > 18.5) = 0.001
        assert _chi2(np.bincount(d + pad, minlength=span)) < 18.5
    joint = np.bincount((dy + pad) * span + dx + pad, minlength=span * span)
    assert _chi2(joint) < 51.2                              # 24 degrees of freedom, p = 0.001
    assert abs(np.corrcoef(dy, dx)[0, 1]) < 0.04           # the axes are drawn independently


@pytest.mark.parametrize("p", [0.0, 0.3, 0.5, 1.0])
def test_flip_rate_is_p(p):
    n = 10000
    x = np.zeros((n, 1, 4, 1), np.float32)
    x[:, 0, 0, 0] = 1
    out = np.asarray(jax.jit(functools.partial(A.random_flip, p=p))(jax.random.key(5), x))
    flipped = out[:, 0, 3, 0] == 1
    assert ((out[:, 0, 0, 0] == 1) ^ flipped).all()         # each image is either kept or mirrored whole
    assert abs(flipped.mean() - p) < 4 * np.sqrt(p * (1 - p) / n) + 1e-9


def test_flip_mirrors_the_width_axis():
    x = _images(np.float32)
    out = A.flip(x, jnp.array([True, False] * 3))
    np.testing.assert_array_equal(np.asarray(out[0]), x[0, :, ::-1])
    np.testing.assert_array_equal(np.asarray(out[1]), x[1])


def test_cutout_centers_cover_the_image_uniformly():
    n, h, w, size = 6000, 6, 5, 1
    out = np.asarray(jax.jit(functools.partial(A.cutout, size=size))(jax.random.key(2), np.ones((n, h, w, 1))))
    zero = (out[..., 0] == 0).reshape(n, -1)
    assert (zero.sum(axis=1) == 1).all()
    assert _chi2(np.bincount(zero.argmax(axis=1), minlength=h * w)) < 59.7   # 29 dof, p = 0.001


# -------------------------------------------------------------------------------- deterministic helpers

@pytest.mark.parametrize("mode", A.MODES)
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_translate_matches_numpy_pad(mode, dtype):
    pad = 3
    x = _images(dtype, n=5, h=5, w=6, c=2)
    offsets = np.array([[0, 0], [3, -3], [-2, 1], [1, 3], [-3, -1]], np.int32)
    out = np.asarray(jax.jit(functools.partial(A.translate, pad=pad, mode=mode))(x, offsets))
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode=mode)
    for i, (dy, dx) in enumerate(offsets):
        want = padded[i, pad - dy:pad - dy + 5, pad - dx:pad - dx + 6]
        np.testing.assert_array_equal(out[i], want)
    np.testing.assert_array_equal(out[0], x[0])
    # a positive dy moves the content down, a positive dx to the right
    np.testing.assert_array_equal(out[1, 3:, :3], x[1, :2, 3:])


def test_translate_clips_offsets_to_pad():
    x = _images(np.float32, n=2)
    far = A.translate(x, np.array([[9, -9], [-9, 9]]), pad=2, mode="edge")
    near = A.translate(x, np.array([[2, -2], [-2, 2]]), pad=2, mode="edge")
    np.testing.assert_array_equal(np.asarray(far), np.asarray(near))


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_cutout_square_inside_and_at_borders(dtype):
    h, w, size = 9, 10, 4
    x = _images(dtype, n=5, h=h, w=w, c=2)
    centers = np.array([[4, 5], [0, 0], [8, 9], [4, 0], [2, 1]], np.int32)
    out = np.asarray(jax.jit(functools.partial(A.cutout_at, size=size))(x, centers))
    zeros = (out == 0).all(axis=-1)
    assert ((out == 0).any(axis=-1) == zeros).all()          # all channels together
    # rows [cy - 2, cy + 2), clipped: inside 16 pixels; corners and edges fewer
    assert list(zeros.reshape(5, -1).sum(axis=1)) == [16, 4, 9, 8, 12]
    assert zeros[0, 2:6, 3:7].all() and zeros[1, :2, :2].all() and zeros[2, 6:9, 7:10].all()
    np.testing.assert_array_equal(out[~zeros], x[~zeros])    # the rest untouched


def test_cutout_odd_size_and_large_size():
    x = np.ones((2, 5, 5, 1), np.float32)
    out = np.asarray(A.cutout_at(x, np.array([[2, 2], [0, 4]]), size=3))
    assert (out[0, 1:4, 1:4] == 0).all() and out[0].sum() == 25 - 9
    assert out[1].sum() == 25 - 4
    assert np.asarray(A.cutout(KEY, x, size=11)).sum() == 0      # larger than the image: covers it whole


def test_random_cutout_counts():
    n, h, w, size = 400, 12, 12, 4
    out = np.asarray(jax.jit(functools.partial(A.cutout, size=size))(jax.random.key(9), np.ones((n, h, w, 1))))
    zeros = out[..., 0] == 0
    counts = zeros.reshape(n, -1).sum(axis=1)
    assert counts.max() == size * size and counts.min() >= 4 and (counts < size * size).any()
    for z, count in zip(zeros, counts):
        rows, cols = np.nonzero(z.any(axis=1))[0], np.nonzero(z.any(axis=0))[0]
        assert count == len(rows) * len(cols)                  # a (clipped) rectangle
        if 0 < rows[0] and rows[-1] < h - 1 and 0 < cols[0] and cols[-1] < w - 1:
            assert count == size * size


def test_zero_pad_and_zero_size_are_identity():
    x = _images(np.uint8)
    for f in (functools.partial(A.random_translate, pad=0), functools.partial(A.random_crop, pad=0),
              functools.partial(A.cutout, size=0), functools.partial(A.random_flip, p=0.0), A.compose()):
        np.testing.assert_array_equal(np.asarray(f(KEY, x)), x)


# ------------------------------------------------------------------------------------- compose, from_spec

def test_compose_splits_the_key_in_order():
    x = _images(np.float32)
    flip, shift = AUGS["flip"], AUGS["translate-reflect"]
    k1, k2 = jax.random.split(KEY)
    np.testing.assert_array_equal(np.asarray(A.compose(flip, shift)(KEY, x)), np.asarray(shift(k2, flip(k1, x))))
    assert A.compose(flip, shift).augmentations == (flip, shift)


def test_from_spec_parses_the_examples():
    x = _images(np.float32)
    spec = A.from_spec("flip,translate:2,cutout:8")
    assert spec.spec == "flip:0.5,translate:2:reflect,cutout:8"
    want = A.compose(functools.partial(A.random_flip, p=0.5), functools.partial(A.random_translate, pad=2),
                     functools.partial(A.cutout, size=8))(KEY, x)
    np.testing.assert_array_equal(np.asarray(spec(KEY, x)), np.asarray(want))
    assert A.from_spec(" Flip , translate ").spec == "flip:0.5,translate:2:reflect"
    assert A.from_spec("crop").spec == "crop:4:constant"
    assert A.from_spec("crop:3:edge,flip:0.25,cutout").spec == "crop:3:edge,flip:0.25,cutout:8"
    assert A.from_spec("translate:1:constant").spec == "translate:1:constant"
    for empty in ("", "none", " NONE "):
        assert A.from_spec(empty).spec == "none"
        np.testing.assert_array_equal(np.asarray(A.from_spec(empty)(KEY, x)), x)
    assert F.from_spec is A.from_spec and F.random_translate is A.random_translate


@pytest.mark.parametrize("spec, token", [
    ("flip,rotate:3", "rotate:3"), ("translate:-1", "translate:-1"), ("translate:1.5", "translate:1.5"),
    ("translate:", "translate:"), ("crop:2:wrap", "crop:2:wrap"), ("crop:1:edge:3", "crop:1:edge:3"),
    ("cutout:x", "cutout:x"), ("cutout:2:3", "cutout:2:3"), ("flip:2", "flip:2"), ("flip:yes", "flip:yes"),
    ("flip,,cutout", ""), ("flip,", ""),
])
def test_from_spec_rejects_bad_tokens(spec, token):
    with pytest.raises(ValueError) as err:
        A.from_spec(spec)
    message = str(err.value)
    assert message.startswith("from_spec:") and f"bad token {token!r}" in message
    assert A.SPEC_FORMS in message and "reflect, edge, constant" in message
    with pytest.raises(TypeError, match="from_spec: spec must be a string"):
        A.from_spec(None)


# ---------------------------------------------------------------------------------------------- errors

@pytest.mark.parametrize("call, error, match", [
    (lambda x: A.random_translate(KEY, x, pad=-1), ValueError, r"random_translate: pad=-1 must be an int >= 0"),
    (lambda x: A.random_crop(KEY, x, pad=1.5), TypeError, r"random_crop: pad must be an int >= 0.*float 1.5"),
    (lambda x: A.random_translate(KEY, x, pad=True), TypeError, r"random_translate: pad must be an int"),
    (lambda x: A.random_translate(KEY, x, pad=1, mode="wrap"), ValueError,
     r"random_translate: mode='wrap'; valid: 'reflect', 'edge', 'constant'"),
    (lambda x: A.random_flip(KEY, x, p=1.5), ValueError, r"random_flip: p=1.5 must be a probability in \[0, 1\]"),
    (lambda x: A.random_flip(KEY, x, p=-0.1), ValueError, r"random_flip: p=-0.1"),
    (lambda x: A.random_flip(KEY, x, p=float("nan")), ValueError, r"random_flip: p=nan"),
    (lambda x: A.random_flip(KEY, x, p=jnp.float32(0.5)), TypeError, r"random_flip: p must be a Python or NumPy"),
    (lambda x: A.cutout(KEY, x, size=-2), ValueError, r"cutout: size=-2 must be an int >= 0"),
    (lambda x: A.cutout(KEY, x[0], size=2), ValueError,
     r"cutout: images of shape \(7, 8, 3\) has rank 3, but it must be a batch of NHWC images"),
    (lambda x: A.random_flip(KEY, x[..., None]), ValueError, r"random_flip: images of shape \(6, 7, 8, 3, 1\)"),
    (lambda x: A.random_flip(KEY, x.astype(bool)), TypeError, r"random_flip: images has dtype bool"),
    (lambda x: A.random_flip(0, x), TypeError, r"random_flip: key must be a key from jax.random.key.*int 0"),
    (lambda x: A.random_translate(jnp.zeros(3, jnp.uint32), x, pad=1), TypeError,
     r"random_translate: key must be a key"),
    (lambda x: A.cutout(jax.random.split(KEY, 2), x, size=1), TypeError, r"cutout: key must be a key"),
    (lambda x: A.compose(AUGS["flip"])(1, x), TypeError, r"compose: key must be a key"),
    (lambda x: A.compose(AUGS["flip"], "translate"), TypeError, r"compose: augmentation 1 must be a callable"),
    (lambda x: A.translate(x, np.zeros((6, 3), np.int32), pad=1), ValueError,
     r"translate: offsets of shape \(6, 3\) must have shape \(N, 2\) of \(dy, dx\) = \(6, 2\)"),
    (lambda x: A.translate(x, np.zeros((6, 2), np.float32), pad=1), TypeError, r"translate: offsets has dtype"),
    (lambda x: A.cutout_at(x, np.zeros((5, 2), np.int32), size=1), ValueError, r"cutout_at: centers of shape"),
    (lambda x: A.flip(x, np.zeros(6, np.int32)), ValueError, r"flip: mask of dtype int32"),
])
def test_errors_name_function_argument_and_value(call, error, match):
    with pytest.raises(error, match=match):
        call(_images(np.uint8))
