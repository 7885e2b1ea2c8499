"""The fast in-memory path: a whole split held on the device as uint8, shuffled, batched, normalised and
augmented there, so that a whole epoch can run inside one jitted function (e.g. `lax.scan` over the batches).

Everything here is pure jax, jit-able (`batch_size`, `pad` and `flip` are static), and a deterministic function
of its PRNG key: the same key gives the same batches and crops, bit for bit on CPU.

    images_u8 = jax.device_put(split.images)          # (n, h, w, c) uint8, from load(..., as_uint8=True)
    xs, ys = epoch_batches(key, images_u8, labels, 128)  # (steps, 128, h, w, c), (steps, 128)
    def step(state, batch):
        k, x, y = batch
        x = to_float(random_crop_flip(k, x, pad=4), mean=CIFAR_MEAN, std=CIFAR_STD)
        ...
    state, _ = jax.lax.scan(step, state, (jax.random.split(key2, len(xs)), xs, ys))
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from cnnjax._args import check_int
from cnnjax.functional.checks import prng_key


def check_batch_size(batch_size, split_size: int, *, where: str) -> int:
    """`batch_size` as a Python int (static under jit) if 1 <= batch_size <= split_size, else ValueError/TypeError
    naming `where`."""
    batch_size = check_int(batch_size, "batch_size", where)
    if batch_size > split_size:
        raise ValueError(
            f"{where}: batch_size={batch_size} is larger than the split ({split_size} examples); use a batch "
            f"size <= {split_size}."
        )
    return batch_size


def epoch_batches(key: jax.Array, images: jax.Array, labels: jax.Array, batch_size: int):
    """One epoch of shuffled batches, made on the device.

    perm = jax.random.permutation(key, n); steps = n // batch_size (the remaining n % batch_size examples of the
    permutation are dropped); batch i holds examples perm[i*batch_size:(i+1)*batch_size].
    images (n, ...) and labels (n,) -> (images (steps, batch_size, ...), labels (steps, batch_size)).
    """
    prng_key(key, "key", "epoch_batches")
    n = images.shape[0]
    if labels.shape[:1] != (n,):
        raise ValueError(
            f"epoch_batches: {n} images but labels of shape {labels.shape}; expected labels of shape ({n},)."
        )
    check_batch_size(batch_size, n, where="epoch_batches")
    steps = n // batch_size
    order = jax.random.permutation(key, n)[: steps * batch_size].reshape(steps, batch_size)
    return jnp.take(images, order, axis=0), jnp.take(labels, order, axis=0)


def to_float(images: jax.Array, mean=None, std=None, dtype=jnp.float32, *, channel_axis: int = -1) -> jax.Array:
    """x = images / 255 in `dtype`, then, if given, (x - mean) / std per channel; `images` must be uint8
    (TypeError otherwise: float images would be divided by 255 again).

    mean and std are sequences of length c (the size of `channel_axis`, the last axis for NHWC), on the [0, 1]
    scale, e.g. MNIST mean (0.1307,) std (0.3081,). Shape is unchanged. Computed as x_u8 * scale + shift with
    scale = 1 / (255 std), shift = -mean / std (equal to the formula up to float rounding).
    """
    if images.dtype != jnp.uint8:
        raise TypeError(f"to_float: images have dtype {images.dtype}, but to_float takes uint8 images (0..255) and "
                        "divides them by 255; pass uint8 images (e.g. from load(..., as_uint8=True)), or normalise "
                        "float images in [0, 1] directly as (x - mean) / std.")
    x = images.astype(dtype)
    if mean is None and std is None:
        return x / jnp.asarray(255, dtype)
    axis = channel_axis % images.ndim
    c = images.shape[axis]
    host_mean, host_std = _static(mean), _static(std)
    if host_std is not None and not (np.isfinite(host_std) & (host_std > 0)).all():
        raise ValueError(f"to_float: std={std!r} must be a finite number > 0 per channel (it divides).")
    if host_mean is not None and not np.isfinite(host_mean).all():
        raise ValueError(f"to_float: mean={mean!r} must be finite per channel.")
    mean = jnp.zeros((c,), dtype) if mean is None else jnp.asarray(mean, dtype)
    std = jnp.ones((c,), dtype) if std is None else jnp.asarray(std, dtype)
    if mean.shape != (c,) or std.shape != (c,):
        raise ValueError(
            f"to_float: mean shape {mean.shape} and std shape {std.shape} must both be ({c},), one value per "
            f"channel of axis {channel_axis} of images {images.shape}."
        )
    # scale and shift are laid out over all axes from the channel axis on and flattened, so the innermost loop
    # runs over one long contiguous row: broadcasting over c = 3 directly is ~5x slower on CPU.
    lead, trailing = images.shape[:axis], images.shape[axis:]
    per_channel = (c,) + (1,) * (len(trailing) - 1)
    row = (1,) * len(lead) + (-1,)

    def spread(v):
        return jnp.broadcast_to(v.reshape(per_channel), trailing).reshape(row)

    flat = x.reshape(lead + (-1,))
    return (flat * spread(1 / (255 * std)) + spread(-mean / std)).reshape(images.shape)


def _static(values) -> np.ndarray | None:
    """`values` as float64 where they are host values (a NumPy array, a number or a sequence of Python / NumPy
    numbers), else None: jax arrays, traced or not, are left unread."""
    if isinstance(values, np.ndarray):
        return values.astype(np.float64)
    numbers = (int, float, np.integer, np.floating)
    if isinstance(values, numbers) or (isinstance(values, (tuple, list)) and all(isinstance(v, numbers)
                                                                                 for v in values)):
        return np.asarray(values, np.float64)
    return None


def random_crop_flip(key: jax.Array, images: jax.Array, *, pad: int = 4, flip: bool = True) -> jax.Array:
    """CIFAR-style augmentation of an NHWC batch (n, h, w, c), any dtype; returns the same shape and dtype.

    Each image is zero-padded by `pad` pixels on all four sides to (h + 2*pad, w + 2*pad), then cropped back to
    (h, w) at an offset (dy, dx) drawn uniformly from {0, ..., 2*pad}^2; with `flip`, it is then mirrored left
    to right (w axis reversed) with probability 1/2. Offsets come from split(key)[0], flips from split(key)[1].
    """
    if images.ndim != 4:
        raise ValueError(f"random_crop_flip: images must be an NHWC batch (n, h, w, c), got shape {images.shape}.")
    if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0:
        raise ValueError(f"random_crop_flip: pad={pad!r}; it must be an int >= 0.")
    prng_key(key, "key", "random_crop_flip")
    n, h, w, c = images.shape
    if pad and pad >= min(h, w):
        raise ValueError(f"random_crop_flip: pad={pad} must be smaller than the image size {min(h, w)} (images "
                         f"{h}x{w}): with pad >= the size, some crops hold no pixel of the image, only padding.")
    key_crop, key_flip = jax.random.split(key)
    out = images
    if pad:
        padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        offsets = jax.random.randint(key_crop, (n, 2), 0, 2 * pad + 1)

        def crop(args):
            image, offset = args
            return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, c))

        # On CPU a sequential map of dynamic_slice (a memcpy per image) runs ~15x faster than vmap's gather
        # (0.2 s vs 7 s per CIFAR-10 epoch, experiments/bench_data.py); accelerators prefer the one gather.
        # Both give the same result for the same key.
        if jax.default_backend() == "cpu":
            out = jax.lax.map(crop, (padded, offsets))
        else:
            out = jax.vmap(lambda image, offset: crop((image, offset)))(padded, offsets)
    if flip:
        mirror = jax.random.bernoulli(key_flip, 0.5, (n,))
        out = jnp.where(mirror[:, None, None, None], out[:, :, ::-1, :], out)
    return out
