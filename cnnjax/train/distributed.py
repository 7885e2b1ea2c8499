"""Joining several processes into one JAX runtime (multi-host data parallel training).

`initialize` calls ``jax.distributed.initialize(coordinator_address, num_processes, process_id)`` with values
from its arguments or, when absent, from the environment: ``CNNJAX_COORDINATOR`` / ``JAX_COORDINATOR_ADDRESS``
("host:port" of process 0), ``CNNJAX_NUM_PROCESSES`` / ``JAX_NUM_PROCESSES`` and ``CNNJAX_PROCESS_ID`` /
``JAX_PROCESS_ID``. On managed clusters (SLURM, TPU pods, ...) jax detects all three itself: call with
``auto=True``. Must run before any other jax call that touches devices. After it, ``jax.devices()`` lists every
process's devices and `fit(..., parallel="shard")` trains on one global batch, each process placing only the
rows that its devices hold.
"""
from __future__ import annotations

import os

import jax


def _env(*names):
    for n in names:
        if os.environ.get(n):
            return os.environ[n]
    return None


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, auto: bool = False) -> bool:
    """Join the processes; returns True if jax.distributed was initialised, False for a single process."""
    coordinator_address = coordinator_address or _env("CNNJAX_COORDINATOR", "JAX_COORDINATOR_ADDRESS")
    num_processes = num_processes if num_processes is not None else _env("CNNJAX_NUM_PROCESSES",
                                                                         "JAX_NUM_PROCESSES")
    process_id = process_id if process_id is not None else _env("CNNJAX_PROCESS_ID", "JAX_PROCESS_ID")
    if auto and coordinator_address is None:
        jax.distributed.initialize()
        return True
    if coordinator_address is None and num_processes is None and process_id is None:
        return False
    if coordinator_address is None or num_processes is None or process_id is None:
        raise ValueError("initialize: a multi-process run needs coordinator_address, num_processes and "
                         f"process_id together; got {coordinator_address!r}, {num_processes!r}, {process_id!r}.")
    num_processes, process_id = int(num_processes), int(process_id)
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise ValueError(f"initialize: need num_processes >= 1 and 0 <= process_id < num_processes, got "
                         f"num_processes={num_processes}, process_id={process_id}.")
    jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                               process_id=process_id)
    return True
