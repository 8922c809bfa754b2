"""A method's whole recipe as one job (`config.mode=recipe`): its stages, then its comparison.

WORKDIR/<stage> for each stage of the method's registry entry, in order, are ordinary training
workdirs (each resumable; a stage with `starts_from` starts from that stage's best checkpoint).
Then, without further training, the entry's `recipe_rows` are evaluated; AR-Net's are the
paper's comparison (Table 1):
  Uniform       backbone 0 alone on every frame, warm-up weights (a TSN at the top resolution);
  Random policy uniformly random actions (skips included), fine-tuned weights;
  Multi-Scale   every resolution action on every frame, warm-up weights;
  AR-Net        the fine-tuned model, its own deterministic decisions.
The table goes to WORKDIR/results.json and WORKDIR/results.md and is printed.
"""
from __future__ import annotations

import json
import os
import time

import jax
import ml_collections

from arnet_jax import evaluate, registry, train


def stage_config(config: ml_collections.ConfigDict, stage: str, workdir: str):
  c = config.copy_and_resolve_references()
  with c.unlocked():
    c.mode, c.stage = 'train', stage
    c.eval.report = False  # one report over every stage and baseline at the end
    previous = registry.of(config).stage(stage).starts_from
    if previous:
      c.init.checkpoint = os.path.join(workdir, previous, 'best')
      c.init.backbones, c.init.policy = (), ''
  return c


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains the method's stages in `workdir`, evaluates its comparison; returns the table rows."""
  from arnet_jax.tools import report  # pylint: disable=g-import-not-at-top (matplotlib)
  method = registry.of(config)
  start = time.time()
  timings = {}
  for stage in method.stage_names:
    t0 = time.time()
    result = train.train_and_evaluate(stage_config(config, stage, workdir),
                                      os.path.join(workdir, stage))
    if 'interrupted_at_step' in result:
      return result
    timings[stage] = time.time() - t0
  rows = {}
  for name, variant, stage in method.recipe_rows or ((method.name, method.name,
                                                       method.stage_names[-1]),):
    c = config.copy_and_resolve_references()
    with c.unlocked():
      c.mode, c.model.variant, c.stage, c.eval.report = 'eval', variant, stage, False
    rows[name] = evaluate.evaluate_checkpoint(
        c, os.path.join(workdir, 'baselines', variant),
        checkpoint=os.path.join(workdir, stage, 'best'))
  timings['total'] = time.time() - start
  if jax.process_index() == 0:
    table = evaluate.summary_table(rows)
    with open(os.path.join(workdir, 'results.json'), 'w') as f:
      json.dump(dict(rows=rows, seconds=timings), f, indent=2, sort_keys=True)
    with open(os.path.join(workdir, 'results.md'), 'w') as f:
      f.write(table + '\n')
    print(table)
    print(f'Recipe finished in {timings["total"] / 60:.1f} min; results in {workdir}/results.md')
  report.maybe_write_report(workdir, config)
  return rows
