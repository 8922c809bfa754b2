r"""Imports PyTorch weights: the original AR-Net checkpoints and ImageNet-pretrained backbones.

  python -m arnet_jax.tools.import_torch --src=FILE --kind=KIND --out=DIR \
      [--config=configs/activitynet.py [--config.model.variant=...]] [--arch=ARCH]

Kinds (what the file holds -> what is written):
- arnet: an original AR-Net checkpoint (`lite_backbone`, `rnn`, `base_model_list.i`,
  `new_fc_list.i`, `linear`, `lite_fc`) -> the ARNet variables of --config (default
  configs/activitynet.py). arnet_efficientnet: the same with EfficientNet backbones (default
  configs/activitynet_efficientnet.py).
- adafocus_v2: an AdaFocusV2 checkpoint of the authors' `main_v2.py` (`global_CNN`,
  `global_CNN_fc`, `local_CNN`, `local_CNN_fc`, `policy_stn`, `classifier`) -> the AdaFocusV2
  variables of --config (default configs/adafocus_v2.py; the ResNet-50 glance:
  `--config=configs/adafocus_v2.py:global=resnet50`); the number of steps (data.num_frames)
  and of classes come from the checkpoint.
- adafocus_v1: an AdaFocus V1 checkpoint of the authors' `main_dist.py` (a dict of the state
  dicts `glancer`, `focuser`, `fc`, `policy`; `focuser.policy.*`, the PPO's copies of the
  policy, dropped) -> the AdaFocusV1 variables of --config (default configs/adafocus_v1.py);
  the classes, the policy's grid and the hidden sizes come from the checkpoint
  (`arnet_jax.methods.adafocus_v1_torch`).
- tsn: `base_model` + `new_fc` (the original TSN baselines and per-resolution warm-up
  checkpoints) -> a Classifier {features, head}; the backbone is --arch or inferred from the keys.
- resnet18/34/50/101, mobilenet_v2, efficientnet_b0..b3: torchvision / efficientnet_pytorch
  ImageNet weights -> a Classifier's `features` only (the ImageNet head is dropped).

The file may be a plain state dict or `{'state_dict': ...}`; a `module.` prefix (DataParallel) is
removed. A dict holding AdaFocus V1's part state dicts (`NESTED_STATE_DICTS`) is read as one
state dict with the part names as prefixes (`glancer.net.features.0.0.weight`); its other entries
(epoch, optimizer, model_state_dict, ...) are not read. The arnet kinds also read the original
baselines through `--config.model.variant`: uniform (exp2 `lite_backbone` + `lite_fc`, or exp7
`base_model` + `new_fc`), lstm (exp3), random (exp4), multiscale (exp5; its action head, unused,
is replaced by zeros when it was trained with other skips than model.skips).
The number of classes comes from the checkpoint. Every variable of the target model must be found
with the right shape and every checkpoint entry used (BatchNorm's `num_batches_tracked` and the
heads/modules a kind drops excepted, with a message); otherwise a `ConversionError` lists the
missing and unexpected names and the mismatched shapes, and nothing is written. The output is a
one-step Orbax checkpoint (`checkpoint.write_variables`) with meta {source, kind, config, dropped,
num_classes, arch}. Naming rules: `arnet_jax.tools.torch_names`.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import pickle
import sys
from typing import Any, Callable, Mapping

import ml_collections
import numpy as np
from absl import app, flags
from flax import traverse_util
from ml_collections import config_flags

from arnet_jax import checkpoint, defaults, errors, models, registry
from arnet_jax.models import efficientnet, resnet
from arnet_jax.tools import torch_names
from arnet_jax.tools.torch_names import Mount

BACKBONE_KINDS = models.BACKBONES
KINDS = ('arnet', 'arnet_efficientnet', 'adafocus_v2', 'adafocus_v1', 'tsn', *BACKBONE_KINDS)
DEFAULT_CONFIGS = {'arnet': 'activitynet.py', 'arnet_efficientnet': 'activitynet_efficientnet.py',
                   'adafocus_v2': 'adafocus_v2.py', 'adafocus_v1': 'adafocus_v1.py'}
METHOD_KINDS = tuple(DEFAULT_CONFIGS)  # kinds read into a configured model (--config)
ADAFOCUS_KINDS = ('adafocus_v2', 'adafocus_v1')  # each reads into its own variants only
# The authors' AdaFocus V1 (`main_dist.py`) saves one state dict per part, besides other entries.
NESTED_STATE_DICTS = ('glancer', 'focuser', 'fc', 'policy')
_REPO_CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), 'configs')


class ConversionError(errors.UserError):
  """The checkpoint cannot become the requested variables; the message says why."""


@dataclasses.dataclass
class Plan:
  """What to build and where each part comes from."""
  expected: dict  # abstract variables {'params': ..., 'batch_stats': ...}
  mounts: list[Mount]
  droppable: dict[str, str]  # torch module -> why its keys may be dropped (with a message)
  optional: tuple[tuple[str, ...], ...] = ()  # our subtrees unused by the model: zeros if absent
  description: str = ''  # the model, for error messages


# --- Reading the file. ------------------------------------------------------------------------

def load_state_dict(src: str, allow_pickle: bool = False) -> dict[str, np.ndarray]:
  """The state dict in a torch file as NumPy arrays, `{'state_dict'}` and `module.` removed,
  AdaFocus V1's parts (`NESTED_STATE_DICTS`, those not None) flattened with their names."""
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ConversionError('Reading PyTorch files needs torch: pip install torch==2.13.0 (the '
                          'CPU build is enough).') from e
  if not os.path.isfile(src):
    raise FileNotFoundError(f'{src} does not exist.')
  try:
    obj = torch.load(src, map_location='cpu', weights_only=not allow_pickle)
  except pickle.UnpicklingError as e:
    raise ConversionError(
        f'{src} stores Python objects besides tensors, which torch.load(weights_only=True) '
        f'refuses ({str(e).splitlines()[0]}). If you trust the file, pass --allow_pickle.') from e
  if isinstance(obj, Mapping) and isinstance(obj.get('state_dict'), Mapping):
    obj = obj['state_dict']
  elif isinstance(obj, Mapping) and any(isinstance(obj.get(p), Mapping)
                                        for p in NESTED_STATE_DICTS):
    obj = {f'{p}.{k}': v for p in NESTED_STATE_DICTS if isinstance(obj.get(p), Mapping)
           for k, v in obj[p].items()}
  if not isinstance(obj, Mapping) or not obj or not all(torch.is_tensor(v) for v in obj.values()):
    raise ConversionError(f'{src} is not a state dict (a mapping from names to tensors), nor '
                          "{'state_dict': state dict}, nor AdaFocus V1's dict of state dicts "
                          f'({", ".join(NESTED_STATE_DICTS)}).')
  state = {}
  for key, value in obj.items():
    name = key[len('module.'):] if key.startswith('module.') else key
    if name in state:
      raise ConversionError(f'{src} holds both {name} and module.{name}.')
    value = value.detach().cpu()
    state[name] = (value.float() if value.is_floating_point() else value).numpy()
  return state


# --- Converting. ------------------------------------------------------------------------------

def convert(state: Mapping[str, np.ndarray], plan: Plan,
            log: Callable[[str], None] = print) -> tuple[dict, list[str]]:
  """(variables, dropped torch keys); raises ConversionError listing every problem."""
  flat = traverse_util.flatten_dict(plan.expected)
  values, used, missing, mismatched = {}, set(), [], []
  namings, zeroed = {}, {}
  for path, spec in flat.items():
    collection, ours = path[0], path[1:]
    mount = max((m for m in plan.mounts if ours[:len(m.ours)] == m.ours),
                key=lambda m: len(m.ours), default=None)
    if mount is None:
      raise AssertionError(f'no mount for {"/".join(path)}')
    if mount.what == 'mobilenet_v2' and mount.torch not in namings:
      namings[mount.torch] = torch_names.mobilenet_v2_naming(state, mount.torch)
    src = torch_names.source(mount, ours[len(mount.ours):], len(spec.shape),
                             namings.get(mount.torch, 'nested'))
    need = torch_names.torch_shape(spec.shape, src.layout)
    name = f'{"/".join(path)} {list(spec.shape)}'
    absent = [k for k in src.keys if k not in state]
    wrong = [k for k in src.keys if k in state and tuple(state[k].shape) != need]
    used.update(k for k in src.keys if k in state)
    optional = [o for o in plan.optional if ours[:len(o)] == o]
    if (absent or wrong) and optional:
      values[path] = np.zeros(spec.shape, spec.dtype)
      zeroed.setdefault('/'.join(optional[0]), []).append(
          f'{name} (torch: ' + ', '.join(f'{k} {list(state[k].shape)}' if k in state else
                                         f'{k} absent' for k in src.keys) + ')')
      continue
    missing += [(k, need, name) for k in absent]
    mismatched += [(k, tuple(state[k].shape), need, name) for k in wrong]
    if not absent and not wrong:
      values[path] = sum(torch_names.to_ours(state[k], src.layout) for k in src.keys).astype(
          spec.dtype)
  leftover = [k for k in state if k not in used and not k.endswith('.num_batches_tracked')]
  dropped = [k for k in leftover if any(k.startswith(f'{m}.') for m in plan.droppable)]
  unexpected = [k for k in leftover if k not in dropped]
  if missing or unexpected or mismatched:
    raise ConversionError(_report(state, plan, missing, unexpected, mismatched))
  for subtree, entries in zeroed.items():
    log(f'{subtree} is unused by this model; the checkpoint does not fit it, so it is set to '
        'zeros: ' + '; '.join(entries))
  for module, why in plan.droppable.items():
    keys = [k for k in dropped if k.startswith(f'{module}.')]
    if keys:
      log(f'Dropped {module} ({why}): ' + ', '.join(f'{k} {list(state[k].shape)}' for k in keys))
  return traverse_util.unflatten_dict(values), dropped


def _report(state, plan, missing, unexpected, mismatched) -> str:
  lines = [f'The checkpoint does not fit the model: {len(missing)} missing, {len(unexpected)} '
           f'unexpected, {len(mismatched)} of another shape (torch names and shapes; the '
           'variable each is read into in parentheses). Nothing was written.']
  lines += [f'  missing:    {k} {list(need)}  ({name})' for k, need, name in missing]
  lines += [f'  unexpected: {k} {list(state[k].shape)}' for k in unexpected]
  lines += [f'  shape:      {k} is {list(got)}, the model needs {list(need)}  ({name})'
            for k, got, need, name in mismatched]
  if plan.description:
    lines.append(f'The model: {plan.description}.')
  lines += _hints(state, plan)
  return '\n'.join(lines)


def _hints(state, plan) -> list[str]:
  shapes = {k: v.shape for k, v in state.items()}
  hints = []
  for mount in plan.mounts:
    if mount.what not in models.BACKBONES:
      continue
    where = f'`{mount.torch}`' if mount.torch else 'the file'
    if not torch_names.under(mount.torch, state):
      tops = sorted({k.split('.')[0] for k in state})
      hints.append(f'{where} has no keys; the file\'s top-level modules are {", ".join(tops)}.')
      continue
    found = torch_names.infer_architecture(shapes, mount.torch)
    if not found or found == mount.what:
      continue
    hints.append(f'{where} holds a {found}, where the model expects a {mount.what}.')
    if not mount.torch:  # an ImageNet backbone file
      hints.append(f'Import it with --kind={found}.')
    elif mount.torch == 'base_model':
      hints.append(f'Give --arch={found}, or leave --arch out.')
    elif mount.torch.startswith('base_model_list.'):
      family = found.startswith('efficientnet'), mount.what.startswith('efficientnet')
      if family == (True, False):
        kind_hint = 'An AR-Net with EfficientNet backbones: use --kind=arnet_efficientnet.'
      elif family == (False, True):
        kind_hint = 'An AR-Net with ResNet backbones: use --kind=arnet.'
      else:
        continue
      if kind_hint not in hints:
        hints.append(kind_hint)
  if hints:
    hints.append('Choose the --kind/--arch and --config (model.backbones, policy_backbone, '
                 'variant, lstm_hidden, skips) the checkpoint was made with.')
  return ['Hints:'] + [f'  {h}' for h in hints] if hints else []


# --- What each kind builds. -------------------------------------------------------------------

def _head_module(arch: str) -> str:
  if arch in resnet.ARCHITECTURES:
    return 'fc'
  return '_fc' if arch in efficientnet.PARAMS else 'classifier'


@functools.cache  # tracing a large backbone takes seconds; a Plan is only read
def backbone_plan(arch: str) -> Plan:
  """An ImageNet backbone -> {'params': {'features'}, 'batch_stats': {'features'}}."""
  inner = models.abstract_variables(models.create_backbone(arch), (1, 32, 32, 3))
  return Plan({k: {'features': v} for k, v in inner.items()}, [Mount(('features',), '', arch)],
              {_head_module(arch): 'the ImageNet classification head; AR-Net trains new heads'})


@functools.cache
def classifier_plan(arch: str, num_classes: int) -> Plan:
  """A TSN checkpoint (`base_model`, `new_fc`) -> a Classifier's variables."""
  model = models.Classifier(models.create_backbone(arch), num_classes)
  return Plan(models.abstract_variables(model, (1, 32, 32, 3)),
              [Mount(('features',), 'base_model', arch), Mount(('head',), 'new_fc', 'linear')], {})


def arnet_plan(model_config: ml_collections.ConfigDict, keys) -> Plan:
  """An original checkpoint -> the variables of `create_model(model_config)`: the layout of the
  configured method (its registry entry)."""
  method = registry.get(model_config.variant)
  if method.torch_layout is None:
    importable = [n for n in registry.names() if registry.get(n).torch_layout]
    raise ConversionError(f'model.variant={model_config.variant!r} has no PyTorch layout to '
                          f'import; the importable variants: {", ".join(importable)}.')
  return method.torch_layout(model_config, keys)


def infer_num_classes(state: Mapping[str, np.ndarray]) -> int | None:
  for key in ('new_fc_list.0.weight', 'new_fc.weight', 'lite_fc.weight', 'local_CNN_fc.1.weight',
              'fc.fc.weight'):
    if key in state:
      return int(state[key].shape[0])
  return None


def _adafocus_steps(state: Mapping[str, np.ndarray]) -> int | None:
  from arnet_jax.methods import adafocus_v2  # pylint: disable=g-import-not-at-top
  return adafocus_v2.checkpoint_steps(state)


def _checkpoint_fields(state: Mapping[str, np.ndarray]) -> dict[str, Any]:
  from arnet_jax.methods import adafocus_v1_torch  # pylint: disable=g-import-not-at-top
  return adafocus_v1_torch.checkpoint_fields(state)


def _fits(kind: str, variant: str) -> bool:
  """Whether --kind reads into model.variant: an AdaFocus kind into its own variants
  (adafocus_v1, adafocus_v1_random, ...), the arnet kinds into the others."""
  family = next((k for k in ADAFOCUS_KINDS if variant == k or variant.startswith(f'{k}_')), None)
  return family == (kind if kind in ADAFOCUS_KINDS else None)


def default_config(kind: str) -> ml_collections.ConfigDict:
  """configs/activitynet.py (or _efficientnet, adafocus_v2, adafocus_v1) from the checkout, else
  the same built in."""
  path = os.path.join(_REPO_CONFIGS, DEFAULT_CONFIGS[kind])
  if os.path.isfile(path):
    return defaults.load_config(path)
  config = defaults.get_config()
  if kind in ADAFOCUS_KINDS:  # the defaults' AdaFocus fields are the papers'
    config.model.variant = kind
  if kind == 'arnet_efficientnet':
    config.model.backbones = ('efficientnet_b3', 'efficientnet_b1', 'efficientnet_b0')
  return config


def convert_state_dict(state: Mapping[str, np.ndarray], kind: str, *,
                       config: ml_collections.ConfigDict | None = None, arch: str | None = None,
                       log: Callable[[str], None] = print) -> tuple[dict, dict]:
  """(variables, meta without 'source'): the conversion of one kind, without any file."""
  if kind not in KINDS:
    raise ConversionError(f'Unknown --kind={kind!r}; choose one of {", ".join(KINDS)}.')
  shapes = {k: v.shape for k, v in state.items()}
  meta: dict[str, Any] = {'kind': kind, 'config': None}
  if kind in METHOD_KINDS:
    config = (config or default_config(kind)).copy_and_resolve_references()
    if not _fits(kind, config.model.variant):
      raise ConversionError(f'--kind={kind} does not fit the config\'s model.variant='
                            f'{config.model.variant}; give a config of that method (the '
                            f'default for this kind: configs/{DEFAULT_CONFIGS[kind]}).')
    num_classes = infer_num_classes(state)
    if num_classes is not None and num_classes != config.model.num_classes:
      log(f'The checkpoint has {num_classes} classes: model.num_classes '
          f'{config.model.num_classes} -> {num_classes}.')
      config.model.num_classes = num_classes
    steps = _adafocus_steps(state) if kind == 'adafocus_v2' else None
    if steps is not None and steps != config.data.num_frames:
      log(f'The checkpoint has {steps} steps: data.num_frames {config.data.num_frames} -> '
          f'{steps}.')
      config.data.num_frames = steps
    fields = _checkpoint_fields(state) if kind == 'adafocus_v1' else {}
    for field, value in fields.items():
      if field in config.model and config.model[field] != value:
        log(f'The checkpoint has {field}={value}: model.{field} {config.model[field]} -> '
            f'{value}.')
        config.model[field] = value
    plan = arnet_plan(config.model, state)
    meta.update(config=config.to_dict(), num_classes=config.model.num_classes)
  elif kind == 'tsn':
    arch = arch or torch_names.infer_architecture(shapes, 'base_model')
    if arch is None:
      raise ConversionError('Cannot tell the architecture of `base_model` from its keys; give '
                            f'--arch (one of {", ".join(models.BACKBONES)}).')
    if 'new_fc.weight' not in state:
      tops = sorted({k.split('.')[0] for k in state})
      raise ConversionError('A TSN checkpoint needs `new_fc.weight` (its classifier); this file '
                            f'has none. Its top-level modules: {", ".join(tops)}.')
    num_classes = int(state['new_fc.weight'].shape[0])
    plan = classifier_plan(arch, num_classes)
    meta.update(arch=arch, num_classes=num_classes)
  else:
    arch = kind
    plan = backbone_plan(arch)
    meta.update(arch=arch, num_classes=None)
  variables, dropped = convert(state, plan, log)
  checkpoint.check_structure(variables, plan.expected, what=f'The converted {kind} checkpoint')
  meta['dropped'] = dropped
  return variables, meta


def import_checkpoint(src: str, kind: str, out: str, *,
                      config: ml_collections.ConfigDict | None = None, arch: str | None = None,
                      allow_pickle: bool = False, log: Callable[[str], None] = print) -> str:
  """Converts the torch file `src` and writes an Orbax checkpoint to `out`; returns its path."""
  out = os.path.abspath(os.path.expanduser(out))
  if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
    raise FileExistsError(f'{out} exists and is not an empty directory; choose a new one.')
  if config is not None and kind not in METHOD_KINDS:
    log(f'--config is used by the {", ".join(METHOD_KINDS)} kinds only; ignored for '
        f'--kind={kind}.')
  variables, meta = convert_state_dict(load_state_dict(src, allow_pickle), kind, config=config,
                                       arch=arch, log=log)
  meta = {'source': os.path.abspath(src), **meta}
  return checkpoint.write_variables(out, variables, meta)


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """The command line's flags (on `flag_values`, so tests can parse their own)."""
  kw = dict(flag_values=flag_values)
  flags.DEFINE_string('src', None, 'PyTorch file (.pth, .pth.tar).', **kw)
  flags.DEFINE_enum('kind', None, KINDS, 'What the file holds (see the module docstring).', **kw)
  flags.DEFINE_string('out', None, 'Output checkpoint directory (new or empty).', **kw)
  flags.DEFINE_enum('arch', None, models.BACKBONES,
                    '--kind=tsn: the backbone architecture (default: inferred from the keys).',
                    **kw)
  flags.DEFINE_bool('allow_pickle', False, 'Let torch.load unpickle arbitrary Python objects '
                    '(only for files you trust).', **kw)
  config_flags.DEFINE_config_file(
      'config', None, 'Experiment config (arnet and adafocus kinds); default '
      'configs/activitynet.py, configs/activitynet_efficientnet.py for '
      '--kind=arnet_efficientnet, configs/adafocus_v2.py for --kind=adafocus_v2, '
      'configs/adafocus_v1.py for --kind=adafocus_v1.', lock_config=True, **kw)
  flags.mark_flags_as_required(['src', 'kind', 'out'], flag_values=flag_values)


def run_from_flags(f: flags.FlagValues) -> int:
  """Imports as the flags say; prints the checkpoint written, or the error. -> exit status."""
  try:
    path = import_checkpoint(f.src, f.kind, f.out, config=f.config, arch=f.arch,
                             allow_pickle=f.allow_pickle)
  except (ConversionError, FileExistsError, FileNotFoundError) as e:  # the user's input
    return errors.show(e)
  print(f'Wrote {path}')
  return 0


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  sys.exit(run_from_flags(flags.FLAGS))


if __name__ == '__main__':
  define_flags()
  app.run(main)
