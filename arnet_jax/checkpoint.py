"""Orbax checkpoints: the layout, saving, and reading back with clear errors.

A checkpoint directory is an Orbax `CheckpointManager` directory, one sub-folder per step:

  <dir>/<step>/state   {'params', 'batch_stats'} (+ 'opt_state', 'step', ... in training)
  <dir>/<step>/meta    JSON: {'config': the full config, 'stage', 'metrics', 'source', ...}

Training writes `WORKDIR/checkpoints` (periodic, keep N) and `WORKDIR/best` (best by mAP);
`tools.import_torch` writes a one-step directory. Saves are atomic (Orbax writes to a temporary
folder and renames it), so an interruption never leaves a half-written checkpoint behind.

Anything accepting a checkpoint path (`config.checkpoint`, `--checkpoint`) takes a workdir (its
`best/`, else `checkpoints/`), a manager directory (its latest step) or one step's folder.
"""
from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from flax import traverse_util


def manager(directory: str, max_to_keep: int | None = None) -> ocp.CheckpointManager:
  directory = os.path.abspath(directory)
  # In a multi-process job, saves synchronise through barriers named after the step, and a
  # barrier name may be used once per job: training saves a step to checkpoints/ and best/ at
  # once, and a recipe's stages save the same steps in <stage>/checkpoints, so the names get
  # the directory's last two path components (the same on every host).
  multiprocessing = ocp.options.MultiprocessingOptions(
      barrier_sync_key_prefix='_'.join(directory.split(os.sep)[-2:]))
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                         multiprocessing_options=multiprocessing)
  return ocp.CheckpointManager(directory, options=options)


def save(mngr: ocp.CheckpointManager, step: int, state: Any, meta: dict) -> None:
  """Saves `state` (a pytree of arrays) and `meta` (JSON) as step `step`, atomically."""
  mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                          meta=ocp.args.JsonSave(meta)), force=True)


def resolve(path: str) -> tuple[str, int]:
  """(manager directory, step) for a workdir, a manager directory or one step's folder."""
  path = os.path.abspath(os.path.expanduser(path))
  if not os.path.isdir(path):
    raise FileNotFoundError(f'Checkpoint {path} does not exist. Give a training workdir, its '
                            'checkpoints/ or best/ folder, or one step folder inside them.')
  if os.path.isdir(os.path.join(path, 'state')):  # one step's folder
    parent, step = os.path.split(path)
    if not step.isdigit():
      raise ValueError(f'{path} holds a state but is not named after its step.')
    return parent, int(step)
  for sub in ('best', 'checkpoints'):
    if os.path.isdir(os.path.join(path, sub)) and _steps(os.path.join(path, sub)):
      path = os.path.join(path, sub)
      break
  steps = _steps(path)
  if not steps:
    raise FileNotFoundError(f'No checkpoint in {path}: expected step folders (e.g. {path}/100/) '
                            'with a `state` inside, or a workdir with best/ or checkpoints/.')
  return path, max(steps)


def _steps(directory: str) -> list[int]:
  if not os.path.isdir(directory):
    return []
  return [int(d) for d in os.listdir(directory)
          if d.isdigit() and os.path.isdir(os.path.join(directory, d, 'state'))]


def load(path: str, target: Any = None) -> tuple[Any, dict]:
  """(state, meta) of the checkpoint at `path` (see `resolve`).

  With `target` (an abstract pytree, e.g. of `jax.ShapeDtypeStruct`) the state is restored into
  that structure; without it, as saved (nested dicts/lists of arrays).
  """
  directory, step = resolve(path)
  mngr = ocp.CheckpointManager(directory)
  restored = mngr.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
  return restored.state, dict(restored.meta or {})


def load_variables(path: str, expected: Any = None) -> tuple[dict, dict]:
  """({'params', 'batch_stats'}, meta) of a checkpoint, checked against `expected` if given.

  `expected` is the model's variables (or their shapes, e.g. from `jax.eval_shape(model.init)`);
  a missing or unexpected name or a shape mismatch raises a ValueError that lists them all.
  """
  state, meta = load(path)
  variables = {k: state[k] for k in ('params', 'batch_stats') if k in state}
  if expected is not None:
    expected = {k: expected[k] for k in ('params', 'batch_stats') if k in expected}
    check_structure(variables, expected, what=f'checkpoint {path}')
  return variables, meta


def select_variables(loaded: dict, expected: dict, what: str, *, strict: bool = True) -> dict:
  """The variables `expected` describes (the model's, or their shapes), taken from `loaded`.

  Entries of `loaded` the model does not use are left out (Uniform reads only `backbone_0` of an
  AR-Net checkpoint). An entry the model needs that `loaded` lacks, or has in another shape, is
  an error listing them all when `strict`; otherwise it keeps `expected`'s value, and both kinds
  of difference are logged (starting a model from a related checkpoint).
  """
  out = {}
  for collection, tree in expected.items():
    wanted = traverse_util.flatten_dict(tree, sep='/')
    have = traverse_util.flatten_dict(loaded.get(collection, {}), sep='/')
    taken = {k for k in wanted if k in have and np.shape(have[k]) == np.shape(wanted[k])}
    if not strict:
      for kind, names in (('keep their fresh initialisation', sorted(set(wanted) - taken)),
                          ('are not used by this model', sorted(set(have) - taken))):
        if names:
          logging.info('%s: %d %s entries %s: %s', what, len(names), collection, kind,
                       ', '.join(names[:10]) + (' ...' if len(names) > 10 else ''))
    if strict:  # as saved: check_structure names what is missing or of another shape
      chosen = {k: have[k] for k in wanted if k in have}
    else:
      chosen = {k: jnp.asarray(have[k]) if k in taken else wanted[k] for k in wanted}
    out[collection] = traverse_util.unflatten_dict(chosen, sep='/')
  if strict:
    check_structure(out, expected, what=what)
  return out


def check_structure(got: Any, expected: Any, what: str) -> None:
  """Raises ValueError naming every missing/unexpected entry and every shape mismatch."""
  flat_got = _flat_shapes(got)
  flat_expected = _flat_shapes(expected)
  missing = sorted(set(flat_expected) - set(flat_got))
  unexpected = sorted(set(flat_got) - set(flat_expected))
  mismatched = sorted(k for k in set(flat_got) & set(flat_expected)
                      if flat_got[k] != flat_expected[k])
  if not (missing or unexpected or mismatched):
    return
  lines = [f'{what} does not fit the model:']
  lines += [f'  missing:    {k} {flat_expected[k]}' for k in missing]
  lines += [f'  unexpected: {k} {flat_got[k]}' for k in unexpected]
  lines += [f'  shape:      {k} has {flat_got[k]}, the model needs {flat_expected[k]}'
            for k in mismatched]
  lines.append('Check that the config (model.backbones, resolutions, num_classes, widths, '
               'variant) is the one the checkpoint was made with.')
  raise ValueError('\n'.join(lines))


def _flat_shapes(tree: Any) -> dict[str, tuple[int, ...]]:
  flat = traverse_util.flatten_dict(jax.tree.map(lambda x: x, tree), sep='/') if isinstance(
      tree, dict) else {}
  return {k: tuple(np.shape(v)) for k, v in flat.items()}


def write_variables(directory: str, variables: dict, meta: dict, step: int = 0) -> str:
  """Writes model variables as a one-step checkpoint (used by the PyTorch importer).

  Refuses to write into a directory that already holds checkpoints, so nothing is overwritten.
  """
  directory = os.path.abspath(os.path.expanduser(directory))
  if _steps(directory):
    raise FileExistsError(f'{directory} already holds checkpoints; choose an empty or new '
                          'directory.')
  mngr = manager(directory)
  save(mngr, step, {k: variables[k] for k in ('params', 'batch_stats') if k in variables}, meta)
  mngr.wait_until_finished()
  mngr.close()
  return os.path.join(directory, str(step))
