"""Orbax checkpoints: the layout, saving, and reading back with clear errors.

A checkpoint directory is an Orbax `CheckpointManager` directory, one sub-folder per step:

  <dir>/<step>/state   {'params', 'batch_stats'} (+ 'opt_state', 'step', ... in training)
  <dir>/<step>/meta    JSON: {'config': the full config, 'stage', 'metrics', 'source', ...}

Training writes `WORKDIR/checkpoints` (periodic, keep N) and `WORKDIR/best` (best by mAP);
`tools.import_torch` writes a one-step directory. Saves are atomic (Orbax writes to a temporary
folder and renames it), so an interruption never leaves a half-written checkpoint behind.

Anything accepting a checkpoint path (`config.checkpoint`, `--checkpoint`) takes a workdir (its
`best/`, else `checkpoints/`), a manager directory (its latest step) or one step's folder.

Reading checks that a checkpoint is what was written (`checkpoint_integrity`: JSON files,
Orbax's reading, a checksum of every array that `save` writes into `meta`), else raises
`DamagedCheckpointError` naming its folder and what failed. Resuming (`restore_latest`) moves a
damaged checkpoint aside to `<dir>_damaged/<step>` (never deleting it) and takes the newest
intact one; one of another model than the configured one stops it, in plain words.
"""
from __future__ import annotations

import json
import os
from typing import Any

import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from flax import serialization, traverse_util

from arnet_jax import checkpoint_integrity as integrity
from arnet_jax import errors
from arnet_jax.checkpoint_integrity import DamagedCheckpointError  # what callers catch


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
  """Saves `state` (a pytree of host arrays) and `meta` (JSON) as step `step`, atomically;
  `meta['checksums']` gets every array's checksum, which reading verifies."""
  meta = dict(meta, checksums=integrity.checksums(state))
  mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                          meta=ocp.args.JsonSave(meta)), force=True)


def resolve(path: str) -> tuple[str, int]:
  """(manager directory, step) for a workdir, a manager directory or one step's folder."""
  path = os.path.abspath(os.path.expanduser(path))
  if not os.path.isdir(path):
    raise errors.PathNotFoundError(
        f'Checkpoint {path} does not exist. Give a training workdir, its checkpoints/ or best/ '
        'folder, or one step folder inside them.')
  if os.path.isdir(os.path.join(path, 'state')):  # one step's folder
    parent, step = os.path.split(path)
    if not step.isdigit():
      raise errors.UserError(f'{path} holds a state but is not named after its step.')
    return parent, int(step)
  for sub in ('best', 'checkpoints'):
    if os.path.isdir(os.path.join(path, sub)) and _steps(os.path.join(path, sub)):
      path = os.path.join(path, sub)
      break
  steps = _steps(path)
  if not steps:
    raise errors.PathNotFoundError(
        f'No checkpoint in {path}: expected step folders (e.g. {path}/100/) with a `state` '
        'inside, or a workdir with best/ or checkpoints/.')
  return path, max(steps)


def _steps(directory: str) -> list[int]:
  if not os.path.isdir(directory):
    return []
  return [int(d) for d in os.listdir(directory)
          if d.isdigit() and os.path.isdir(os.path.join(directory, d, 'state'))]


def load(path: str, target: Any = None) -> tuple[Any, dict]:
  """(state, meta) of the checkpoint at `path` (see `resolve` and `read`)."""
  return read(*resolve(path), target)


def read(directory: str, step: int, target: Any = None,
         config: dict | None = None) -> tuple[Any, dict]:
  """(state, meta) of step `step` of the manager directory `directory`, every array verified.

  With `target` (an abstract pytree, e.g. of `jax.ShapeDtypeStruct`) the stored structure is
  first checked against it (a UserError listing the differences, and how the saved config
  differs from `config`, when it does not fit) and the state is restored into it; without it,
  as saved (nested dicts/lists of arrays). Raises DamagedCheckpointError when a file cannot be
  read back as it was written.
  """
  folder = os.path.join(directory, str(step))
  integrity.check_json_files(folder)
  with ocp.CheckpointManager(directory) as reader:
    with integrity.damage_reported(folder):
      meta = dict(reader.restore(step, args=ocp.args.Composite(
          meta=ocp.args.JsonRestore())).meta or {})
      if target is not None:
        stored = ocp.StandardCheckpointHandler().metadata(epath.Path(folder, 'state')).tree
    if target is not None:
      _check_fits(stored, target, folder, meta.get('config'), config)
    with integrity.damage_reported(folder):
      state = reader.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(target))).state
  integrity.verify(state, meta.get('checksums', {}), folder)
  return state, meta


def restore_latest(mngr: ocp.CheckpointManager, target: Any,
                   config: dict | None = None) -> tuple[Any, dict] | None:
  """(state, meta) of the newest intact step of `mngr` (see `read`); None if it has no step.

  A damaged step is logged with what failed, moved aside to `<directory>_damaged/<step>`
  (never deleted) and the step before it tried; when none is intact, a UserError names the
  workdir and what to do. A step that does not fit `target` is a UserError (see `read`).
  """
  directory = os.fspath(mngr.directory)
  steps = sorted(mngr.all_steps(), reverse=True)
  for step in steps:
    try:
      return read(directory, step, target, config)
    except DamagedCheckpointError as e:
      logging.warning('%s\nMoving it to %s_damaged/ and trying the checkpoint before it.', e,
                      directory)
      integrity.move_aside(directory, step)
      mngr.reload()
  if steps:
    workdir = os.path.dirname(directory)
    raise errors.UserError(
        f'No intact checkpoint in {directory}: each was damaged and moved to {directory}_damaged/ '
        f'(the warnings above say why). To train from the start, pass another --workdir (or move '
        f'{workdir} aside); to resume, put an intact copy of a checkpoint (e.g. from a backup) '
        f'into {directory}/.')
  return None


def saved_config(path: str) -> ml_collections.ConfigDict:
  """The config training saved in the checkpoint at `path` (meta 'config'), over today's
  defaults (fields added since it was saved take their default); a UserError naming the fix
  when it has none (an imported backbone)."""
  from arnet_jax import defaults  # pylint: disable=g-import-not-at-top (imports the registry)
  directory, step = resolve(path)
  folder = os.path.join(directory, str(step))
  integrity.check_json_files(folder)
  with ocp.CheckpointManager(directory) as reader, integrity.damage_reported(folder):
    meta = reader.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta or {}
  if not meta.get('config'):
    raise errors.UserError(
        f'Checkpoint {folder} holds no config (an imported backbone?). Pass --config=FILE, the '
        'config of the model it holds.')
  config = defaults.get_config()
  with config.unlocked():
    _merge(config, meta['config'])
  return config


def job_config(path: str, config: ml_collections.ConfigDict | None = None,
               data_dir: str | None = None) -> ml_collections.ConfigDict:
  """The finalised config of a job reading the checkpoint at `path` (predict, export):
  `config` if given, else the one saved with it (`saved_config`); `data_dir` replaces
  `data.data_dir` (where the prepared dataset lies). A config mistake is a UserError."""
  from arnet_jax import defaults  # pylint: disable=g-import-not-at-top (imports the registry)
  config = config.copy_and_resolve_references() if config is not None else saved_config(path)
  if data_dir:
    config.data.data_dir = data_dir
  try:
    return defaults.finalize(config)
  except (KeyError, ValueError) as e:  # a config mistake, or a method this library lacks
    raise errors.UserError(e.args[0] if e.args else str(e)) from None


def _merge(node: ml_collections.ConfigDict, saved: dict) -> None:
  for key, value in saved.items():
    if isinstance(value, dict):
      if not isinstance(node.get(key), ml_collections.ConfigDict):
        node[key] = ml_collections.ConfigDict()
      _merge(node[key], value)
    else:
      node[key] = _tuples(value)  # JSON made the config's tuples lists


def _tuples(value: Any) -> Any:
  return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _check_fits(stored: Any, target: Any, folder: str, saved_config: dict | None,
                config: dict | None) -> None:
  """The model's variables, then the whole state, stored as `target` has them; otherwise a
  UserError listing the differences (`check_structure`) and the fix."""
  changes = config_changes(saved_config, config) if saved_config and config else []
  fix = ((f'It was trained with {"; ".join(changes)}.\n' if changes else '')
         + 'To train this config, pass another --workdir; to resume that run, use the config it '
         f'was trained with, saved beside it in {folder}/meta/metadata (its "config").')
  as_dicts = serialization.to_state_dict
  model = lambda tree: {k: tree[k] for k in ('params', 'batch_stats') if k in tree}
  stored, target = as_dicts(stored), as_dicts(target)
  for part in (model, lambda tree: tree):
    check_structure(part(stored), part(target), f'Checkpoint {folder}', fix=fix)


def config_changes(saved: dict, config: dict, fields: tuple[str, ...] = ('model', 'stage')
                   ) -> list[str]:
  """'model.num_classes=10 (this run: 3)' for each of `fields` (or their entries) where the
  saved config differs from `config`."""
  as_saved = json.loads(json.dumps(config))  # tuples become lists, as in the saved JSON
  flat = lambda c: traverse_util.flatten_dict({k: c.get(k) for k in fields}, sep='.')
  old, new = flat(saved), flat(as_saved)
  return [f'{k}={old.get(k)!r} (this run: {new.get(k)!r})'
          for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]


def load_variables(path: str, expected: Any = None) -> tuple[dict, dict]:
  """({'params', 'batch_stats'}, meta) of a checkpoint, checked against `expected` if given.

  `expected` is the model's variables (or their shapes, e.g. from `jax.eval_shape(model.init)`);
  a missing or unexpected name or a shape mismatch raises a UserError that lists them all.
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


def check_structure(got: Any, expected: Any, what: str, fix: str | None = None) -> None:
  """Raises a UserError naming every missing/unexpected entry and every shape mismatch, then
  `fix` (by default: check the config)."""
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
  lines.append(fix or 'Check that the config (model.backbones, resolutions, num_classes, '
               'widths, variant) is the one the checkpoint was made with.')
  raise errors.UserError('\n'.join(lines))


def _flat_shapes(tree: Any) -> dict[str, tuple[int, ...]]:
  return {k: tuple(np.shape(v)) for k, v in integrity.leaves(tree).items()} if isinstance(
      tree, dict) else {}


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
