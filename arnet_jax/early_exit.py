"""Conditional exit: stop reading a video once its running prediction is confident.

Shape letters: N videos, T steps (frames, in the method's processing order), K exit points
(K = ceil(T / exit.group_frames): a check after every group of frames), C classes.

The rule (AdaFocusV2's `ops/early_exit.py`, MSDNet's budgeted batch classification): after
group k a video exits when its confidence reaches T_k. Confidence (`exit.confidence`): the
largest logit of the running prediction (the authors') or its largest softmax probability. The
running prediction is the method's (its registry entry's `exit.running`): AdaFocusV2's step-k
head, AR-Net's mean of the logits of the frames it processed so far.

Thresholds for a compute budget (`fit_thresholds`): exit proportions p_k proportional to q^k
(k = 1..K, normalised); on the fit split (the training split, evaluation transforms by
default: `exit.fit_transforms`), for k = 1..K-1 the floor(N p_k) most confident videos not yet
exited are taken, T_k is the confidence of the last one taken (+inf when none is), T_K = -inf.
Sweeping q (`exit.q_grid`, the authors' 0.5 .. 3.9) traces the GFLOPs-mAP curve; a budget
(`eval.budget_gflops`, GFLOPs per video) picks the q whose cost on the fit split is the largest
within it (`pick`).

GFLOPs are what each video ran: the actions of its steps up to its exit and the policy on
those steps (`step_gflops`).

`config.mode=exit` (`fit_and_evaluate`) fits and evaluates a checkpoint: WORKDIR/exit/ gets
curve.json (the sweep on the evaluation split, simulated from one full forward), table.md (for
each budget of `exit.budget_fractions`: q, mAP, GFLOPs and the measured time per video of the
real exit program against the same method without exit) and, with `eval.report`, the report
(the curve in gflops_map.png); the thresholds go next to the checkpoint (`thresholds_path`),
where `config.mode=eval` with `eval.budget_gflops` reads them.
The real exit program (`arnet_jax.models.exits`) stops computing a video after it exits.
"""
from __future__ import annotations

import json
import os
from typing import Sequence

import jax
import ml_collections
import numpy as np
from absl import logging

from arnet_jax import checkpoint as ckpt_lib
from arnet_jax import errors, flops, metrics, registry
from arnet_jax.models import exits

THRESHOLDS_FILE = 'exit_thresholds.json'


# --- The rule. -----------------------------------------------------------------------------------

def exit_proportions(q: float, k: int) -> np.ndarray:
  """`[K]` p_k = q^k / sum_j q^j, k = 1..K."""
  if q <= 0:
    raise ValueError(f'q must be > 0, got {q}')
  p = np.power(float(q), np.arange(1, k + 1, dtype=np.float64))
  return p / p.sum()


def fit_thresholds(confidence: np.ndarray, q: float) -> np.ndarray:
  """`[N, K]` confidences on the fit split -> `[K]` thresholds (the rule above).

  Ties keep the split's order (a stable sort); a video without a prediction yet (-inf) is never
  taken before the last exit point.
  """
  confidence = np.asarray(confidence, np.float64)
  n, k = confidence.shape
  p = exit_proportions(q, k)
  thresholds = np.full(k, np.inf)
  exited = np.zeros(n, bool)
  for j in range(k - 1):
    take = int(np.floor(n * p[j]))
    if take <= 0:
      continue
    order = np.argsort(-confidence[:, j], kind='stable')
    remaining = order[~exited[order] & np.isfinite(confidence[order, j])][:take]
    if len(remaining):
      thresholds[j] = confidence[remaining[-1], j]
      exited[remaining] = True
  thresholds[-1] = -np.inf
  return thresholds


def exit_points(confidence: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
  """`[N, K]` confidences, `[K]` thresholds -> `[N]` the exit point (0-based) of each video:
  the first k with confidence >= T_k, the last point when there is none."""
  confidence = np.asarray(confidence, np.float64)
  reached = confidence >= np.asarray(thresholds, np.float64)[None]
  reached[:, -1] = True
  return np.argmax(reached, axis=1)


def point_steps(num_steps: int, group: int) -> np.ndarray:
  """`[K]` steps done at each exit point: min((k + 1) group, T)."""
  k = exits.num_exit_points(num_steps, group)
  return np.minimum((np.arange(k) + 1) * group, num_steps)


def step_gflops(actions: np.ndarray, table: flops.CostTable) -> np.ndarray:
  """`[N, T, A]` actions per step (processing order) -> `[N, T]` GFLOPs of each step: its
  actions and the policy on it."""
  return (np.einsum('nta,a->nt', np.asarray(actions, np.float64),
                    np.asarray(table.action_gflops)) + table.policy_gflops)


def cost_at_points(actions: np.ndarray, table: flops.CostTable, group: int) -> np.ndarray:
  """`[N, K]` GFLOPs per video when it exits at each point (what its steps so far cost)."""
  cumulative = np.cumsum(step_gflops(actions, table), axis=1)
  return cumulative[:, point_steps(actions.shape[1], group) - 1]


def at_points(running: np.ndarray, group: int) -> np.ndarray:
  """`[N, T, ...]` per-step values -> `[N, K, ...]` at the exit points."""
  return np.asarray(running)[:, point_steps(running.shape[1], group) - 1]


# --- The sweep and the budget. ------------------------------------------------------------------

def sweep(fit_confidence: np.ndarray, fit_cost: np.ndarray, qs: Sequence[float]) -> list[dict]:
  """For each q: thresholds and the mean GFLOPs per video they give on the fit split itself."""
  curve = []
  for q in qs:
    thresholds = fit_thresholds(fit_confidence, q)
    points = exit_points(fit_confidence, thresholds)
    cost = np.take_along_axis(fit_cost, points[:, None], 1)[:, 0]
    curve.append(dict(q=float(q), thresholds=thresholds.tolist(),
                      fit_gflops_per_video=float(cost.mean())))
  return curve


def pick(curve: Sequence[dict], budget: float) -> dict:
  """The entry of `curve` with the most fit-split GFLOPs per video within `budget`."""
  within = [c for c in curve if c['fit_gflops_per_video'] <= budget]
  if not within:
    cheapest = min(c['fit_gflops_per_video'] for c in curve)
    raise errors.UserError(
        f'eval.budget_gflops={budget:.4g} is below what any q of exit.q_grid gives on the fit '
        f'split (the cheapest: {cheapest:.4g} GFLOPs per video). Raise the budget, or add '
        'larger q values to exit.q_grid and run config.mode=exit again.')
  return max(within, key=lambda c: (c['fit_gflops_per_video'], -c['q']))


def simulate(running_logits: np.ndarray, ready: np.ndarray, cost: np.ndarray,
             thresholds: Sequence[float], kind: str) -> dict:
  """Exits on a split's full forward: running logits `[N, K, C]`, ready `[N, K]`, cost
  `[N, K]` -> logits `[N, C]` at the exits, points `[N]`, gflops `[N]`."""
  confidence = np.asarray(exits.confidence(running_logits, kind, ready))
  points = exit_points(confidence, thresholds)
  return dict(logits=np.take_along_axis(running_logits, points[:, None, None], 1)[:, 0],
              points=points, gflops=np.take_along_axis(cost, points[:, None], 1)[:, 0])


# --- Files. --------------------------------------------------------------------------------------

def thresholds_path(config: ml_collections.ConfigDict, checkpoint: str) -> str:
  """`exit.thresholds`, or the thresholds file beside the checkpoint's step folders."""
  if config.exit.thresholds:
    return os.path.abspath(os.path.expanduser(config.exit.thresholds))
  directory, _ = ckpt_lib.resolve(checkpoint)
  return os.path.join(directory, THRESHOLDS_FILE)


def _identity(config: ml_collections.ConfigDict, step: int) -> dict:
  """What thresholds belong to: the checkpoint step, the variant and the exit settings."""
  return dict(step=int(step), variant=config.model.variant,
              num_frames=int(config.data.num_frames), confidence=config.exit.confidence,
              group_frames=int(config.exit.group_frames))


def save_thresholds(path: str, config: ml_collections.ConfigDict, step: int,
                    curve: Sequence[dict]) -> None:
  tmp = f'{path}.tmp'
  with open(tmp, 'w') as f:
    json.dump(dict(_identity(config, step), curve=list(curve)), f, indent=1)
  os.replace(tmp, path)  # atomic: a reader never sees half a file


def load_thresholds(path: str, config: ml_collections.ConfigDict, step: int) -> list[dict]:
  """The curve saved for this checkpoint step and these settings; an error naming the fix
  otherwise."""
  fix = ('run config.mode=exit on this checkpoint (with these exit settings) first, or set '
         'exit.thresholds to the file it wrote')
  if not os.path.isfile(path):
    raise errors.PathNotFoundError(f'No exit thresholds at {path}: {fix}.')
  try:
    with open(path) as f:
      saved = json.load(f)
    curve = saved['curve']
  except (ValueError, KeyError, TypeError):
    raise errors.UserError(f'{path} is not a thresholds file of config.mode=exit (damaged?): '
                           f'{fix}.') from None
  expected = _identity(config, step)
  wrong = {k: (saved.get(k), v) for k, v in expected.items() if saved.get(k) != v}
  if wrong:
    raise errors.UserError(
        f'The exit thresholds at {path} were fit for other settings ('
        + ', '.join(f'{k}: {a!r} there, {b!r} here' for k, (a, b) in wrong.items())
        + f'): {fix}.')
  return curve


# --- The job. ------------------------------------------------------------------------------------

def running_at_points(method: registry.Method, config: ml_collections.ConfigDict):
  """A function of a full forward's output -> running logits `[B, K, C]` and ready `[B, K]`
  at the exit points (computed on the device, so only K of the T steps come to the host)."""
  group = int(config.exit.group_frames)

  def collect(out: dict) -> dict:
    logits, ready = method.exit.running(out, config.model)
    index = point_steps(logits.shape[1], group) - 1
    return dict(exit_running=logits[:, index], exit_ready=ready[:, index])
  return collect


def time_per_video(calls: dict, batches: Sequence[dict], repeats: int = 5) -> dict:
  """Seconds per real video of each `calls[name](video, valid)` over `batches`: each run once
  first (compilation), then `repeats` rounds in a shuffled order (`bench.inference.time_calls`),
  the best round."""
  from arnet_jax.bench import inference as bench  # pylint: disable=g-import-not-at-top
  modes = {name: lambda i, call=call: [call(b['video'], b['mask'] > 0) for b in batches]
           for name, call in calls.items()}
  times, _ = bench.time_calls(modes, 1, 1, repeats, 0)
  videos = sum(int(np.sum(np.asarray(b['mask']) > 0)) for b in batches)
  return {name: min(t) / max(videos, 1) for name, t in times.items()}


def fit_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """`config.mode=exit`: see the module docstring. Returns curve.json's content."""
  from arnet_jax import evaluate  # pylint: disable=g-import-not-at-top (a cycle otherwise)
  setup = evaluate.restore_job(config, 'config.mode=exit')
  config, model, mesh, variables, checkpoint = (setup[k] for k in (
      'config', 'model', 'mesh', 'variables', 'checkpoint'))
  method = registry.of(config)
  if method.exit is None:
    raise errors.UserError(f'model.variant={config.model.variant} has no conditional exit.')
  group, kind = int(config.exit.group_frames), config.exit.confidence
  table = flops.cost_table(config.model)
  collect = running_at_points(method, config)
  evaluator = evaluate.Evaluator(model, config, mesh, collect=collect)

  fit_split = config.exit.fit_split or config.data.train_split
  logging.info('Exit: the full forward on the fit split %r (%s transforms).', fit_split,
               config.exit.fit_transforms)
  fit = evaluator.run(variables, split=fit_split,
                      train_transforms=config.exit.fit_transforms == 'train')['predictions']
  fit_confidence = np.asarray(exits.confidence(fit['exit_running'], kind, fit['exit_ready']))
  curve = sweep(fit_confidence, cost_at_points(fit['actions'], table, group),
                config.exit.q_grid)
  _, step = ckpt_lib.resolve(checkpoint)
  path = thresholds_path(config, checkpoint)
  if jax.process_index() == 0:
    save_thresholds(path, config, step, curve)
    logging.info('Exit thresholds for %d values of q written to %s.', len(curve), path)

  logging.info('Exit: the full forward on the evaluation split.')
  full = evaluator.run(variables)
  p = full['predictions']
  cost = cost_at_points(p['actions'], table, group)
  for entry in curve:
    sim = simulate(p['exit_running'], p['exit_ready'], cost, entry['thresholds'], kind)
    m = metrics.classification_metrics(sim['logits'], p['label'], p['labels'])
    entry.update(mAP=m['mAP'], top1=m['top1'], gflops_per_video=float(sim['gflops'].mean()),
                 mean_exit_step=float(point_steps(p['actions'].shape[1], group)[sim['points']]
                                      .mean()))
  no_exit = dict(mAP=full['metrics']['mAP'], top1=full['metrics']['top1'],
                 gflops_per_video=full['metrics']['gflops_per_video'])
  rows = budget_rows(config, model, mesh, variables, curve, no_exit)
  result = dict(_identity(config, step), checkpoint=checkpoint, fit_split=fit_split,
                fit_transforms=config.exit.fit_transforms, no_exit=no_exit, curve=curve,
                table=rows, thresholds_file=path)
  if jax.process_index() == 0:
    out = os.path.join(workdir, 'exit')
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, 'curve.json'), 'w') as f:
      json.dump(result, f, indent=1)
    text = table_markdown(config.model.variant, no_exit, rows)
    with open(os.path.join(out, 'table.md'), 'w') as f:
      f.write(text + '\n')
    print(text)
  from arnet_jax.tools import report  # pylint: disable=g-import-not-at-top (matplotlib)
  report.maybe_write_report(workdir, config)  # the curve joins gflops_map.png
  return result


def budget_rows(config, model, mesh, variables, curve: Sequence[dict], no_exit: dict
                ) -> list[dict]:
  """For each budget: the picked q, the real exit program's evaluation (mAP, GFLOPs) and its
  measured time per video against the same method without exit: the faster of its evaluation
  forward and the exit program at thresholds no video reaches early, timed in turns with it
  on the same held batches (`exit.timing_batches`)."""
  from arnet_jax import evaluate  # pylint: disable=g-import-not-at-top
  budgets = [f * no_exit['gflops_per_video'] for f in config.exit.budget_fractions]
  rows, evaluator = [], None
  for budget in budgets:
    try:
      entry = pick(curve, budget)
    except errors.UserError as e:
      logging.warning('Exit budget %.4g skipped: %s', budget, e)
      continue
    evaluator = evaluate.Evaluator(model, config, mesh, thresholds=entry['thresholds'])
    m = evaluator.run(variables)['metrics']
    rows.append(dict(budget=budget, q=entry['q'], mAP=m['mAP'], top1=m['top1'],
                     gflops_per_video=m['gflops_per_video'], mean_exit_step=m['mean_exit_step'],
                     simulated_mAP=entry['mAP'], thresholds=evaluator.thresholds))
  if not rows:
    return rows
  rng = jax.random.key(config.eval.seed)
  program, plain = evaluator.forward, evaluate.Evaluator(model, config, mesh).forward
  calls = dict(forward=lambda video, valid: plain(variables, video, rng=rng, valid=valid),
               exit_program=lambda video, valid: program(
                   variables, video, evaluator.no_exit_thresholds, rng=rng, valid=valid))
  for i, row in enumerate(rows):
    calls[i] = lambda video, valid, th=row.pop('thresholds'): program(
        variables, video, th, rng=rng, valid=valid)
  seconds = time_per_video(calls, evaluator.held_batches(config.exit.timing_batches))
  no_exit_seconds = {k: seconds[k] for k in ('forward', 'exit_program')}
  for i, row in enumerate(rows):
    row.update(seconds_per_video=seconds[i], no_exit_seconds=no_exit_seconds,
               no_exit_seconds_per_video=min(no_exit_seconds.values()))
  return rows


def table_markdown(variant: str, no_exit: dict, rows: Sequence[dict]) -> str:
  lines = [f'{variant} with conditional exit (no exit: {no_exit["mAP"]:.1f} mAP at '
           f'{no_exit["gflops_per_video"]:.4g} GFLOPs/video)', '',
           '| budget GFLOPs/V | q | mAP | GFLOPs/V | saved | mean exit step | ms/video | '
           'no exit ms/video | time saved |', '|---:|---:|---:|---:|---:|---:|---:|---:|---:|']
  for r in rows:
    saved = 1 - r['gflops_per_video'] / no_exit['gflops_per_video']
    time_saved = 1 - r['seconds_per_video'] / r['no_exit_seconds_per_video']
    lines.append(f'| {r["budget"]:.4g} | {r["q"]:.1f} | {r["mAP"]:.1f} | '
                 f'{r["gflops_per_video"]:.4g} | {100 * saved:.0f}% | {r["mean_exit_step"]:.1f} '
                 f'| {1e3 * r["seconds_per_video"]:.2f} | '
                 f'{1e3 * r["no_exit_seconds_per_video"]:.2f} | {100 * time_saved:.0f}% |')
  return '\n'.join(lines)
