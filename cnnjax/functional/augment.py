"""Data augmentation as pure functions of ``(key, images) -> images``.

Every augmentation takes a ``jax.random`` key (typed, ``jax.random.key``, or raw, ``jax.random.PRNGKey``) and a
batch of NHWC images ``(N, H, W, C)`` of any integer or floating dtype (uint8 or float32 typically), and returns a
batch of the same shape and dtype. Each image gets its own independent draw from the key; the same key gives the
same output. They read only static values (shapes, dtypes, Python arguments) to validate, so they run under
``jax.jit`` (bind the keyword arguments first, e.g. ``functools.partial(random_translate, pad=2)``) and under
``jax.vmap`` (e.g. over a leading axis of keys and image batches). Keyword arguments are static Python values.

* :func:`random_flip` (``p=0.5``): image ``i`` is mirrored (its width axis reversed, ``out[i, y, x] =
  in[i, y, W - 1 - x]``) iff ``b_i = 1``, with ``b_i ~ Bernoulli(p)`` independent per image.
* :func:`random_translate` (``pad``, ``mode="reflect"``): image ``i`` is shifted by ``(dy_i, dx_i)`` with ``dy_i``
  and ``dx_i`` independent and uniform on ``{-pad, ..., pad}`` (``(2 pad + 1)**2`` equally likely offsets):
  ``out[i, y, x] = E(in[i])[y - dy_i, x - dx_i]`` where ``E`` extends the image beyond its borders by
  ``numpy.pad``'s ``mode``: ``"reflect"`` (mirror without repeating the edge pixel), ``"edge"`` (repeat the edge
  pixel) or ``"constant"`` (zeros). Equivalently: pad by ``pad`` on every side of H and W, then take the
  ``H x W`` window starting at ``(pad - dy_i, pad - dx_i)``, a random crop of the original size. A positive
  ``dy`` moves the content down, a positive ``dx`` to the right. The pad is applied once to the batch and the
  windows cut with ``jax.vmap`` of ``lax.dynamic_slice``; :func:`translate` does it for given offsets.
* :func:`random_crop` (``pad``, ``mode="constant"``): the same law as :func:`random_translate` (pad by ``pad``,
  crop back to ``H x W`` at a uniform position), with zero padding by default as in the usual CIFAR recipe
  (torchvision's ``RandomCrop(32, padding=4)``); ``random_crop(k, x, pad=p, mode=m)`` equals
  ``random_translate(k, x, pad=p, mode=m)``.
* :func:`cutout` (``size``, DeVries & Taylor 2017): a ``size x size`` square of image ``i`` is set to 0, rows
  ``[cy_i - size // 2, cy_i - size // 2 + size)`` and columns likewise, with the center ``(cy_i, cx_i)`` uniform
  on ``{0, ..., H - 1} x {0, ..., W - 1}``; the square is clipped at the borders, so it zeroes exactly
  ``size * size`` pixels (per channel) when it lies inside the image and fewer when it crosses a border.
  :func:`cutout_at` does it for given centers.
* :func:`compose` (``*augmentations``): one augmentation that splits its key into ``len(augmentations)`` keys
  (``jax.random.split``) and applies the augmentations in order, the ``j``-th with the ``j``-th key.
* :func:`from_spec` (``"flip,translate:2,cutout:8"``): the composition of the comma-separated tokens
  ``flip[:p]`` (p = 0.5), ``translate[:pad[:mode]]`` (pad = 2, reflect), ``crop[:pad[:mode]]`` (pad = 4,
  constant) and ``cutout[:size]`` (size = 8), in the order given; ``""`` or ``"none"`` is the identity.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax

from cnnjax import _args
from cnnjax.functional import checks

__all__ = ["random_flip", "random_translate", "random_crop", "cutout", "compose", "from_spec",
           "flip", "translate", "cutout_at", "MODES", "SPEC_FORMS"]

MODES = ("reflect", "edge", "constant")
SPEC_FORMS = "flip[:p], translate[:pad[:mode]], crop[:pad[:mode]], cutout[:size]"
_DEFAULT_TRANSLATE_PAD = 2
_DEFAULT_CROP_PAD = 4
_DEFAULT_CUTOUT_SIZE = 8


# ---------------------------------------------------------------------------------------------------- checks

def _images(images, fn: str):
    """``images`` as a jax array; ValueError unless it is a 4-D NHWC batch, TypeError unless integer/floating."""
    if isinstance(images, (list, tuple)) or not hasattr(images, "shape"):
        try:
            images = jnp.asarray(images)
        except TypeError as err:
            raise TypeError(f"{fn}: images must be an array of shape (N, H, W, C), got "
                            f"{checks.describe(images)}.") from err
    images = jnp.asarray(images)
    if images.ndim != 4:
        raise ValueError(
            f"{fn}: images of shape {tuple(images.shape)} has rank {images.ndim}, but it must be a batch of NHWC "
            f"images (N, H, W, C), rank 4; add a batch axis (images[None]) or a channel axis (images[..., None]).")
    if not (jnp.issubdtype(images.dtype, jnp.integer) or jnp.issubdtype(images.dtype, jnp.floating)):
        raise TypeError(f"{fn}: images has dtype {images.dtype}, but it must be an integer (e.g. uint8) or floating "
                        f"(e.g. float32) dtype.")
    return images


def _nonnegative_int(value, name: str, fn: str) -> int:
    if not _args.is_int(value):
        raise TypeError(f"{fn}: {name} must be an int >= 0 (a Python or NumPy int), got {checks.describe(value)}.")
    if value < 0:
        raise ValueError(f"{fn}: {name}={value!r} must be an int >= 0.")
    return int(value)


def _probability(value, name: str, fn: str) -> float:
    number = checks.host_number(value, name, fn)
    if not (math.isfinite(number) and 0.0 <= number <= 1.0):
        raise ValueError(f"{fn}: {name}={value!r} must be a probability in [0, 1].")
    return number


def _mode(value, fn: str) -> str:
    if not isinstance(value, str) or value not in MODES:
        raise ValueError(f"{fn}: mode={value!r}; valid: {', '.join(repr(m) for m in MODES)}.")
    return value


def _int_array(value, name: str, fn: str, n: int, shape_text: str):
    value = jnp.asarray(value)
    if value.shape != (n, 2):
        raise ValueError(f"{fn}: {name} of shape {tuple(value.shape)} must have shape {shape_text} = ({n}, 2) "
                         f"for images of batch size {n}.")
    if not jnp.issubdtype(value.dtype, jnp.integer):
        raise TypeError(f"{fn}: {name} has dtype {value.dtype}, but it must be an integer dtype (pixels).")
    return value.astype(jnp.int32)


# ---------------------------------------------------------------------------------------- deterministic parts

def flip(images, mask):
    """Mirrors (reverses the width axis of) image ``i`` of the NHWC batch iff ``mask[i]`` (bool, shape (N,))."""
    fn = "flip"
    images = _images(images, fn)
    mask = jnp.asarray(mask)
    if mask.shape != images.shape[:1] or mask.dtype != jnp.bool_:
        raise ValueError(f"{fn}: mask of dtype {mask.dtype} and shape {tuple(mask.shape)} must be bool of shape "
                         f"({images.shape[0]},), one entry per image.")
    return jnp.where(mask[:, None, None, None], images[:, :, ::-1, :], images)


def translate(images, offsets, *, pad: int, mode: str = "reflect"):
    """Shifts image ``i`` of the NHWC batch by ``offsets[i] = (dy, dx)``: ``out[i, y, x] = E(in[i])[y - dy,
    x - dx]``, ``E`` the extension of the image by ``numpy.pad``'s ``mode`` ('reflect', 'edge' or 'constant'
    (zeros)). ``pad`` (a static int >= 0) is the padding applied once to the batch; offsets (integer, shape
    (N, 2), traced or not) are clipped to ``[-pad, pad]``. Same shape and dtype as ``images``."""
    fn = "translate"
    images = _images(images, fn)
    pad = _nonnegative_int(pad, "pad", fn)
    mode = _mode(mode, fn)
    n, h, w, c = images.shape
    offsets = _int_array(offsets, "offsets", fn, n, "(N, 2) of (dy, dx)")
    if pad == 0:
        return images
    padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode=mode)
    starts = pad - jnp.clip(offsets, -pad, pad)          # the window's top-left corner in the padded image

    def window(image, start):
        return lax.dynamic_slice(image, (start[0], start[1], 0), (h, w, c))

    return jax.vmap(window)(padded, starts)


def cutout_at(images, centers, *, size: int):
    """Zeroes in image ``i`` the ``size x size`` square with rows ``[cy - size // 2, cy - size // 2 + size)`` and
    columns likewise, ``centers[i] = (cy, cx)`` (integer, shape (N, 2), traced or not), clipped at the borders;
    all channels. Same shape and dtype as ``images``."""
    fn = "cutout_at"
    images = _images(images, fn)
    size = _nonnegative_int(size, "size", fn)
    n, h, w, _ = images.shape
    centers = _int_array(centers, "centers", fn, n, "(N, 2) of (cy, cx)")
    if size == 0:
        return images
    lo = centers - size // 2                               # (N, 2): first row, first column (may be < 0)
    hi = lo + size
    rows = lax.broadcasted_iota(jnp.int32, (1, h), 1)
    cols = lax.broadcasted_iota(jnp.int32, (1, w), 1)
    in_rows = (rows >= lo[:, :1]) & (rows < hi[:, :1])     # (N, H)
    in_cols = (cols >= lo[:, 1:]) & (cols < hi[:, 1:])     # (N, W)
    square = in_rows[:, :, None, None] & in_cols[:, None, :, None]
    return jnp.where(square, jnp.zeros((), images.dtype), images)


# ------------------------------------------------------------------------------------------- augmentations

def random_flip(key, images, *, p: float = 0.5):
    """Mirrors each image of the NHWC batch (reverses its width axis) with probability ``p``, independently per
    image (``Bernoulli(p)`` draws from ``key``). ``p`` is a static number in [0, 1]. Same shape and dtype."""
    fn = "random_flip"
    key = checks.prng_key(key, "key", fn)
    images = _images(images, fn)
    p = _probability(p, "p", fn)
    mask = jax.random.bernoulli(key, p, (images.shape[0],))
    return flip(images, mask)


def _random_shift(key, images, pad, mode, fn):
    key = checks.prng_key(key, "key", fn)
    images = _images(images, fn)
    pad = _nonnegative_int(pad, "pad", fn)
    mode = _mode(mode, fn)
    if pad == 0:
        return images
    offsets = jax.random.randint(key, (images.shape[0], 2), -pad, pad + 1, dtype=jnp.int32)
    return translate(images, offsets, pad=pad, mode=mode)


def random_translate(key, images, *, pad: int, mode: str = "reflect"):
    """Shifts each image of the NHWC batch by ``(dy, dx)``, each uniform on ``{-pad, ..., pad}`` and independent
    (per axis and per image), filling the uncovered border by ``mode``: 'reflect', 'edge' or 'constant' (zeros).
    Equivalent to padding by ``pad`` and cropping the original size at a uniform position. ``pad`` is a static
    int >= 0 (0: the identity). Same shape and dtype. See :func:`translate` for the exact formula."""
    return _random_shift(key, images, pad, mode, "random_translate")


def random_crop(key, images, *, pad: int, mode: str = "constant"):
    """Pads each image of the NHWC batch by ``pad`` on every side of H and W (``mode``, zeros by default) and
    crops back to ``H x W`` at a position uniform on ``{0, ..., 2 pad}^2``, independently per image: the law of
    :func:`random_translate` (which defaults to reflect padding). Same shape and dtype."""
    return _random_shift(key, images, pad, mode, "random_crop")


def cutout(key, images, *, size: int):
    """Cutout (DeVries & Taylor 2017): zeroes in each image of the NHWC batch a ``size x size`` square (all
    channels) around a center uniform over the image's pixels, clipped at the borders (fewer than ``size**2``
    pixels then). ``size`` is a static int >= 0 (0: the identity). Same shape and dtype."""
    fn = "cutout"
    key = checks.prng_key(key, "key", fn)
    images = _images(images, fn)
    size = _nonnegative_int(size, "size", fn)
    if size == 0:
        return images
    n, h, w, _ = images.shape
    centers = jax.random.randint(key, (n, 2), 0, jnp.array([[h, w]], jnp.int32), dtype=jnp.int32)
    return cutout_at(images, centers, size=size)


def compose(*augmentations):
    """One augmentation ``(key, images) -> images`` applying ``augmentations`` (each ``(key, images) -> images``)
    in order, the ``j``-th with the ``j``-th of ``jax.random.split(key, len(augmentations))``. No augmentations:
    the identity. The result's ``augmentations`` attribute holds them."""
    fn = "compose"
    for j, aug in enumerate(augmentations):
        if not callable(aug):
            raise TypeError(f"{fn}: augmentation {j} must be a callable (key, images) -> images, got "
                            f"{checks.describe(aug)}; bind keyword arguments with functools.partial or use "
                            f"from_spec('flip,translate:2').")
    augmentations = tuple(augmentations)

    def composed(key, images):
        key = checks.prng_key(key, "key", "compose")
        if not augmentations:
            return images
        keys = jax.random.split(key, len(augmentations))
        for k, aug in zip(keys, augmentations):
            images = aug(k, images)
        return images

    composed.augmentations = augmentations
    return composed


# ------------------------------------------------------------------------------------------------ from_spec

def _spec_error(spec, token, why):
    return ValueError(f"from_spec: bad token {token!r} in {spec!r}: {why}; valid: comma-separated {SPEC_FORMS} "
                      f"(modes: {', '.join(MODES)}), e.g. 'flip,translate:2,cutout:8', or '' / 'none' for no "
                      f"augmentation.")


def _spec_int(spec, token, text, what):
    if not text.strip().isdigit():
        raise _spec_error(spec, token, f"{what} {text!r} is not an int >= 0")
    return int(text)


def from_spec(spec: str):
    """The :func:`compose` of the augmentations named by ``spec``, comma-separated, applied in the order given:
    ``flip[:p]`` (:func:`random_flip`, p = 0.5), ``translate[:pad[:mode]]`` (:func:`random_translate`, pad = 2,
    mode reflect), ``crop[:pad[:mode]]`` (:func:`random_crop`, pad = 4, mode constant), ``cutout[:size]``
    (:func:`cutout`, size = 8). ``""`` or ``"none"``: the identity. The result's ``spec`` attribute is the
    normalised spec (every default written out), e.g. ``'flip:0.5,translate:2:reflect'``. ValueError naming the
    bad token and the valid forms."""
    if not isinstance(spec, str):
        raise TypeError(f"from_spec: spec must be a string such as 'flip,translate:2,cutout:8', got "
                        f"{checks.describe(spec)}.")
    text = spec.strip()
    augmentations, normal = [], []
    if text.lower() not in ("", "none"):
        for raw in text.split(","):
            token = raw.strip()
            name, *args = [part.strip() for part in token.split(":")]
            name = name.lower()
            if name == "flip":
                if len(args) > 1:
                    raise _spec_error(spec, token, "flip takes at most one argument, p")
                p = 0.5
                if args:
                    try:
                        p = float(args[0])
                    except ValueError:
                        raise _spec_error(spec, token, f"p {args[0]!r} is not a number") from None
                    if not 0.0 <= p <= 1.0:
                        raise _spec_error(spec, token, f"p {args[0]!r} is not in [0, 1]")
                augmentations.append(functools.partial(random_flip, p=p))
                normal.append(f"flip:{p:g}")
            elif name in ("translate", "crop"):
                if len(args) > 2:
                    raise _spec_error(spec, token, f"{name} takes at most two arguments, pad and mode")
                pad = _DEFAULT_TRANSLATE_PAD if name == "translate" else _DEFAULT_CROP_PAD
                mode = "reflect" if name == "translate" else "constant"
                if args:
                    pad = _spec_int(spec, token, args[0], "pad")
                if len(args) == 2:
                    mode = args[1].lower()
                    if mode not in MODES:
                        raise _spec_error(spec, token, f"mode {args[1]!r} is not one of {', '.join(MODES)}")
                fn = random_translate if name == "translate" else random_crop
                augmentations.append(functools.partial(fn, pad=pad, mode=mode))
                normal.append(f"{name}:{pad}:{mode}")
            elif name == "cutout":
                if len(args) > 1:
                    raise _spec_error(spec, token, "cutout takes at most one argument, size")
                size = _spec_int(spec, token, args[0], "size") if args else _DEFAULT_CUTOUT_SIZE
                augmentations.append(functools.partial(cutout, size=size))
                normal.append(f"cutout:{size}")
            else:
                why = "empty token" if not token else f"unknown augmentation {name!r}"
                raise _spec_error(spec, token, why)
    composed = compose(*augmentations)
    composed.spec = ",".join(normal) or "none"
    return composed
