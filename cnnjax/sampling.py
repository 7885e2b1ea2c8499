"""Which rows to keep when only ``count`` of ``n`` examples are wanted: plain NumPy, no jax.

Datasets read from disk are often sorted by class (an image folder is read class by class, so the
JPEG-folder copy of CIFAR-10 lists its training images class by class), so the first ``count`` rows can all be one
class. :func:`spread_indices` picks rows evenly over the whole set instead: on a shuffled set that is as good as
the first rows, on a sorted one it keeps every class in its proportion.
"""
from __future__ import annotations

import numpy as np

from cnnjax._args import check_int

__all__ = ["spread_indices"]


def spread_indices(n: int, count: int) -> np.ndarray:
    """``count`` row indices spread evenly over ``range(n)``: ``(arange(count) * n) // count``, increasing,
    without repeats, from row 0; all ``n`` rows where ``count >= n``. On ``n`` rows sorted into equal classes,
    every class gets ``count / classes`` rows, give or take one, whether or not ``count`` divides ``n``."""
    n = check_int(n, "n", "spread_indices", minimum=0)
    count = check_int(count, "count", "spread_indices")
    if count >= n:
        return np.arange(n)
    return (np.arange(count, dtype=np.int64) * n) // count
