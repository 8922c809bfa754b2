"""Report figures of evaluated runs: policy strips, GFLOPs against mAP, action usage.

  python -m arnet_jax.tools.report --workdir=DIR [--workdir=DIR2 ...] [--paper_points]
      [--num_videos=6] [--run=LABEL] [--out=DIR] [--config=configs/x.py] [--data_dir=DIR]

Finds every evaluation under the workdirs (each `eval/metrics.json`, a recipe's `results.json`
rows) and every conditional-exit curve (`exit/curve.json`, of `config.mode=exit`) and writes into
`<first workdir>/report/` (or --out):

  gflops_map.png      every run's GFLOPs per video against its mAP (the paper's Figure 3), each
                      exit curve as a line ending at its model without exit; with
                      --paper_points, also the paper's published ActivityNet points
  action_usage.png    the share of frames taking each action, per run, and per true class for
                      one run
  policy_strips.png   for a few validation videos, the T frames each drawn at the resolution it
                      was processed at, skipped frames grey (the paper's Figure 4); for a model
                      reading one patch per frame (AdaFocusV2), each frame at full resolution
                      with the patch it read outlined (and, on the demo, the class glyph)

The per-class chart and the strips need the run's `eval/predictions.npz` (written by
`config.mode=eval` and by the recipe's baselines, not by training's final evaluation), and the
strips the dataset and the run's config: the checkpoint's (named in metrics.json), else --config.
Evaluation calls `maybe_write_report` at its end when `config.eval.report` is True.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Sequence

import ml_collections
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from arnet_jax import errors
from arnet_jax.tools import charts, policy_strips



def _stage_names() -> tuple[str, ...]:
  """Every registered method's stages, in recipe order (the folders a recipe trains in)."""
  from arnet_jax import registry  # pylint: disable=g-import-not-at-top
  names = []
  for method in registry.names():
    names += [s for s in registry.get(method).stage_names if s not in names]
  return tuple(names)


def _action_names(config: ml_collections.ConfigDict) -> list[str]:
  from arnet_jax import registry  # pylint: disable=g-import-not-at-top
  return list(registry.of(config).action_names(config.model))


@dataclasses.dataclass(frozen=True)
class Run:
  """One evaluation: its label in the figures, its eval folder (None for a results.json row
  with no folder of its own) and its metrics.json."""
  label: str
  directory: str | None
  metrics: dict

  @property
  def predictions_path(self) -> str | None:
    if self.directory is None:
      return None
    path = os.path.join(self.directory, 'predictions.npz')
    return path if os.path.exists(path) else None

  @property
  def variant(self) -> str | None:
    """The model variant when the folder says it (recipe baselines: baselines/<variant>/eval)."""
    if self.directory is None:
      return None
    run_dir = os.path.dirname(os.path.normpath(self.directory))
    parent, name = os.path.split(run_dir)
    if os.path.basename(parent) != 'baselines':
      return None
    from arnet_jax import registry  # pylint: disable=g-import-not-at-top
    return name if name in registry.names() else None


def collect_runs(workdirs: Sequence[str]) -> list[Run]:
  """Every run under `workdirs`, labelled by its folder (relative to its workdir).

  A recipe's results.json rows name the baseline folders they were evaluated in; such a folder is
  labelled by its row ('AR-Net'), and a row whose folder is missing is kept on its own. With
  several workdirs, labels start with the workdir's name. Order: per workdir, the training stages
  (warm-up, joint, fine-tune), then the recipe's rows in their table order, then the rest.
  """
  runs = []
  for workdir in workdirs:
    prefix = _prefix(workdir, workdirs)
    found = []
    for root in _walk(workdir, 'eval', 'metrics.json'):
      with open(os.path.join(root, 'metrics.json')) as f:
        metrics = json.load(f)
      rel = os.path.relpath(os.path.dirname(root), workdir)
      label = os.path.basename(os.path.abspath(workdir)) if rel == '.' else rel
      found.append(Run(label, root, metrics))
    rows = {}
    if os.path.exists(os.path.join(workdir, 'results.json')):
      with open(os.path.join(workdir, 'results.json')) as f:
        rows = json.load(f).get('rows', {})
      for name, metrics in rows.items():
        same = [i for i, r in enumerate(found) if _same(r.metrics, metrics)]
        if same:
          found[same[0]] = dataclasses.replace(found[same[0]], label=name)
        else:
          found.append(Run(name, None, metrics))
    order = {name: i for i, name in enumerate(_stage_names() + tuple(rows))}
    found.sort(key=lambda r: order.get(r.label, len(order)))  # stable: the rest keep walk order
    runs += [dataclasses.replace(r, label=prefix + r.label) for r in found]
  return runs


def _prefix(workdir: str, workdirs: Sequence[str]) -> str:
  """What a label starts with: the workdir's name when there are several."""
  return f'{os.path.basename(os.path.normpath(workdir))}: ' if len(workdirs) > 1 else ''


def _walk(workdir: str, folder: str, file: str) -> list[str]:
  """Every folder named `folder` holding `file` under `workdir`, in sorted walk order; the
  report's own output and the checkpoints are not searched."""
  found = []
  for root, dirs, files in os.walk(workdir):
    dirs[:] = sorted(d for d in dirs if d not in ('report', 'checkpoints', 'best',
                                                   'tensorboard'))
    if os.path.basename(root) == folder and file in files:
      found.append(root)
  return found


def collect_exit_curves(workdirs: Sequence[str]) -> list[charts.Curve]:
  """Every conditional-exit curve (`exit/curve.json` of `config.mode=exit`) under `workdirs`.

  Labelled '<variant> with exit', followed by its folder relative to the workdir unless it is
  the workdir itself ('arnet with exit (finetune)'); with several workdirs, labels start with
  the workdir's name. A file that cannot be read as a curve is left out with a logged warning.
  """
  curves = []
  for workdir in workdirs:
    for root in _walk(workdir, 'exit', 'curve.json'):
      path = os.path.join(root, 'curve.json')
      try:
        with open(path) as f:
          curve = exit_curve(json.load(f))
      except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
        logging.warning('%s is not a curve of config.mode=exit (%s: %s); it is left out of '
                        'gflops_map.png.', path, type(e).__name__, e)
        continue
      rel = os.path.relpath(os.path.dirname(root), workdir)
      label = curve.label + ('' if rel == '.' else f' ({rel})')
      curves.append(curve._replace(label=_prefix(workdir, workdirs) + label))
  return curves


def exit_curve(saved: dict) -> charts.Curve:
  """curve.json's content -> its (GFLOPs per video, mAP) points and no-exit end point, labelled
  by its variant; KeyError, TypeError or ValueError when it is not such a file."""
  point = lambda d: (float(d['gflops_per_video']), float(d['mAP']))
  if not isinstance(saved['variant'], str) or not isinstance(saved['curve'], list):
    raise TypeError('variant must be a string and curve a list')
  return charts.Curve(f'{saved["variant"]} with exit', [point(c) for c in saved['curve']],
                      point(saved['no_exit']))


def merge_same_results(runs: Sequence[Run]) -> list[tuple[str, dict]]:
  """(label, metrics) with runs of the same mAP, GFLOPs and action usage (a stage's final
  evaluation and the recipe row evaluating its checkpoint) merged: 'AR-Net = finetune'."""
  merged: dict[str, tuple[list[str], dict]] = {}
  for r in runs:
    key = json.dumps([r.metrics.get(k) for k in ('mAP', 'gflops_per_video', 'action_usage')],
                     sort_keys=True)
    merged.setdefault(key, ([], r.metrics))[0].append(r.label)
  stages = _stage_names()
  is_stage = lambda label: label.split(': ')[-1] in stages  # the table's name first
  return [(' = '.join(sorted(labels, key=is_stage)), metrics)
          for labels, metrics in merged.values()]


def _same(a: dict, b: dict) -> bool:
  """Equal metrics, NaN included (as JSON text)."""
  return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def choose_run(runs: Sequence[Run], label: str | None = None) -> Run | None:
  """The run for the strips and per-class usage: `label` if given, else, among the runs with
  predictions whose policy is at work (its frames take different actions, or read patches at
  different places), a recipe's own method (AR-Net, AdaFocusV2: a variant with comparison
  rows) before its baselines (the Random ones are at work too), else the first such run, else
  the first run with predictions."""
  from arnet_jax import registry  # pylint: disable=g-import-not-at-top
  with_predictions = [r for r in runs if r.predictions_path]
  if label:
    for r in runs:
      if r.label == label:
        return r
    raise errors.UserError(f'No run labelled {label!r}; found: {[r.label for r in runs]}.')

  def at_work(r: Run) -> bool:
    p = np.load(r.predictions_path)
    decisions = [p[k] for k in ('actions', 'patch_boxes') if k in p]
    return any(d.size and (d != d.reshape(-1, d.shape[-1])[:1]).any() for d in decisions)
  working = [r for r in with_predictions if at_work(r)]
  methods = [r for r in working if r.variant and registry.get(r.variant).recipe_rows]
  if methods or working:
    return (methods or working)[0]
  return with_predictions[0] if with_predictions else None


def checkpoint_config(metrics: dict) -> ml_collections.ConfigDict | None:
  """The config saved with the checkpoint named in metrics.json ('checkpoint'), over today's
  defaults (`checkpoint.saved_config`: a run saved before a field was added reads), if any."""
  path = metrics.get('checkpoint')
  if not path or not os.path.isdir(path):
    return None
  from arnet_jax import checkpoint as ckpt_lib  # pylint: disable=g-import-not-at-top
  try:
    return ckpt_lib.saved_config(path)
  except errors.UserError:  # no config saved (an imported backbone)
    return None


def run_config(run: Run, config: ml_collections.ConfigDict | None,
               data_dir: str | None = None) -> ml_collections.ConfigDict | None:
  """The config describing `run`: `config` if given, else its checkpoint's; the variant set from
  the run's folder (a recipe baseline evaluates another variant than its checkpoint trained)."""
  config = config if config is not None else checkpoint_config(run.metrics)
  if config is None:
    return None
  config = ml_collections.ConfigDict(config.to_dict())
  if run.variant:
    config.model.variant = run.variant
  if data_dir:
    config.data.data_dir = data_dir
  from arnet_jax import defaults  # pylint: disable=g-import-not-at-top
  return defaults.finalize(config)  # the derived fields (the crop size) filled in


def usage_figure(runs: Sequence[Run], chosen: Run | None, config, path: str) -> dict:
  overall = {label: m['action_usage'] for label, m in merge_same_results(runs)
             if 'action_usage' in m}
  per_class = None
  if chosen is not None and chosen.predictions_path and config is not None:
    p = np.load(chosen.predictions_path)
    names = _action_names(config)
    if p['actions'].shape[-1] == len(names):
      usage, videos = charts.per_class_usage(p['actions'], p['label'], config.model.num_classes)
      per_class = (chosen.label, usage, videos, class_names(config), names)
    else:
      logging.warning('%s has %d actions but the config of %s names %d (%s); the per-class '
                      'usage is left out.', chosen.predictions_path, p['actions'].shape[-1],
                      chosen.label, len(names), names)
  return charts.plot_action_usage(overall, path, per_class=per_class)


def class_names(config: ml_collections.ConfigDict) -> list[str]:
  """The dataset's class names, or 'class <i>' when the dataset is not at hand."""
  try:
    from arnet_jax import data as data_lib  # pylint: disable=g-import-not-at-top
    return list(data_lib.get_builder(config.data).info.features['label'].names)
  except Exception:  # pylint: disable=broad-except
    return [f'class {i}' for i in range(config.model.num_classes)]


def strips_figure(run: Run, config: ml_collections.ConfigDict, path: str,
                  num_videos: int) -> dict:
  p = dict(np.load(run.predictions_path))
  names = _action_names(config)
  if p['actions'].shape[-1] != len(names):
    raise ValueError(f'{run.predictions_path} has {p["actions"].shape[-1]} actions but the '
                     f'config of {run.label!r} has {len(names)} ({names}); pass --config.')
  rows = policy_strips.choose_videos(p['label'], num_videos)
  clips = policy_strips.read_clips(config.data, [int(p['index'][r]) for r in rows])
  for r, clip in zip(rows, clips):
    if clip.label != int(p['label'][r]):
      raise ValueError(f'Video {clip.video_id} (eval index {clip.index}) has label {clip.label} '
                       f'in the dataset but {int(p["label"][r])} in {run.predictions_path}: '
                       'the predictions are of another dataset.')
  m = run.metrics
  title = (f'Policy decisions of {run.label} (mAP {m.get("mAP", float("nan")):.1f}%, '
           f'{m.get("gflops_per_video", float("nan")):.4g} GFLOPs per video): '
           f'{config.data.name} {config.data.get("builder_config") or ""} '
           f'{config.data.eval_split} split, {len(clips)} of {len(p["label"])} videos')
  return policy_strips.plot_policy_strips(
      clips, p['actions'][rows], p['decided'][rows], p['logits'][rows].argmax(-1), names,
      class_names(config), path, resize_method=config.model.resize, title=title,
      patch_boxes=p['patch_boxes'][rows] if 'patch_boxes' in p else None)


def write_report(workdirs: str | Sequence[str], config: ml_collections.ConfigDict | None = None,
                 *, out: str | None = None, num_videos: int = 6, paper_points: bool = False,
                 run: str | None = None, data_dir: str | None = None) -> dict:
  """Writes the report PNGs of the runs under `workdirs`; returns {figure: what it plotted}.

  Figures needing what is missing (predictions.npz, a config, the dataset; an evaluation, when
  there are only exit curves) are left out with a logged reason; the others are still written.
  """
  workdirs = [workdirs] if isinstance(workdirs, str) else list(workdirs)
  out = out or os.path.join(workdirs[0], 'report')
  os.makedirs(out, exist_ok=True)
  runs, curves = collect_runs(workdirs), collect_exit_curves(workdirs)
  if not runs and not curves:
    raise errors.PathNotFoundError(f'No eval/metrics.json, results.json or exit/curve.json '
                                   f'under {workdirs}.')
  chosen = choose_run(runs, run)
  cfg = None
  if chosen is not None:
    try:
      cfg = run_config(chosen, config, data_dir)
    except Exception as e:  # pylint: disable=broad-except
      logging.warning('Could not read the config of %s (%s); pass --config.', chosen.label, e)
  written = {}
  title = ', '.join(os.path.basename(os.path.abspath(w)) for w in workdirs)
  points = [charts.Point(label, m['gflops_per_video'], m['mAP'])
            for label, m in merge_same_results(runs) if 'gflops_per_video' in m and 'mAP' in m]
  written['gflops_map'] = charts.plot_gflops_map(
      points, os.path.join(out, 'gflops_map.png'), paper_points=paper_points,
      title=f'Runs in {title}', curves=curves)
  if runs:
    written['action_usage'] = usage_figure(runs, chosen, cfg,
                                           os.path.join(out, 'action_usage.png'))
  else:  # only exit curves: no action usage to show
    logging.warning('No eval/metrics.json or results.json under %s: action_usage.png needs '
                    'an evaluation.', workdirs)
  if chosen is None or not chosen.predictions_path:
    logging.warning('No predictions.npz %s: policy_strips.png needs one, written by an '
                    'evaluation (config.mode=eval) or a recipe.',
                    f'for {chosen.label}' if chosen else f'under {workdirs}')
  elif cfg is None:
    logging.warning('No config for %s: pass --config to draw policy_strips.png.', chosen.label)
  else:
    written['policy_strips'] = strips_figure(chosen, cfg, os.path.join(out, 'policy_strips.png'),
                                             num_videos)
  logging.info('Report written to %s: %s', out, ', '.join(f'{k}.png' for k in written))
  return written


def maybe_write_report(workdir: str, config: ml_collections.ConfigDict) -> dict | None:
  """What evaluation calls at its end: the report of `workdir` when `config.eval.report` is on,
  on the main process only. A failure is logged as a warning and never raised, so it cannot lose
  the evaluation already written."""
  import jax  # pylint: disable=g-import-not-at-top
  if not config.eval.get('report', False) or jax.process_index() != 0:
    return None
  try:
    return write_report(workdir, config)
  except Exception as e:  # pylint: disable=broad-except
    logging.warning('The report of %s failed (the evaluation is saved): %s: %s', workdir,
                    type(e).__name__, e)
    return None


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """The command line's flags (on `flag_values`, so tests can parse their own)."""
  kw = dict(flag_values=flag_values)
  flags.DEFINE_multi_string('workdir', None, 'A workdir to collect runs from (repeatable).', **kw)
  config_flags.DEFINE_config_file('config', None, 'Config of the run drawn in the strips, when '
                                  'its checkpoint is not at hand.', lock_config=False, **kw)
  flags.DEFINE_string('out', None, 'Output folder (default: <first workdir>/report).', **kw)
  flags.DEFINE_integer('num_videos', 6, 'Videos in policy_strips.png.', **kw)
  flags.DEFINE_bool('paper_points', False, "Also plot the paper's ActivityNet points.", **kw)
  flags.DEFINE_string('run', None, 'Label of the run for the strips and per-class usage '
                      '(default: the AR-Net run).', **kw)
  flags.DEFINE_string('data_dir', None, 'Override config.data.data_dir for the strips.', **kw)
  flags.mark_flags_as_required(['workdir'], flag_values=flag_values)


def run_from_flags(f: flags.FlagValues) -> dict:
  return write_report(f.workdir, f.config, out=f.out, num_videos=f.num_videos,
                      paper_points=f.paper_points, run=f.run, data_dir=f.data_dir)


@errors.exit_on_user_error  # a wrong workdir or run label: `error: <message>`, exit status 2
def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  run_from_flags(flags.FLAGS)


if __name__ == '__main__':
  define_flags()
  app.run(main)
