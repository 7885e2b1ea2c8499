"""Keep freed host memory in the process instead of handing it back to the kernel at every step (glibc).

XLA:CPU allocates each step's large temporaries with ``malloc`` and frees them at the end of the step. glibc
serves blocks above its mmap threshold (128 KiB at first, adapting up to 32 MiB) with fresh ``mmap`` pages and
returns them on ``free``, and trims the heap top above 128 KiB, so every step page-faults its activations in
again, which can be a large part of a small CNN's step (measurements: `experiments/SPEED.md`; PyTorch eager's
rows in `experiments/bench_speed.py` run with the same settings).

:func:`keep_freed_memory` raises the mmap threshold to 1 GiB, the trim threshold to 2 GiB and the heap top pad to
256 MiB with ``mallopt``, the same as the environment variables ``MALLOC_MMAP_THRESHOLD_=1073741824
MALLOC_TRIM_THRESHOLD_=2147483647 MALLOC_TOP_PAD_=268435456`` given before start-up. The cost: the process keeps
its peak heap after a step (resident memory does not shrink back between steps). It changes the whole process, so
nothing calls it unasked: ``fit(keep_freed_memory=True)`` does (``cnnjax train`` passes that on a CPU, unless
``--no-keep-freed-memory``); call it yourself in your own loop. ``CNNJAX_KEEP_FREED_MEMORY=0`` makes it a no-op.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["keep_freed_memory", "SETTINGS", "ENVIRONMENT"]

# mallopt parameter numbers from glibc's <malloc.h>: M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD.
SETTINGS = {-1: 2**31 - 1, -2: 256 << 20, -3: 1 << 30}
ENVIRONMENT = {"MALLOC_TRIM_THRESHOLD_": str(2**31 - 1), "MALLOC_TOP_PAD_": str(256 << 20),
               "MALLOC_MMAP_THRESHOLD_": str(1 << 30)}   # the same, for a process not yet started
_done = False


def keep_freed_memory() -> bool:
    """Apply :data:`SETTINGS` with glibc's ``mallopt`` once per process; True if they are in force.

    False (and nothing changed) off Linux/glibc, or with ``CNNJAX_KEEP_FREED_MEMORY=0``.
    """
    global _done
    if _done:
        return True
    if os.environ.get("CNNJAX_KEEP_FREED_MEMORY", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):     # musl and other libcs have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = all(mallopt(param, value) == 1 for param, value in SETTINGS.items())
    return _done
