"""Data parallelism: a 1-D device mesh, batches sharded over it, per-device steps.

The train step is written for one device with an explicit batch axis name (`BATCH_AXIS`):
gradients and batch statistics are averaged with `lax.pmean` over it, and BatchNorm layers
synchronise their statistics through the same name. `data_parallel` runs such a function with
`jax.shard_map` under `jax.jit` over the mesh; this is what current JAX recommends instead of
`jax.pmap` (in maintenance mode, itself now implemented with jit + shard_map). The same code runs
on one CPU, 8 GPUs or a multi-host TPU pod (after `jax.distributed.initialize()`); each process
feeds the batch of its own devices.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

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


def replicate(mesh: Mesh, tree: Any) -> Any:
  return jax.device_put(tree, replicated(mesh))


def data_parallel(step: Callable, mesh: Mesh, in_specs: tuple, out_specs: Any) -> Callable:
  """`step` (written per device, collectives over BATCH_AXIS) run over the whole mesh."""
  return jax.shard_map(step, mesh=mesh, in_specs=in_specs, out_specs=out_specs)


def to_host(tree: Any) -> Any:
  """Global arrays -> full numpy arrays on every process."""
  if jax.process_count() == 1:
    return jax.tree.map(np.asarray, tree)
  return multihost_utils.process_allgather(tree, tiled=True)
