"""Dense, flatten and dropout as pure functions."""
from __future__ import annotations

import jax.numpy as jnp

from cnnjax import shapes
from cnnjax.functional import checks, random_mask

__all__ = ["dense", "flatten", "dropout"]


def dense(x, kernel, bias=None):
    """``x @ kernel + bias`` over the last axis: ``(..., in_features) -> (..., units)``.

    ``kernel`` is ``(in_features, units)``, ``bias`` ``(units,)``; parameters ``in_features * units + units``.
    """
    fn = "dense"
    x = checks.floating(x, "x", fn)
    kernel = checks.floating(kernel, "kernel", fn)
    checks.rank(kernel, 2, "kernel", fn, "a dense kernel is (in_features, units)")
    if x.ndim < 1 or x.shape[-1] != kernel.shape[0]:
        raise ValueError(
            f"{fn}: x of shape {tuple(x.shape)} has {x.shape[-1] if x.ndim else 0} features on its last axis, but "
            f"kernel of shape {tuple(kernel.shape)} expects {kernel.shape[0]}; flatten the input first or fix the "
            f"kernel.")
    dtype = checks.common_dtype(x, kernel)
    # float16/bfloat16 products summed in float32 (returned in the inputs' dtype); float32/float64 unchanged
    acc = checks.accumulator(dtype)
    y = jnp.matmul(x.astype(dtype), kernel.astype(dtype), preferred_element_type=acc).astype(dtype)
    if bias is None:
        return y
    bias = checks.floating(bias, "bias", fn)
    if bias.shape != (kernel.shape[1],):
        raise ValueError(f"{fn}: bias of shape {tuple(bias.shape)} must have shape ({kernel.shape[1]},).")
    return y + bias.astype(dtype).reshape((1,) * (y.ndim - 1) + bias.shape)


def flatten(x):
    """``(N, d1, d2, ...) -> (N, d1 * d2 * ...)``: keeps the batch axis, in row-major (C) order; an empty batch
    ``(0, d1, ...)`` gives ``(0, d1 * d2 * ...)``."""
    x = jnp.asarray(x)
    if x.ndim < 1:
        raise ValueError("flatten: x is a scalar; it needs a batch axis.")
    features = 1
    for d in x.shape[1:]:   # not reshape(n, -1): -1 is undefined for n == 0 (ZeroDivisionError)
        features = features * d
    return x.reshape(x.shape[0], features)


def dropout(x, rate: float, *, rng=None, deterministic: bool = False):
    """Inverted dropout: zero each element with probability ``rate`` and scale the rest by ``1 / (1 - rate)``.

    Identity when ``deterministic`` or ``rate == 0``. ``rate`` is a static number (Python or NumPy, not a jax
    array); ``x`` must be floating. ``rng`` is a ``jax.random`` key (keyword-only). The mask
    has ``jax.random.bernoulli``'s distribution but comes from a keyed counter hash
    (:func:`cnnjax.functional.random_mask.keep_mask`), about 25x cheaper on CPU.
    """
    fn = "dropout"
    value = checks.host_number(rate, "rate", fn)   # it picks the mask's threshold in Python, before tracing
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{fn}: rate={rate!r} must be a number in [0, 1) (the fraction of units dropped).")
    rate = value
    deterministic = shapes.check_flag(deterministic, "deterministic", fn)
    x = checks.floating(x, "x", fn)
    if rng is not None:
        checks.prng_key(rng, "rng", fn)
    if deterministic or rate == 0.0:
        return x
    if rng is None:
        raise ValueError(f"{fn}: rng is None; pass rng=jax.random.key(...) or deterministic=True.")
    keep = random_mask.keep_mask(rng, x.shape, 1.0 - rate)   # = jax.random.bernoulli's law, ~25x cheaper
    return jnp.where(keep, x / jnp.asarray(1.0 - rate, x.dtype), jnp.zeros((), x.dtype))
