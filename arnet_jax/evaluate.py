"""Evaluation: deterministic policy, every video of the split once, metrics from actual decisions.

`Evaluator(model, config, mesh).run(variables)` is what training calls after each epoch;
`evaluate_checkpoint(config, workdir)` is `config.mode=eval` (no training split needed).

Written to WORKDIR/eval/: metrics.json (mAP, mmAP, top1, top5, gflops_per_frame,
gflops_per_video, action_usage, ...), predictions.npz (per-video logits, labels, decisions, and
the batch's per-frame `evidence` / `glyph_box` and the model's `patch_boxes` where there are any;
the report tool draws from it) and TensorBoard scalars.

On the demo (`demo_metrics`): a model with resolution actions reports how often frames with and
without the class evidence take the top resolution (`evidence_to_top_resolution`,
`other_to_top_resolution`); a model that reads one patch per frame (it returns `patch_boxes`)
reports how often its patch holds the whole class glyph (`glyph_in_patch`) and the same for
patches of its sides at random corners (`glyph_in_random_patch`).

A model that may skip frames reports the share of videos of which it processed none
(`no_frame_videos`) and its mean processed frames per video (`frames_per_video`); a learned
policy's collapse (nothing processed, or one action everywhere) is written in words in
`warnings`, logged, and printed under the summary table (`arnet_jax.health`).

The forward is the method's inference (its registry entry). For AR-Net, `eval.routing`:
'sparse' (default) decides every frame's action first and runs each backbone only on the frames
routed to it, in buckets of static sizes (`arnet_jax.models.routing`): with `eval.dispatch`
'device' (default) all of it is one device program per batch shape, with 'host' the bucket sizes
are planned on the host. 'masked' runs every backbone on every frame in one jit (the training
forward). Both give the same decisions and, up to float error, the same logits. Methods with
nothing to route (the LSTM baseline) run masked. `eval.router_batch` pools loader batches into
one call; the next call is dispatched before the last one's outputs are read.
metrics.json says which ran (`routing`, `dispatch`), how many XLA compilations a full evaluation
causes from a cold start (`compilations`) and how many this one made after its first call
(`compilations_after_first_batch`: 0 when every call had one shape), and, for sparse routing,
dispatches and host syncs per call, the share of bucket slots that were padding
(`padding_waste`) and each backbone's frames (`bucket_use`). Per-action mAP needs every
resolution action's logits on every frame, which sparse AR-Net routing does not compute:
`mAP_per_action` is there under masked compute, Uniform and Multi-Scale.

With conditional exit (`eval.budget_gflops`, or `Evaluator(..., thresholds=...)`: see
`arnet_jax.early_exit`) the forward is the method's exit program, which stops computing a video
once it exits; GFLOPs count each video's steps up to its exit, and metrics.json adds
`mean_exit_step` and `exited_early` (the share of videos that stopped before the last frame).
"""
from __future__ import annotations

import itertools
import json
import os
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm
from absl import logging

from arnet_jax import checkpoint as ckpt_lib
from arnet_jax import (compilation, defaults, errors, flops, health, metrics, models, parallel,
                       registry)
from arnet_jax.models import crop, exits, kernels


def progress_bar(total: int, initial: int, desc: str, enabled: bool) -> tqdm.tqdm:
  return tqdm.tqdm(total=total, initial=initial, desc=desc, disable=not enabled,
                   dynamic_ncols=True, leave=False)


class Evaluator:
  """Runs a model over the evaluation split and computes every metric (see the module doc)."""

  def __init__(self, model, config: ml_collections.ConfigDict, mesh, *,
               thresholds: Sequence[float] | None = None,
               collect: Callable[[dict], dict] | None = None):
    """`thresholds` (`[K]`): evaluate with conditional exit (the method's exit program, see
    `arnet_jax.early_exit`); `collect`: forward output -> more per-video arrays to keep."""
    self.model, self.config, self.mesh = model, config, mesh
    self.table = flops.cost_table(config.model)
    self.names = self.table.action_names
    self.collect = collect
    method = registry.of(config)
    if thresholds is None:
      self.thresholds = None
      self.forward = method.inference(model, config)
    else:
      if method.exit is None:
        raise errors.UserError(f'model.variant={config.model.variant} has no conditional exit.')
      self.thresholds = jnp.asarray(thresholds, jnp.float32)
      self.forward = method.exit.inference(model, config)
    self.router = self.forward if hasattr(self.forward, 'stats') else None  # sparse routing
    self.routing = 'sparse' if self.router else 'masked'

  @property
  def no_exit_thresholds(self) -> jax.Array:
    """Thresholds no video reaches before the last exit point (the exit program, no exit)."""
    return exits.no_exit_thresholds(self.thresholds.shape[0])

  def predict(self, variables, video, index, mask) -> dict:
    # The same 'gumbel' key whatever the routing: the Random baseline draws the same actions.
    rng = jax.random.fold_in(jax.random.key(self.config.eval.seed), index)
    kwargs = {} if self.thresholds is None else dict(thresholds=self.thresholds)
    out = self.forward(variables, video, rng=rng, valid=mask > 0, **kwargs)
    return {**prediction(out), **(self.collect(out) if self.collect else {})}

  def batches(self, split: str | None = None, train_transforms: bool = False):
    """(the host batches of `split` (default the evaluation split), pooled `eval.router_batch`
    at a time as `run` calls them; the number of loader batches): every video once;
    `train_transforms`: with training's augmentation, full batches only."""
    from arnet_jax import data as data_lib  # pylint: disable=g-import-not-at-top (TensorFlow)
    config = self.config
    processes = jax.process_count()
    local_batch = parallel.local_batch_size(config.eval.batch_size, 'eval.batch_size')
    batches, num_examples = data_lib.create_split(
        config.data, split or config.data.eval_split, batch_size=local_batch,
        train=train_transforms, num_classes=config.model.num_classes,
        **(dict(num_epochs=1) if train_transforms else {}))
    if train_transforms:  # full batches of every video once, shuffled
      batches = (dict(b, mask=np.ones(len(b['label']), np.float32)) for b in batches)
      steps = max(1, num_examples // (local_batch * processes))
    else:
      steps = data_lib.eval_steps(num_examples, local_batch, processes)
    return pooled(batches, config.eval.router_batch, steps), steps

  def held_batches(self, count: int) -> list[dict]:
    """The evaluation split's first `count` (pooled) batches, on the devices: for timing the
    forward without the input pipeline."""
    held = itertools.islice(self.batches()[0], count)
    return [parallel.shard_batch(self.mesh, {k: b[k] for k in ('video', 'mask')}) for b in held]

  def run(self, variables: dict, *, step: int | None = None, writer=None,
          split: str | None = None, train_transforms: bool = False) -> dict:
    """-> {'metrics': {...}, 'predictions': {...}} over the whole evaluation split (or `split`,
    every video once; `train_transforms`: with training's augmentation, full batches only).

    `eval.router_batch` loader batches are pooled into one call (the last pool is filled with
    padding videos, so every call has one shape); call i + 1 is dispatched before the outputs of
    call i are read, so the host's work overlaps the device's.
    """
    config, mesh = self.config, self.mesh
    batches, steps = self.batches(split, train_transforms)
    pool = config.eval.router_batch
    if self.router:
      self.router.stats.reset()
    shapes = set()  # masked compute compiles once per batch shape
    collected, pending = [], None
    compiles = compilation.CompileCounter()
    bar = progress_bar(steps, 0, 'eval', jax.process_index() == 0)
    for i, batch in enumerate(batches):
      batch = parallel.shard_batch(mesh, batch)
      video = batch.pop('video')
      shapes.add((video.shape, video.dtype))
      out = {**self.predict(variables, video, i, batch['mask']), **batch}
      if pending is not None:
        collected.append(parallel.to_host(pending))
      else:
        compiles.mark()  # what the first call compiled
      pending = out
      bar.update(min(pool, steps - i * pool))
    collected.append(parallel.to_host(pending))
    compiled_later = compiles.since_mark()
    bar.close()
    predictions = {k: np.concatenate([c[k] for c in collected]) for k in collected[0]}
    real = predictions['mask'] > 0
    predictions = {k: v[real] for k, v in predictions.items()}
    result = self.compute_metrics(predictions)
    result.update(self.routing_cost(len(shapes)))
    result.update(compilations_after_first_batch=compiled_later, router_batch=pool)
    if step is not None:
      result['step'] = step
    if writer is not None:
      for k, v in flatten_metrics(result).items():
        writer.scalar(f'eval/{k}', v, step or 0)
    return {'metrics': result, 'predictions': predictions}

  def routing_cost(self, batch_shapes: int) -> dict:
    """compilations (a cold full evaluation's), padding_waste and bucket_use (sparse only);
    logs them with the compilations this run actually made."""
    if not self.router:
      logging.info('Evaluation (masked compute): %d compilation(s), one per batch shape.',
                   batch_shapes)
      return dict(compilations=batch_shapes)
    stats = self.router.stats.as_dict()
    logging.info(
        'Evaluation (sparse routing, dispatch=%s, buckets=%s): %d compilations for a full '
        'evaluation (%d made now, the rest cached), %.3g dispatches and %.3g host syncs per '
        'call, padding waste %.1f%% of bucket slots; %s.',
        self.router.dispatch_mode, self.router.capacities, stats['compilations'],
        stats['traces'], stats['dispatches_per_batch'], stats['syncs_per_batch'],
        100 * stats['padding_waste'],
        '; '.join(f'{k}: {v["routed"]} frames + {v["padded"]} padded in buckets of '
                  f'{v["capacities"]}' for k, v in stats['per_backbone'].items()))
    return dict(compilations=stats['compilations'], padding_waste=stats['padding_waste'],
                bucket_use=stats['per_backbone'], dispatch=self.router.dispatch_mode,
                dispatches_per_batch=stats['dispatches_per_batch'],
                syncs_per_batch=stats['syncs_per_batch'])

  def compute_metrics(self, p: dict) -> dict:
    result = metrics.classification_metrics(p['logits'], p['label'], p['labels'])
    # With exit, the policy ran on the steps up to each video's exit, as did its actions.
    cost = flops.decision_gflops(p['actions'], self.table, p.get('exit_step'))
    result.update(gflops_per_frame=float(cost['per_frame'].mean()),
                  gflops_per_video=float(cost['per_video'].mean()),
                  action_usage=metrics.action_usage(p['actions'], self.names),
                  num_videos=int(len(p['label'])), routing=self.routing,
                  flops_convention=self.table.convention)
    if 'exit_step' in p:
      result.update(mean_exit_step=float(p['exit_step'].mean()),
                    exited_early=float((p['exit_step'] < p['actions'].shape[1]).mean()))
    if 'processed' in p:  # a policy may skip frames: count the videos it skipped entirely
      result.update({k: float(v) for k, v in health.frame_counts(p['processed']).items()})
    result['warnings'] = health.warnings(
        result['action_usage'], result.get('no_frame_videos'), result.get('frames_per_video'),
        self.config)
    for line in result['warnings']:
      logging.warning('%s: %s', self.config.model.variant, line)
    if 'action_video_logits' in p:  # each resolution action alone, as a Uniform TSN would be
      result['mAP_per_action'] = {
          name: metrics.classification_metrics(p['action_video_logits'][:, r], p['label'],
                                               p['labels'])['mAP']
          for r, name in enumerate(self.names[:p['action_video_logits'].shape[1]])}
    size = self.config.data.image_size
    result.update(demo_metrics(p, (size, size),
                               rounded=crop.reads_whole_pixels(self.config.model.crop_sampling)))
    return result


def demo_metrics(p: dict, frame_size: tuple[int, int], rounded: bool = False) -> dict:
  """The demo's questions of a policy (see the module docstring), from the predictions `p`.

  Args:
    p: actions `[N, T, A]`; the demo's `evidence` `[N, T]` and `glyph_box` `[N, T, 4]`; the
      model's `patch_boxes` `[N, T, 4]` (patch models); with exit, `exit_step` `[N]`; a missing
      key skips its metrics.
    frame_size: (H, W) of the model's input frames (the boxes' pixels).
    rounded: the model's crop reads whole-pixel corners (the random patches' rate does too).
  """
  result = {}
  if 'patch_boxes' in p:  # one action: where the patch lies is the policy's decision
    if 'glyph_box' in p:
      result.update(metrics.glyph_in_patch(p['patch_boxes'], p['glyph_box'], frame_size,
                                           rounded))
  elif 'evidence' in p:  # where does the policy send the frames that matter?
    top = p['actions'][..., 0] > 0.5
    evidence = p['evidence'].astype(bool)
    if 'exit_step' in p:  # only the frames read before the exit (temporal order)
      read = np.arange(top.shape[1])[None] < p['exit_step'][:, None]
      top, evidence = top[read], evidence[read]
    result['evidence_to_top_resolution'] = float(top[evidence].mean()) if evidence.any() else 0
    result['other_to_top_resolution'] = float(top[~evidence].mean()) if (~evidence).any() else 0
  return result


def pooled(batches, size: int, steps: int):
  """Host batches (dicts of `[B, ...]` arrays) concatenated `size` at a time; the last pool is
  filled up with mask=0 copies of its first batch, so every pool has B * size videos."""
  group = []
  for batch in itertools.islice(batches, steps):
    group.append(batch)
    if len(group) == size:
      yield concat(group)
      group = []
  if group:
    filler = {k: np.zeros_like(v) if k == 'mask' else v for k, v in group[0].items()}
    yield concat(group + [filler] * (size - len(group)))


def concat(batches: list[dict]) -> dict:
  return batches[0] if len(batches) == 1 else {
      k: np.concatenate([np.asarray(b[k]) for b in batches]) for k in batches[0]}


def prediction(out: dict) -> dict:
  """What evaluation keeps of a forward pass: logits, actions, decided, processed, a patch
  model's `patch_boxes` `[B, T, 4]`, an exit program's `exit_step` `[B]`, and each resolution
  action's own video logits `[B, R, C]` where every frame ran every resolution action."""
  result = {k: out[k] for k in ('logits', 'actions', 'decided', 'processed', 'patch_boxes',
                                'exit_step') if k in out}
  if 'resolution_logits' in out:
    result['action_video_logits'] = out['resolution_logits'].mean(1)
  return result


def flatten_metrics(result: dict, prefix: str = '') -> dict[str, float]:
  flat = {}
  for k, v in result.items():
    if isinstance(v, dict):
      flat.update(flatten_metrics(v, f'{prefix}{k}/'))
    elif isinstance(v, (int, float)) and not isinstance(v, bool):
      flat[f'{prefix}{k}'] = float(v)
  return flat


def write_metrics(directory: str, result: dict, is_main: bool = True,
                  predictions: dict | None = None) -> None:
  if not is_main:
    return
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, 'metrics.json'), 'w') as f:
    json.dump(result, f, indent=2, sort_keys=True)
  if predictions is not None:
    np.savez_compressed(os.path.join(directory, 'predictions.npz'), **predictions)


# The demo's columns: (header, the two metrics shown as 'a% / b%'); a column is shown when a row
# has its metrics, '-' in the rows without them.
DEMO_COLUMNS = (('top res.: evidence / other',
                 ('evidence_to_top_resolution', 'other_to_top_resolution')),
                ('glyph in patch: learned / random', ('glyph_in_patch', 'glyph_in_random_patch')))


def summary_table(rows: dict[str, dict]) -> str:
  """A markdown table: one row per run, the paper's columns and the action usage (and, on the
  demo, `DEMO_COLUMNS`: how often frames with and without the class evidence go to the top
  resolution; how often a patch model's patch holds the class glyph, and a random patch's)."""
  columns = [(header, keys) for header, keys in DEMO_COLUMNS
             if any(keys[0] in m for m in rows.values())]
  lines = ['| run | mAP | mmAP | top1 | GFLOPs/f | GFLOPs/V | action usage |'
           + ''.join(f' {header} |' for header, _ in columns),
           '|---|---:|---:|---:|---:|---:|---|' + '---:|' * len(columns)]
  for name, m in rows.items():
    usage = ', '.join(f'{a} {100 * s:.0f}%' for a, s in m['action_usage'].items() if s > 0.005)
    line = (f'| {name} | {m["mAP"]:.1f} | {m["mmAP"]:.1f} | {m["top1"]:.1f} | '
            f'{m["gflops_per_frame"]:.4g} | {m["gflops_per_video"]:.4g} | {usage} |')
    for _, (a, b) in columns:
      line += f' {100 * m[a]:.0f}% / {100 * m[b]:.0f}% |' if a in m else ' - |'
    lines.append(line)
  for name, m in rows.items():
    lines += [f'\nWarning ({name}): {line}' for line in m.get('warnings', ())]
  return '\n'.join(lines)


def restore_for(model, config: ml_collections.ConfigDict, path: str) -> dict:
  """The variables `model` needs, taken from the checkpoint at `path`.

  Entries the model does not use are left out (Uniform reads only `backbone_0` of an AR-Net
  checkpoint); a missing entry or a shape mismatch is an error listing them.
  """
  top = registry.of(config).input_resolution(config.model)
  expected = models.abstract_variables(model, (1, config.data.num_frames, top, top, 3))
  loaded, _ = ckpt_lib.load_variables(path)
  return ckpt_lib.select_variables(loaded, expected, f'checkpoint {path}')


def restore_job(config: ml_collections.ConfigDict, job: str) -> dict:
  """What a job on a checkpoint (`config.checkpoint`) starts with: the finalized config (with
  the dataset's classes), model, mesh, variables and the checkpoint's path."""
  checkpoint = config.checkpoint
  if not checkpoint:
    raise errors.UserError(f'{job} needs config.checkpoint=PATH (a workdir, its best/ or '
                           'checkpoints/ folder, or one step folder).')
  ckpt_lib.resolve(checkpoint)  # a wrong path fails now, not after preparing the data
  from arnet_jax import data as data_lib  # pylint: disable=g-import-not-at-top (TensorFlow)
  config = defaults.finalize(config)
  kernels.select(config.model.kernels)  # once per job, before anything is traced
  if config.data.name == 'demo':
    data_lib.ensure_demo_dataset_on_all_processes(config.data.data_dir,
                                                  config.data.builder_config or 'default')
  if config.model.num_classes is None:
    config = data_lib.with_dataset_classes(config)
  model = models.create_model(config.model)
  mesh = parallel.make_mesh()
  variables = parallel.replicate(mesh, restore_for(model, config, checkpoint))
  config = data_lib.with_dataset_classes(config)  # after the checkpoint's own check
  return dict(config=config, model=model, mesh=mesh, variables=variables,
              checkpoint=os.path.abspath(checkpoint))


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str,
                        checkpoint: str | None = None) -> dict:
  """`config.mode=eval`: evaluates a checkpoint (default `config.checkpoint`) on the evaluation
  split and writes WORKDIR/eval. The training split is not needed. With `eval.budget_gflops`,
  with conditional exit at the thresholds `config.mode=exit` saved for that budget."""
  if checkpoint:
    config = config.copy_and_resolve_references()
    with config.unlocked():
      config.checkpoint = checkpoint
  from arnet_jax import early_exit  # pylint: disable=g-import-not-at-top (a cycle otherwise)
  from arnet_jax.tools import report  # pylint: disable=g-import-not-at-top (matplotlib)
  setup = restore_job(config, 'config.mode=eval')
  config, checkpoint = setup['config'], setup['checkpoint']
  thresholds = None
  if config.eval.budget_gflops > 0:
    path = early_exit.thresholds_path(config, checkpoint)
    curve = early_exit.load_thresholds(path, config, ckpt_lib.resolve(checkpoint)[1])
    entry = early_exit.pick(curve, config.eval.budget_gflops)
    thresholds = entry['thresholds']
    logging.info('Conditional exit at q=%g (%.4g GFLOPs per video on the fit split), from %s.',
                 entry['q'], entry['fit_gflops_per_video'], path)
  result = Evaluator(setup['model'], config, setup['mesh'], thresholds=thresholds).run(
      setup['variables'])
  result['metrics']['checkpoint'] = checkpoint
  if thresholds is not None:
    result['metrics'].update(exit_q=entry['q'], budget_gflops=config.eval.budget_gflops)
  write_metrics(os.path.join(workdir, 'eval'), result['metrics'], jax.process_index() == 0,
                result['predictions'])
  if jax.process_index() == 0:
    print(summary_table({config.model.variant: result['metrics']}))
  logging.info('Evaluation of %s written to %s/eval.', checkpoint, workdir)
  report.maybe_write_report(workdir, config)
  return result['metrics']
