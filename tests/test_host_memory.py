"""cnnjax.train.cpu_speed.host_memory: glibc keeps freed memory after keep_freed_memory(), and the switch turns it off.

Run in fresh interpreters, so the settings this process may already have (an earlier test may have asked for them)
do not matter.
The effect is checked through glibc itself: after a 64 MiB block is freed, the process keeps it mapped.
"""
import os
import subprocess
import sys

import pytest

# glibc's malloc and free, and the resident memory of this process (KiB), for the probes below
GLIBC = r"""
import ctypes
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]

def rss_kib():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS"))
"""

PROBE = GLIBC + r"""
from cnnjax.train.cpu_speed.host_memory import keep_freed_memory
applied = keep_freed_memory()
again = keep_freed_memory()
before = rss_kib()
p = libc.malloc(64 << 20)
ctypes.memset(p, 1, 64 << 20)           # touch every page
libc.free(p)
kept = rss_kib() - before > 32 << 10    # more than half of the block still resident after free
print(applied, again, kept)
"""


def _probe(env_extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.update(env_extra)
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True)
    return out.stdout.split()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_keep_freed_memory_keeps_a_freed_block():
    assert _probe({}) == ["True", "True", "True"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_switch_off_leaves_glibc_defaults():
    # glibc's default: a 64 MiB block is its own mmap, returned to the kernel by free()
    assert _probe({"CNNJAX_KEEP_FREED_MEMORY": "0"}) == ["False", "False", "False"]


def test_environment_matches_settings():
    from cnnjax.train.cpu_speed import host_memory
    by_name = {"MALLOC_TRIM_THRESHOLD_": -1, "MALLOC_TOP_PAD_": -2, "MALLOC_MMAP_THRESHOLD_": -3}
    assert {k: int(v) for k, v in host_memory.ENVIRONMENT.items()} == {
        k: host_memory.SETTINGS[p] for k, p in by_name.items()}


FIT_PROBE = GLIBC + r"""
import numpy as np
import cnnjax
from cnnjax import models
from cnnjax.train import fit

def kept():
    before = rss_kib()
    p = libc.malloc(64 << 20)
    ctypes.memset(p, 1, 64 << 20)
    libc.free(p)
    return rss_kib() - before > 32 << 10

x, y = np.zeros((8, 28, 28, 1), np.uint8), np.arange(8) % 10
fit(models.get("fashion_dnn"), (x, y), epochs=1, batch_size=8, progress=False, loop="step")
print(kept())
fit(models.get("fashion_dnn"), (x, y), epochs=1, batch_size=8, progress=False, loop="step", keep_freed_memory=True)
print(kept())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_fit_leaves_malloc_alone_unless_asked():
    """Importing cnnjax and a default fit change no process-wide malloc setting; fit(keep_freed_memory=True) does."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "CNNJAX_KEEP_FREED_MEMORY"}
    out = subprocess.run([sys.executable, "-c", FIT_PROBE], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "True"]
