"""Data-parallel training over devices and hosts with JAX's own sharding and multi-process runtime.

The global batch is split along its batch axis over a one-axis device mesh ("batch"); parameters,
optimiser state and the step's key are replicated. The training step is the ordinary one
(`gtmm.train.make_train_step`), jitted over sharded inputs: XLA partitions it and inserts the
all-reduce of the gradients itself. Since the loss is the mean over the global batch and every
sequence's key is split from the one step key, the numbers are those of one device, up to the
order of floating-point sums.

Across hosts, `init_distributed` joins JAX's multi-process runtime (`jax.distributed`) before
anything touches a device; the mesh then spans every process's devices. Every process draws the
same global batch (a pure function of seed and step) and feeds only the rows its own devices hold.
Process 0 alone writes the run directory, which all processes must see (a shared file system) to
resume.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import equinox as eqx
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import Array, PyTree

from gtmm.errors import GtmmError

AXIS = "batch"


def init_distributed(coordinator: str | None = None, num_processes: int | None = None,
                     process_id: int | None = None) -> bool:
    """Join JAX's multi-process runtime; whether it was joined. Must run before any device is used.

    Each argument falls back to GTMM_COORDINATOR (or JAX's JAX_COORDINATOR_ADDRESS),
    GTMM_NUM_PROCESSES, GTMM_PROCESS_ID; with no coordinator at all nothing happens (one process).
    A missing count or id is left to JAX's cluster detection (Slurm, Open MPI, ...). On CPU the
    processes exchange gradients through gloo, JAX's default CPU collectives.
    """
    coordinator = coordinator or os.environ.get("GTMM_COORDINATOR") or os.environ.get("JAX_COORDINATOR_ADDRESS")
    if not coordinator:
        if num_processes is not None or process_id is not None:
            raise GtmmError("--num-processes and --process-id need --coordinator HOST:PORT (process 0's address)")
        return False
    num_processes = _env_int("GTMM_NUM_PROCESSES", num_processes)
    process_id = _env_int("GTMM_PROCESS_ID", process_id)
    host, _, port = coordinator.rpartition(":")
    if not host or not port.isdigit():
        raise GtmmError(f"coordinator {coordinator!r} is not HOST:PORT (e.g. 10.0.0.1:8476, process 0's host)")
    if num_processes is not None and num_processes < 1:
        raise GtmmError(f"the number of processes must be positive, got {num_processes}")
    if process_id is not None and num_processes is not None and not 0 <= process_id < num_processes:
        raise GtmmError(f"process id {process_id} is not in 0..{num_processes - 1} (--num-processes {num_processes})")
    if jax.distributed.is_initialized():
        return True
    try:
        jax.distributed.initialize(coordinator, num_processes, process_id)
    except (RuntimeError, ValueError) as e:  # e.g. a device already in use, or no process count found
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise GtmmError(f"cannot join the processes through {coordinator} ({first}); give --num-processes and"
                        " --process-id, and start every process before the first times out") from None
    return True


def _env_int(name: str, value: int | None) -> int | None:
    if value is not None or not os.environ.get(name):
        return value
    try:
        return int(os.environ[name])
    except ValueError:
        raise GtmmError(f"{name}={os.environ[name]!r} is not an integer") from None


@dataclass(frozen=True)
class DataParallel:
    """A one-axis mesh over `devices`: the batch split across them, everything else replicated."""

    mesh: Mesh

    @property
    def size(self) -> int:
        return self.mesh.size

    @property
    def writes(self) -> bool:
        """Whether this process writes the run directory (process 0 of a multi-process job)."""
        return jax.process_index() == 0

    def batch_sharding(self, batch_axis: int = 0) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec(*([None] * batch_axis), AXIS))

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec())

    def put(self, x: np.ndarray | Array, sharding: NamedSharding) -> Array:
        """A global array from a value every process holds whole; each process places only the
        parts its own devices hold (so it works across hosts, where `device_put` of a global
        sharding would not)."""
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    def put_batch(self, x: np.ndarray, batch_axis: int = 0) -> Array:
        """`x` (the global batch, e.g. frames `[batch, time, c, h, w]`) split over the mesh."""
        return self.put(x, self.batch_sharding(batch_axis))

    def replicate(self, tree: PyTree) -> PyTree:
        """Every array of `tree` (a model, an optimiser state, a key) on every device."""
        return jax.tree_util.tree_map(lambda x: self.put(x, self.replicated) if eqx.is_array(x) else x, tree)

    def jit(self, step):
        """`step` (a jitted training step) over sharded inputs, its outputs replicated."""
        return _replicated_outputs(step, self.replicated)

    def check_batch(self, batch_size: int, what: str = "the batch", fix: str | None = None) -> None:
        """Refuse a batch that does not split evenly over the devices; ``what`` names it and ``fix`` says
        what to change (default: the --batch-size or --devices flags of ``gtmm train``)."""
        if batch_size % self.size:
            lower = batch_size - batch_size % self.size
            fix = fix or (f"use a --batch-size that is a multiple of {self.size} (e.g. {lower or self.size} or"
                          f" {lower + self.size}) or fewer --devices")
            raise GtmmError(f"{what} of {batch_size} does not split evenly over {self.size} devices; {fix}")

    def barrier(self, name: str) -> None:
        """Wait until every process gets here (nothing to wait for in one process)."""
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(name)

    def agree(self, value: int, what: str) -> None:
        """An error when the processes disagree on `value` (e.g. the step a run resumes from)."""
        if jax.process_count() == 1:
            return
        from jax.experimental import multihost_utils

        first = int(multihost_utils.broadcast_one_to_all(np.int64(value)))
        if first != value:
            raise GtmmError(f"process {jax.process_index()} sees {what} {value} where process 0 sees {first}; the run"
                            " directory must be on a file system every process shares")


@functools.cache  # one compiled step per (step, mesh), as make_train_step caches per optimiser
def _replicated_outputs(step, replicated: NamedSharding):
    @eqx.filter_jit
    def sharded_step(*args):
        # Replicated outputs: parameters stay whole on every device and losses readable on every process.
        return eqx.filter_shard(step(*args), replicated)

    return sharded_step


def data_parallel(devices: int | str | None) -> DataParallel | None:
    """The mesh for `devices`: None or 1 in one process, one device (no mesh); "all", every
    device of every process; N, the first N devices. With several processes None means "all"
    (they train one run together) and N must be all of them."""
    if devices is None and jax.process_count() > 1:
        devices = "all"
    if devices is None or (devices == 1 and jax.process_count() == 1):
        return None
    available = jax.devices()
    if devices == "all":
        n = len(available)
    elif isinstance(devices, int) and not isinstance(devices, bool) and devices >= 1:
        n = devices
    else:
        raise GtmmError(f"devices must be a positive number or 'all', got {devices!r}")
    if n > len(available):
        hint = (" (on CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N makes N host devices)"
                if jax.default_backend() == "cpu" else "")
        raise GtmmError(f"{n} devices asked for but {len(available)} {jax.default_backend()} device(s) are"
                        f" available{hint}; use --devices {len(available)} or fewer")
    if jax.process_count() > 1 and n != len(available):
        raise GtmmError(f"with {jax.process_count()} processes the batch is split over all {len(available)} devices;"
                        f" use --devices all (or {len(available)})")
    return DataParallel(Mesh(np.array(available[:n]), (AXIS,)))
