"""Where arrays live on the devices: the one home of batch and state placement (`parallel.py`'s strategies use it).

The global batch is split along its batch axis over the mesh axis "data": with d devices on that axis, device
i holds rows [i*b/d, (i+1)*b/d) (`data_sharding`); the state is replicated (`replicated`). Two ways to build the
global array in a multi-process job:

- `global_array(x, sharding)`: every process holds the same host value `x` (the whole batch, as `fit` does: each
  process reads the whole split) and transfers only the rows of its own devices;
- `shard_batch(batch, mesh)`: each process holds only its own rows, in process order (a process that reads only
  its share of the split, `process_share`), and the global array is assembled from them.
"""
from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def data_sharding(mesh: Mesh, axis: str = "data", *, batch_axis: int = 0) -> NamedSharding:
    """NamedSharding that splits array axis `batch_axis` (0 for a batch (b, ...); 1 for a stacked epoch
    (steps, b, ...) from `device.epoch_batches`) over mesh axis `axis` and replicates the rest."""
    if axis not in mesh.axis_names:
        raise ValueError(f"data_sharding: mesh has axes {mesh.axis_names}, no {axis!r}; make the mesh with an "
                         f"axis named {axis!r}, e.g. Mesh(jax.devices(), ({axis!r},)).")
    if batch_axis < 0:
        raise ValueError(f"data_sharding: batch_axis={batch_axis}; it must be >= 0.")
    return NamedSharding(mesh, PartitionSpec(*([None] * batch_axis), axis))


def replicated(mesh: Mesh) -> NamedSharding:
    """NamedSharding that keeps a whole copy of an array on every device of `mesh` (the state's layout)."""
    return NamedSharding(mesh, PartitionSpec())


def global_array(x, sharding) -> jax.Array:
    """A global jax.Array of `x` (the same host value on every process) laid out by `sharding`; each process
    transfers only the rows its own devices hold."""
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def check_divisible(batch_size: int, device_count: int, *, where: str) -> None:
    """ValueError unless the global batch size divides evenly over `device_count` devices."""
    if batch_size % device_count:
        raise ValueError(
            f"{where}: global batch size {batch_size} is not divisible by the {device_count} devices of the "
            f"'data' axis; use a multiple of {device_count}, e.g. {max(1, batch_size // device_count) * device_count}."
        )


def shard_batch(batch, mesh: Mesh, axis: str = "data", *, batch_axis: int = 0):
    """Place a pytree of arrays on `mesh`, their axis `batch_axis` split along mesh axis `axis`.

    Single process: each leaf holds the global batch (b rows on `batch_axis`). Multi-process: each leaf holds
    this process's b / process_count rows, in process order, and the result is the global array.
    Raises ValueError if the global batch size is not divisible by the devices on `axis`.
    """
    sharding = data_sharding(mesh, axis, batch_axis=batch_axis)
    devices = mesh.shape[axis]
    processes = jax.process_count()

    def put(leaf):
        if np.ndim(leaf) <= batch_axis:
            raise ValueError(f"shard_batch: a leaf of shape {np.shape(leaf)} has no batch_axis {batch_axis}.")
        rows = np.shape(leaf)[batch_axis] * processes
        check_divisible(rows, devices, where="shard_batch")
        if processes == 1:
            return jax.device_put(leaf, sharding)
        return jax.make_array_from_process_local_data(sharding, np.asarray(leaf))

    return jax.tree_util.tree_map(put, batch)


def process_share(n: int, process_index: int, process_count: int) -> slice:
    """The rows of an n-example split that process `process_index` of `process_count` reads.

    Every process gets the same number of rows, per = n // process_count, so all run the same number of steps:
    slice(process_index * per, (process_index + 1) * per); the last n % process_count rows are read by none.
    """
    if process_count < 1:
        raise ValueError(f"process_share: process_count={process_count}; it must be >= 1.")
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_share: process_index={process_index}; it must be in [0, {process_count}).")
    if n < process_count:
        raise ValueError(f"process_share: the split has {n} examples, fewer than the {process_count} processes.")
    per = n // process_count
    return slice(process_index * per, (process_index + 1) * per)
