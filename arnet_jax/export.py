r"""Exports a checkpoint's evaluation forward as one serialized JAX program (docs/export.md).

  python -m arnet_jax.export --checkpoint=runs/my/finetune --out=exported/my \
      [--batch_size=1] [--platforms=cpu,cuda] [--saved_model] [--class_names=FILE] \
      [--data_dir=DIR] [--config=FILE [--config.x=y]]

What is exported: the method's evaluation forward, its registry entry's `inference` (what
`evaluate.Evaluator` calls), for one batch shape `[B, T, S, S, 3]` (B = --batch_size, T =
data.num_frames, S = data.image_size), jitted and serialised with `jax.export`. AR-Net's sparse
routing is its device dispatch: decisions, buckets and backbones in ONE program. The host
dispatch (`eval.dispatch=host`) reads the decisions on the host between programs, which no
single program can do: it is exported as the device dispatch (the same outputs). Where
evaluation resolves 'auto' by the backend it runs on (`eval.plan`, `model.kernels`), the
program holds one branch per setting (`lax.platform_dependent`), resolved as evaluation would
on each platform: the binary plan and CPU kernels on a CPU, the grid plan and XLA's kernels on
GPU and TPU. The Random baseline draws its actions from evaluation's first key
(`eval.seed`), the same draws on every call.

The folder written (read by `arnet_jax.serving`, which needs neither Flax nor this library):
  model.jax_export  the serialized `jax.export.Exported`: (weights, video) -> outputs dict
  variables.npz     weights {'params/backbone_0/...': array}: the checkpoint's variables the
                    model uses. An argument rather than constants: the program stays small (the
                    weights are not in it) and compiles faster (docs/export.md); `serving` puts
                    them on the device once.
  manifest.json     input shape, dtype and normalisation, outputs, class and action names,
                    GFLOPs per action, method, platforms, JAX version, checkpoint
  saved_model/      with --saved_model: a TensorFlow SavedModel of the same program (jax2tf)

The config is the one training saved in the checkpoint (`--config` replaces it). A user error
(a missing checkpoint, a bad config, an output folder in use) is one message, `error: ...`,
and exit status 2.

Shape letters: B videos, T frames, S the frame side, A actions, C classes.
"""
from __future__ import annotations

import datetime
import json
import logging as std_logging
import os
import shutil
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags, logging
from flax import traverse_util
from ml_collections import config_flags

from arnet_jax import checkpoint as ckpt_lib
from arnet_jax import errors, evaluate, flops, models, registry, serving
from arnet_jax.models import kernels

PLATFORMS = ('cpu', 'cuda', 'rocm', 'tpu')
DEFAULT_PLATFORMS = ('cpu', 'cuda')
PROGRAM, VARIABLES, SAVED_MODEL = 'model.jax_export', 'variables.npz', 'saved_model'
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # data.transforms' (importing it would import TensorFlow)
IMAGENET_STD = (0.229, 0.224, 0.225)


# --- The checkpoint and its config. ---------------------------------------------------------

def export_config(checkpoint: str, config: ml_collections.ConfigDict | None = None,
                  data_dir: str | None = None) -> ml_collections.ConfigDict:
  """The finalised config to export (`checkpoint.job_config`), which must name its classes."""
  config = ckpt_lib.job_config(checkpoint, config, data_dir)
  if config.model.num_classes is None:
    raise errors.UserError('The config leaves model.num_classes unset: pass '
                           '--config.model.num_classes=C, the classes the checkpoint was '
                           'trained on.')
  return config


def class_names(config: ml_collections.ConfigDict, path: str | None) -> list[str] | None:
  """The class names: from `path` (classInd.txt: one per line), else the prepared dataset's
  (`config.data`); None, with a warning, when neither is at hand."""
  if path:
    names, source = read_class_names(path), f'--class_names={path}'
  else:
    from arnet_jax import data as data_lib  # pylint: disable=g-import-not-at-top (TensorFlow)
    try:
      names = list(data_lib.get_builder(config.data).info.features['label'].names)
    except errors.UserError as e:
      logging.warning('The manifest gets no class names: the prepared dataset is not at hand '
                      '(%s). Pass --class_names=FILE or --data_dir=DIR.', str(e).split('. ')[0])
      return None
    source = f'The prepared dataset in {config.data.data_dir or "the TFDS default data_dir"}'
  if len(names) != config.model.num_classes:
    raise errors.UserError(f'{source} names {len(names)} classes but the model has '
                           f'{config.model.num_classes}.')
  return names


def read_class_names(path: str) -> list[str]:
  """classInd.txt as `data.annotations.read_class_names` reads it (one name per line, a leading
  index on every line dropped), without importing TensorFlow."""
  if not os.path.isfile(path):
    raise errors.PathNotFoundError(f'--class_names={path} does not exist.')
  with open(path, encoding='utf-8') as f:
    lines = [line.strip() for line in f if line.strip()]
  split = [line.split(maxsplit=1) for line in lines]
  if lines and all(len(p) == 2 and p[0].isdigit() for p in split):
    lines = [p[1] for p in split]
  return lines


# --- The program. -----------------------------------------------------------------------------

def platform_config(config: ml_collections.ConfigDict, platform: str) -> ml_collections.ConfigDict:
  """`config` as evaluation runs it on `platform`: the device dispatch, and 'auto' resolved as
  `routing.resolve_plan` and `kernels.get` resolve it there."""
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.eval.dispatch = 'device'
    if config.eval.plan == 'auto':
      config.eval.plan = 'binary' if platform == 'cpu' else 'grid'
    if config.model.kernels == 'auto':
      config.model.kernels = 'cpu' if platform == 'cpu' else 'xla'
  return config


def settings_by_platform(config: ml_collections.ConfigDict, platforms: Sequence[str]
                         ) -> dict[tuple[str, str], list[str]]:
  """(eval.plan, model.kernels) -> the platforms whose program uses them."""
  groups: dict[tuple[str, str], list[str]] = {}
  for platform in platforms:
    c = platform_config(config, platform)
    groups.setdefault((c.eval.plan, c.model.kernels), []).append(platform)
  return groups


def forward_fn(model, config: ml_collections.ConfigDict, platforms: Sequence[str]
               ) -> Callable[[dict, jax.Array], dict]:
  """`fn(weights, video) -> outputs`: the method's inference (weights `{'params/...': array}`,
  video `[B, T, S, S, 3]`), one `lax.platform_dependent` branch per setting of its platforms."""
  rng = jax.random.fold_in(jax.random.key(config.eval.seed), 0)  # the Evaluator's first key
  branches = {}
  for (_, kernel_set), group in settings_by_platform(config, platforms).items():
    inference = registry.of(config).inference(model, platform_config(config, group[0]))

    def branch(weights, video, inference=inference, kernel_set=kernel_set):
      kernels.select(kernel_set)  # the layers read it when traced, which is now
      variables = traverse_util.unflatten_dict(weights, sep='/')
      return dict(inference(variables, video, rng=rng))
    branches.update(dict.fromkeys(group, branch))
  if len(set(branches.values())) == 1:
    return next(iter(branches.values()))
  return lambda weights, video: jax.lax.platform_dependent(weights, video, **branches)


def export_forward(forward: Callable, weights: dict, video: jax.ShapeDtypeStruct,
                   platforms: Sequence[str]) -> jax.export.Exported:
  """`forward` traced for `weights`' shapes and `video`, lowered for `platforms`."""
  specs = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in weights.items()}
  previous = kernels.active()
  try:
    return jax.export.export(jax.jit(forward), platforms=tuple(platforms))(specs, video)
  except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError) as e:
    raise errors.UserError(f'This method\'s evaluation forward is not one program (it reads '
                           f'device values on the host), so it cannot be exported: {e}') from None
  finally:
    kernels.select(previous.name, scan_unroll=previous.scan_unroll)


# --- The folder. ------------------------------------------------------------------------------

def manifest(config: ml_collections.ConfigDict, exported: jax.export.Exported, checkpoint: str,
             names: list[str] | None, weights: dict, dispatch: str, saved_model: bool) -> dict:
  """manifest.json's content (see the module docstring and docs/export.md)."""
  method, table = registry.of(config), flops.cost_table(config.model)
  directory, step = ckpt_lib.resolve(checkpoint)
  outputs = jax.tree.unflatten(exported.out_tree, exported.out_avals)
  size = config.data.image_size
  groups = settings_by_platform(config, exported.platforms)
  return dict(
      format=serving.FORMAT, program=PROGRAM, variables=VARIABLES,
      saved_model=SAVED_MODEL if saved_model else None,
      method=dict(variant=config.model.variant, summary=method.summary),
      input=dict(name='video', shape=list(exported.in_avals[-1].shape),
                 dtype=str(exported.in_avals[-1].dtype), layout='[B, T, H, W, C] RGB',
                 normalisation=dict(name='ImageNet-normalised', mean=list(IMAGENET_MEAN),
                                    std=list(IMAGENET_STD),
                                    formula='(pixel / 255 - mean) / std, per RGB channel, '
                                            'applied by the caller (not in the program)')),
      preprocessing=(f'T={config.data.num_frames} frames at the centres of T equal segments of '
                     f'the video; the short side resized to {round(size * 256 / 224)}, then the '
                     f'centre {size}x{size} crop (as evaluation reads the dataset)'),
      outputs={k: dict(shape=list(v.shape), dtype=str(v.dtype)) for k, v in outputs.items()},
      added_by_serving=dict(gflops='[B] float64: actions . gflops.action_gflops + '
                                   'gflops.policy_gflops * T'),
      class_names=names, action_names=list(table.action_names),
      gflops=dict(convention=table.convention, action_gflops=list(table.action_gflops),
                  policy_gflops=table.policy_gflops),
      platforms=list(exported.platforms),
      routing={'dispatch': dispatch,
               'per_platform': {p: dict(plan=plan, kernels=k)
                                for (plan, k), group in groups.items() for p in group}},
      random_actions_seed=config.eval.seed, num_weights=len(weights),
      weights_megabytes=round(sum(v.nbytes for v in weights.values()) / 1e6, 3),
      jax_version=jax.__version__,
      calling_convention_version=exported.calling_convention_version,
      checkpoint=dict(path=directory, step=step, stage=config.stage),
      model_config=json.loads(config.model.to_json()),
      created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'))


def dispatch_mode(model, config: ml_collections.ConfigDict) -> str:
  """'device' where the method's evaluation forward routes (a router), 'masked' otherwise."""
  inference = registry.of(config).inference(model, platform_config(config, 'cpu'))
  return getattr(inference, 'dispatch_mode', 'masked')


def write_saved_model(folder: str, exported: jax.export.Exported, weights: dict) -> None:
  """A TensorFlow SavedModel of `exported` in `folder`: the weights as tf.Variables, one
  signature 'serving_default' (video -> outputs)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from jax.experimental import jax2tf  # pylint: disable=g-import-not-at-top
  names = sorted(weights)
  module = tf.Module()
  module.weights = [tf.Variable(weights[k], trainable=False) for k in names]
  call = jax2tf.convert(exported.call, native_serialization_platforms=exported.platforms,
                        with_gradient=False)
  video = exported.in_avals[-1]
  module.serve = tf.function(lambda video: call(dict(zip(names, module.weights)), video),
                             input_signature=[tf.TensorSpec(video.shape, video.dtype.name,
                                                            name='video')], autograph=False)
  tf.saved_model.save(module, folder, signatures={'serving_default': module.serve})


def write_folder(out: str, exported: jax.export.Exported, weights: dict, content: dict,
                 saved_model: bool) -> None:
  """The exported folder (see the module docstring), written whole or not at all."""
  partial = out.rstrip(os.sep) + '.partial'
  shutil.rmtree(partial, ignore_errors=True)
  os.makedirs(partial)
  try:
    with open(os.path.join(partial, PROGRAM), 'wb') as f:
      f.write(exported.serialize())
    np.savez(os.path.join(partial, VARIABLES), **weights)
    if saved_model:
      write_saved_model(os.path.join(partial, SAVED_MODEL), exported, weights)
    with open(os.path.join(partial, serving.MANIFEST), 'w', encoding='utf-8') as f:
      f.write(to_json(content) + '\n')
    if os.path.isdir(out):
      os.rmdir(out)  # empty (checked before exporting)
    os.replace(partial, out)
  except BaseException:
    shutil.rmtree(partial, ignore_errors=True)
    raise


def to_json(value: Any, depth: int = 0) -> str:
  """Indented JSON, with each list of numbers or strings on one line."""
  pad = ' ' * (depth + 1)
  if isinstance(value, dict) and value:
    items = [f'{pad}{json.dumps(k)}: {to_json(v, depth + 1)}' for k, v in value.items()]
  elif isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
    items = [pad + to_json(v, depth + 1) for v in value]
  else:
    return json.dumps(value)
  brackets = '{}' if isinstance(value, dict) else '[]'
  return brackets[0] + '\n' + ',\n'.join(items) + '\n' + ' ' * depth + brackets[1]


def check_out(out: str) -> None:
  if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
    raise errors.UserError(f'{out} already exists and is not an empty folder: choose a new or '
                           'empty output folder.')


def check_platforms(platforms: Sequence[str]) -> tuple[str, ...]:
  platforms = tuple(p.strip().lower() for p in platforms if p.strip())
  unknown = [p for p in platforms if p not in PLATFORMS]
  if unknown or not platforms:
    raise errors.UserError(f'--platforms={",".join(platforms)}: choose one or more of '
                           f'{", ".join(PLATFORMS)}.')
  return tuple(dict.fromkeys(platforms))


# --- The job. ---------------------------------------------------------------------------------

def export_checkpoint(checkpoint: str, out: str, *, batch_size: int = 1,
                      platforms: Sequence[str] = DEFAULT_PLATFORMS,
                      config: ml_collections.ConfigDict | None = None,
                      class_names_path: str | None = None,
                      names: Sequence[str] | None = None, data_dir: str | None = None,
                      saved_model: bool = False) -> dict:
  """Exports `checkpoint`'s evaluation forward for video `[batch_size, T, S, S, 3]` to the new
  (or empty) folder `out`; returns the manifest. `names` (the class names) skips looking them
  up (`class_names_path`, else the prepared dataset in `data_dir` or `config.data.data_dir`)."""
  ckpt_lib.resolve(checkpoint)  # a wrong path fails first
  check_out(out)
  platforms = check_platforms(platforms)
  if batch_size < 1:
    raise errors.UserError(f'--batch_size must be >= 1, got {batch_size}.')
  config = export_config(checkpoint, config, data_dir)
  if config.eval.dispatch == 'host':
    logging.warning('eval.dispatch=host plans buckets on the host between programs and cannot '
                    'be one exported program: exporting the device dispatch (the same outputs).')
  names = list(names) if names is not None else class_names(config, class_names_path)
  model = models.create_model(config.model)
  weights = {k: np.asarray(v) for k, v in traverse_util.flatten_dict(
      evaluate.restore_for(model, config, checkpoint), sep='/').items()}
  size = config.data.image_size
  video = jax.ShapeDtypeStruct((batch_size, config.data.num_frames, size, size, 3),
                               jnp.dtype(config.data.dtype))
  exported = export_forward(forward_fn(model, config, platforms), weights, video, platforms)
  content = manifest(config, exported, checkpoint, names, weights, dispatch_mode(model, config),
                     saved_model)
  write_folder(out, exported, weights, content, saved_model)
  return content


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """The command line's flags (on `flag_values`, so tests can parse their own)."""
  kw = dict(flag_values=flag_values)
  flags.DEFINE_string('checkpoint', None, 'A training workdir, its best/ or checkpoints/ '
                      'folder, or one step folder.', **kw)
  flags.DEFINE_string('out', None, 'The output folder (new or empty).', **kw)
  flags.DEFINE_integer('batch_size', 1, 'Videos per call (B): the program takes this batch '
                       'shape only.', **kw)
  flags.DEFINE_list('platforms', list(DEFAULT_PLATFORMS), 'Platforms to lower for, any of '
                    f'{", ".join(PLATFORMS)}.', **kw)
  flags.DEFINE_bool('saved_model', False, 'Also write a TensorFlow SavedModel (jax2tf).', **kw)
  flags.DEFINE_string('class_names', None, 'Class names, one per line (default: the prepared '
                      "dataset's).", **kw)
  flags.DEFINE_string('data_dir', None, 'Where the model\'s dataset was prepared (its class '
                      'names).', **kw)
  config_flags.DEFINE_config_file('config', None, 'A config replacing the one saved with the '
                                  'checkpoint.', lock_config=False, **kw)
  flags.mark_flags_as_required(['checkpoint', 'out'], flag_values=flag_values)


def run_from_flags(f: flags.FlagValues) -> dict:
  start = time.perf_counter()
  content = export_checkpoint(f.checkpoint, f.out, batch_size=f.batch_size,
                              platforms=f.platforms, config=f.config,
                              class_names_path=f.class_names, data_dir=f.data_dir,
                              saved_model=f.saved_model)
  print(f'Wrote {f.out}: {content["method"]["variant"]} for '
        f'{serving.describe_input(content["input"])} on {", ".join(content["platforms"])} '
        f'in {time.perf_counter() - start:.1f} s.')
  return content


@errors.exit_on_user_error  # a missing checkpoint, a bad config: `error: <message>`, status 2
def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  # Orbax logs every step of a restore at INFO (as `main.quiet_library_logs`): warnings only.
  logging.get_absl_handler().addFilter(
      lambda record: record.levelno >= std_logging.WARNING or 'orbax' not in record.pathname)
  run_from_flags(flags.FLAGS)


if __name__ == '__main__':
  define_flags()
  app.run(main)
