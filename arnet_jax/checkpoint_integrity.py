"""Is a checkpoint what was written? Its JSON files, Orbax's reading, every array's checksum.

Damage (a disk fault, a full disk, an interrupted copy to or from a bucket) shows in three ways,
each turned into a `DamagedCheckpointError` naming the step's folder and what failed:

- a truncated or overwritten JSON file: `check_json_files` names it (Orbax's JSONDecodeError
  does not);
- a missing or truncated file: Orbax or TensorStore fail to read (`damage_reported`), naming
  the file, or the array and its `state/` folder;
- overwritten bytes in an array's file: zstd decodes them, silently, into other numbers, so
  `save` writes a CRC-32 of every array into the checkpoint's meta (`checksums`) and reading
  compares (`verify`).

`move_aside` is what resuming does with a damaged checkpoint: it keeps it, out of the manager's
sight, in `<directory>_damaged/<step>`.
"""
from __future__ import annotations

import contextlib
import json
import os
import zlib
from typing import Any, Iterator

import jax
import numpy as np
from flax import serialization
from jax.experimental import multihost_utils

from arnet_jax import errors

# The JSON files Orbax writes into a step's folder (orbax-checkpoint 0.12); a name a later
# version drops only goes unchecked here, as Orbax's own reading still fails on damage.
JSON_FILES = ('_CHECKPOINT_METADATA', 'state/_METADATA', 'meta/metadata')


class DamagedCheckpointError(errors.UserError):
  """A checkpoint's files cannot be read back as they were written."""


def check_json_files(folder: str) -> None:
  """Each of the step folder's JSON files that is there must parse."""
  for name in JSON_FILES:
    path = os.path.join(folder, name)
    if os.path.isfile(path):
      try:
        with open(path, 'rb') as f:
          json.loads(f.read().decode('utf-8'))
      except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise DamagedCheckpointError(f'Checkpoint {folder} is damaged: {name} is not valid '
                                     f'JSON ({e}).') from None


@contextlib.contextmanager
def damage_reported(folder: str) -> Iterator[None]:
  """Turns a failure to read `folder` (an OSError or ValueError from Orbax or TensorStore,
  perhaps wrapped in a plain Exception) into a DamagedCheckpointError with the first line of
  its message. Anything else is a bug and passes through."""
  try:
    yield
  except Exception as e:  # pylint: disable=broad-except (Orbax wraps TensorStore's errors)
    cause = e
    while cause is not None and not isinstance(cause, (OSError, ValueError)):
      cause = cause.__cause__
    if cause is None or isinstance(cause, errors.UserError):
      raise
    reason = str(cause).split(' [tensorstore_spec=')[0].splitlines()[0]
    raise DamagedCheckpointError(f'Checkpoint {folder} is damaged: {type(cause).__name__}: '
                                 f'{reason}') from e


def leaves(tree: Any) -> dict[str, Any]:
  """Every leaf of `tree` by its path ('params/backbone_0/head/kernel'): the same names for a
  `TrainState` (its fields, optax's states) and for the nested dicts and lists Orbax reads it
  back as without a target; empty nodes (None, optax's EmptyState) have none."""
  flat, _ = jax.tree_util.tree_flatten_with_path(serialization.to_state_dict(tree))
  return {jax.tree_util.keystr(path, simple=True, separator='/'): x for path, x in flat}


def checksums(tree: Any) -> dict[str, str]:
  """'<dtype>:<CRC-32 of the bytes>' of every array of `tree` (host arrays), by its path."""
  return {name: _checksum(x) for name, x in leaves(tree).items()}


def _checksum(x: Any) -> str:
  x = np.ascontiguousarray(x)
  return f'{x.dtype.name}:{zlib.crc32(x.view(np.uint8)):08x}'


def verify(state: Any, saved: dict[str, str], folder: str) -> None:
  """Every array read must have the checksum saved with it; one cast to another dtype by the
  reader's target, or saved without a checksum (older checkpoints), is not compared."""
  for name, x in leaves(state).items():
    want = saved.get(name)
    if want and want.split(':')[0] == np.dtype(x.dtype).name and _checksum(x) != want:
      raise DamagedCheckpointError(
          f'Checkpoint {folder} is damaged: the array {name} in state/ does not hold the values '
          f'that were saved (checksum {_checksum(x)}, saved {want}).')


def move_aside(directory: str, step: int) -> None:
  """Moves `directory/step` to `directory_damaged/step` (`step.2`, ... if taken), once per job;
  every process returns after the move."""
  if jax.process_index() == 0:
    aside = f'{directory}_damaged'
    os.makedirs(aside, exist_ok=True)
    dest, n = os.path.join(aside, str(step)), 1
    while os.path.exists(dest):
      n += 1
      dest = os.path.join(aside, f'{step}.{n}')
    os.rename(os.path.join(directory, str(step)), dest)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(f'arnet_jax moved {directory}/{step} aside')
