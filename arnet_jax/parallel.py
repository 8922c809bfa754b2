"""Data parallelism: a 1-D device mesh, batches sharded over it, state replicated.

The train step is written for the global batch and jitted over arrays sharded along the mesh's
batch axis (`NamedSharding`, big_vision's update step): XLA partitions it, averages the
gradients and computes BatchNorm statistics and action usage over the global batch. Models and
losses name no axis. This is what current JAX recommends instead of `jax.pmap` (in maintenance
mode). The same code runs on one CPU, 8 GPUs or a multi-host TPU pod (after
`jax.distributed.initialize()`); each process feeds the batch of its own devices.

Multi-host: `initialize_distributed(config)` starts JAX's multi-controller runtime (one process
per host, or per GPU); every process then runs the same program on the global mesh.
"""
from __future__ import annotations

import itertools
import signal
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from arnet_jax import errors

BATCH_AXIS = 'batch'


def make_mesh(devices: list | None = None) -> Mesh:
  """A 1-D mesh over all (global) devices, or the given ones."""
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), (BATCH_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(BATCH_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def shard_batch(mesh: Mesh, batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
  """Per-process host batch `[B_local, ...]` -> global arrays `[B_local * processes, ...]`.

  Each process passes its own part; its rows land on its own devices.
  """
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in batch.items()}


def local_batch_size(global_batch: int, field: str) -> int:
  """This process's share of a global batch that every device divides (`field` names it)."""
  if global_batch % jax.device_count():
    raise errors.UserError(f'{field}={global_batch} must be a multiple of the '
                           f'{jax.device_count()} devices.')
  return global_batch // jax.process_count()


def check_process_batch_size(batch_size: int) -> None:
  """A per-process batch must split evenly over this process's devices."""
  devices = jax.local_device_count()
  if batch_size < 1 or batch_size % devices:
    raise errors.UserError(
        f'The per-process batch size {batch_size} must be a positive multiple of the '
        f'{devices} local devices, so each device gets the same share. Use e.g. '
        f'{max(1, round(batch_size / devices)) * devices}.')


def replicate(mesh: Mesh, tree: Any) -> Any:
  """The same value on every device of the mesh; every process must pass the same `tree`."""
  if jax.process_count() > 1:
    # From host memory: device_put of a committed single-device array onto other processes'
    # devices gives arrays whose shards Orbax cannot save (jax 0.10).
    tree = jax.device_get(tree)
  return jax.device_put(tree, replicated(mesh))


def to_host(tree: Any) -> Any:
  """Global arrays -> full numpy arrays on every process."""
  if jax.process_count() == 1:
    return jax.tree.map(np.asarray, tree)
  return multihost_utils.process_allgather(tree, tiled=True)


# --- Multi-host. --------------------------------------------------------------------------------

def initialize_distributed(config) -> None:
  """`jax.distributed.initialize` with the config's coordinator settings, if any.

  Left at their defaults, JAX detects them (Cloud TPU pods, SLURM, Open MPI). On CPU, processes
  exchange collectives through gloo (JAX's default CPU implementation).
  """
  kwargs = {}
  if config.coordinator_address:
    kwargs['coordinator_address'] = config.coordinator_address
  if config.num_processes > 0:
    kwargs['num_processes'] = config.num_processes
  if config.process_id >= 0:
    kwargs['process_id'] = config.process_id
  jax.distributed.initialize(**kwargs)
  # The first device collective sets up the CPU collectives (gloo), which give up after 30 s
  # if a process is late; do it now, while the processes are in step. Later waits are unbounded.
  barrier('distributed_initialized')
  multihost_utils.sync_global_devices('arnet_jax: collectives ready')


_barriers = itertools.count()


def barrier(name: str, timeout_s: int = 3600) -> None:
  """Waits until every process has reached this point (a no-op in a single process).

  Through the coordination service, not a device collective: on CPU, processes exchange
  collectives through gloo, whose first exchange gives up after 30 s, too short to wait for
  process 0 building a dataset. Every process must call the same barriers in the same order (a
  counter makes each name unique, as the service requires).
  """
  if jax.process_count() == 1:
    return
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  ocp.multihost.sync_global_processes(f'arnet_{name}_{next(_barriers)}', timeout=timeout_s,
                                      processes=set(range(jax.process_count())))


class StopOnSigterm:
  """SIGTERM (preemption, scancel, kill) -> stop at a step boundary all processes agree on.

  One process: a Python handler notes the signal and `requested(step)` is True from the next
  step on. Several: JAX's preemption service (started by `jax.distributed.initialize`) catches
  SIGTERM on any process and picks a step every process has not yet passed; `requested(step)`
  is True there on all of them, so they save the same checkpoint. Call it at every step on every
  process. `close()` restores the previous handler.
  """

  def __init__(self):
    self.signal = None
    self._previous = None
    self._service = jax.process_count() > 1 and jax.config.jax_enable_preemption_service
    if not self._service:
      self._previous = signal.signal(signal.SIGTERM, self._note)

  def _note(self, signum, frame):  # pylint: disable=unused-argument
    self.signal = signum

  def requested(self, step: int) -> bool:
    if self._service:
      if multihost_utils.reached_preemption_sync_point(step):
        self.signal = signal.SIGTERM
    return self.signal is not None

  def close(self) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None
