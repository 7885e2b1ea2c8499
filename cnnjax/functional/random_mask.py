"""Bernoulli keep-masks for dropout from a keyed counter hash: the same distribution as
``jax.random.bernoulli``, at a small fraction of its cost.

``jax.random.bernoulli`` runs the Threefry-2x32 block cipher (20 rounds) for every element. For a dropout layer
after the first convolution of a small CNN that is millions of elements per step, a large share of a CPU
training step (``experiments/SPEED.md``). A dropout mask needs independent, uniform bits per element,
not a cipher, so :func:`keep_mask` draws two 32-bit words from the key with ``jax.random.bits`` (Threefry, so
keys split and fold exactly as anywhere else in JAX) and mixes them with the element's index::

    h(i) = fmix32(fmix32(i * 0x9E3779B9 + s0) ^ s1)        keep element i  iff  h(i) < round(keep_prob * 2**32)

``fmix32`` is MurmurHash3's 32-bit finaliser (xor-shift 16, multiply 0x85EBCA6B, xor-shift 13, multiply
0xC2B2AE35, xor-shift 16), a bijection of the 32-bit words with full avalanche; ``i * 0x9E3779B9 + s0`` is a
bijection too, so for one key the ``h(i)`` are distinct 32-bit words and the kept fraction is ``keep_prob``
up to ``2**-32``. The mask is the same on every backend for the same key (its cost against
``jax.random.bernoulli``: ``experiments/bench_cpu_ops.py --only dropout``).
``tests/test_dense_dropout_losses.py`` holds it against a NumPy transcription of the formula and checks the
kept fraction, the independence of elements and keys, and uniformity of the hash.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

from cnnjax import _args

__all__ = ["keep_mask", "fmix32"]

_GOLDEN = 0x9E3779B9
_MAX_ELEMENTS = 2 ** 32        # the counter is one uint32 per element


def fmix32(h):
    """MurmurHash3's 32-bit finaliser on a ``uint32`` array (a bijection with full avalanche)."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def keep_mask(rng, shape, keep_prob: float):
    """Boolean array of ``shape``: each element True with probability ``keep_prob``, independently.

    ``rng`` is a ``jax.random`` key (typed or raw uint32); ``keep_prob`` a Python float in ``[0, 1]``.
    Arrays of ``2**32`` elements or more fall back to ``jax.random.bernoulli``.
    """
    if not 0.0 <= keep_prob <= 1.0:
        raise ValueError(f"keep_mask: keep_prob={keep_prob!r} must be in [0, 1].")
    shape = tuple(shape)
    n = math.prod(shape)
    # A jax.export symbolic shape (a symbolic batch) takes the hash: its size is assumed below 2**32 elements
    # (whether it is cannot be decided when exporting).
    if _args.surely(lambda: n >= _MAX_ELEMENTS):
        return jax.random.bernoulli(rng, keep_prob, shape)
    if keep_prob >= 1.0:
        return jnp.ones(shape, bool)
    seeds = jax.random.bits(rng, (2,), jnp.uint32)
    index = lax.iota(jnp.uint32, n).reshape(shape)
    h = fmix32(fmix32(index * jnp.uint32(_GOLDEN) + seeds[0]) ^ seeds[1])
    return h < jnp.uint32(min(round(keep_prob * 2.0 ** 32), 2 ** 32 - 1))
