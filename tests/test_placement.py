"""cnnjax.train.placement: mesh layout and per-process shares; the multi-device case runs in a subprocess with 4
host devices."""
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from jax.sharding import Mesh

from cnnjax.train.placement import data_sharding, global_array, process_share, replicated, shard_batch


def test_process_share_partitions_evenly():
    n, p = 103, 4
    slices = [process_share(n, i, p) for i in range(p)]
    rows = np.concatenate([np.arange(n)[s] for s in slices])
    assert [s.stop - s.start for s in slices] == [25] * 4
    np.testing.assert_array_equal(rows, np.arange(100))


@pytest.mark.parametrize("args, match", [((10, 2, 2), "process_index=2"), ((10, 0, 0), "process_count=0"),
                                         ((3, 0, 4), "fewer than the 4 processes")])
def test_process_share_errors(args, match):
    with pytest.raises(ValueError, match=match):
        process_share(*args)


def test_single_device_mesh():
    mesh = Mesh(np.array(jax.devices()[:1]), ("data",))
    out = shard_batch({"x": np.ones((4, 2)), "y": np.arange(4)}, mesh)
    assert out["x"].sharding == data_sharding(mesh)
    placed = global_array(np.arange(3), replicated(mesh))
    assert placed.sharding == replicated(mesh) and placed.tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="no 'data'"):
        data_sharding(Mesh(np.array(jax.devices()[:1]), ("batch",)))


def test_four_devices_split_rows_and_reject_indivisible():
    code = textwrap.dedent("""
        import jax, numpy as np
        from jax.sharding import Mesh
        from cnnjax.train.placement import data_sharding, global_array, replicated, shard_batch
        mesh = Mesh(np.array(jax.devices()), ("data",))
        x = np.arange(8 * 3).reshape(8, 3)
        out = shard_batch(x, mesh)
        rows = sorted((s.index[0].start, s.data.shape, int(s.data[0, 0])) for s in out.addressable_shards)
        assert rows == [(0, (2, 3), 0), (2, (2, 3), 6), (4, (2, 3), 12), (6, (2, 3), 18)], rows
        try:
            shard_batch(np.zeros((6, 3)), mesh)
        except ValueError as err:
            assert "6 is not divisible by the 4 devices" in str(err), err
        else:
            raise SystemExit("no error for batch 6 on 4 devices")
        xs = np.zeros((3, 8, 2))
        out = shard_batch(xs, mesh, batch_axis=1)
        assert {s.data.shape for s in out.addressable_shards} == {(3, 2, 2)}
        # global_array: the same host value on every process, each device given its rows (or a whole copy)
        placed = global_array(x, data_sharding(mesh))
        assert [(s.index[0].start, s.data.tolist()) for s in sorted(placed.addressable_shards,
                key=lambda s: s.index[0].start)] == [(i, x[i:i + 2].tolist()) for i in range(0, 8, 2)]
        copies = global_array(x, replicated(mesh))
        assert all(np.array_equal(s.data, x) for s in copies.addressable_shards) and len(copies.addressable_shards) == 4
        print("ok")
    """)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-2000:]


from hypothesis import given, strategies as st  # noqa: E402


@given(n=st.integers(1, 10_000), count=st.integers(1, 64))
def test_process_share_property(n, count):
    if n < count:
        with pytest.raises(ValueError, match="fewer than"):
            process_share(n, 0, count)
        return
    slices = [process_share(n, i, count) for i in range(count)]
    sizes = {s.stop - s.start for s in slices}
    assert sizes == {n // count}  # equal shares
    assert all(a.stop == b.start for a, b in zip(slices, slices[1:]))  # contiguous, disjoint
    assert slices[0].start == 0 and n - slices[-1].stop == n % count  # only the remainder is unread
