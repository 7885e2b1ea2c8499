"""Data parallel training agrees with one device: 8 forced CPU devices (pmap and sharded jit) and 2 processes
joined by jax.distributed on 127.0.0.1. Each runs in a subprocess so that XLA_FLAGS / distributed setup come
before jax loads."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from cnnjax.train import fit
from test_parallel_worker import TinyCNN, toy_data

WORKER = os.path.join(os.path.dirname(__file__), "test_parallel_worker.py")


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]))
    env.pop("XLA_FLAGS", None)
    env.update(extra)
    return env


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((float(np.max(np.abs(np.asarray(a[k]) - np.asarray(b[k])))) for k in a), default=0.0)


@pytest.mark.slow
def test_none_pmap_shard_agree_on_8_cpu_devices(tmp_path):
    out = str(tmp_path / "modes.json")
    res = subprocess.run([sys.executable, WORKER, "modes", out], capture_output=True, timeout=400,
                         env=_env(XLA_FLAGS="--xla_force_host_platform_device_count=8"))
    assert res.returncode == 0, res.stderr.decode()[-3000:]
    r = json.load(open(out))
    assert r["devices"] == 8
    for name in ("plain", "bn"):
        ref = r[f"{name}/none/step"]
        for key, run in r.items():
            if not key.startswith(name + "/") or key.endswith("none/step"):
                continue
            # float32 sums in a different order: differences of a few ulp, far below any training effect
            assert _max_diff(run["params"], ref["params"]) < 5e-6, key
            assert _max_diff(run["batch_stats"], ref["batch_stats"]) < 5e-6, key
            np.testing.assert_allclose(run["loss"], ref["loss"], rtol=1e-5, err_msg=key)
    assert r["plain/none/step"]["loss"][1] < r["plain/none/step"]["loss"][0]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_equal_one_process(tmp_path):
    port, out = _free_port(), str(tmp_path / "dist.json")
    procs = [subprocess.Popen([sys.executable, WORKER, "distributed", out, str(port), str(i), "2"], env=_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for i in range(2)]
    errs = [p.communicate(timeout=300)[1].decode() for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(e[-2000:] for e in errs)
    r = json.load(open(out))
    assert r["processes"] == 2 and r["devices"] == 2
    # the same job in this single process, one device
    x, y = toy_data(128)
    state, hist = fit(TinyCNN(), (x, y), optimizer="adam", learning_rate=1e-2, epochs=2, batch_size=32,
                      progress=False, seed=5, validation_data=(x[:50], y[:50]))
    flat = {"/".join(str(k.key) for k in p): np.asarray(v)
            for p, v in __import__("jax").tree_util.tree_flatten_with_path(state.params)[0]}
    assert _max_diff(r["params"], flat) < 5e-6
    np.testing.assert_allclose(r["loss"], hist["loss"], rtol=1e-5)
    assert r["val_accuracy"] == pytest.approx(hist["val_accuracy"])


@pytest.mark.slow
@pytest.mark.long   # outside README's test command (CI's 8 minutes); `pytest -m long` runs it
def test_two_processes_agree_on_the_loop_probe(tmp_path):
    """Process 0 alone takes the long-scan branch of loop="measure"'s probe; the others follow its decisions
    (loop_choice._agreed), or they would call different collectives and hang."""
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, WORKER, "auto", str(tmp_path / "unused"), str(port), str(i), "2"],
                              env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(e.decode()[-2000:] for _, e in outs)
    lines = [next(line for line in o.decode().splitlines() if line.startswith("fit: loop='measure'")) for o, _ in outs]
    assert all("in a 8-step scan" in line for line in lines), lines     # both timed the run-length scan
    assert len({line.rsplit("using ", 1)[1] for line in lines}) == 1, lines


def test_batch_not_divisible_by_devices_and_pmap_note():
    import jax
    x, y = toy_data(32)
    n = jax.device_count()
    if n == 1:   # one device here: pmap works and says so
        with pytest.warns(UserWarning, match="--parallel pmap with a single device runs like parallel='none'"):
            fit(TinyCNN(), (x, y), epochs=1, batch_size=16, parallel="pmap", progress=False)
    else:
        with pytest.raises(ValueError, match=f"not divisible by the {n} devices"):
            fit(TinyCNN(), (x, y), epochs=1, batch_size=n + 1, parallel="shard", progress=False)
