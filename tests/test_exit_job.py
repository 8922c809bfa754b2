"""Conditional exit end to end (`config.mode=exit`, then `config.mode=eval` with a budget): the
thresholds are fit on the training split and saved beside the checkpoint, the real exit
program evaluates exactly what the simulation from one full forward predicts, GFLOPs are the
steps each video ran, and a budget is never exceeded on the split it was fit on."""
import json
import os

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ADAFOCUS_T as T

from arnet_jax import checkpoint as ckpt_lib
from arnet_jax import early_exit, errors, evaluate, flops, parallel


@pytest.fixture(scope='module')
def exit_job(tiny_adafocus_recipe, tmp_path_factory):
  """`config.mode=exit` on the joint stage of a tiny AdaFocusV2's recipe."""
  config, recipe_workdir, _ = tiny_adafocus_recipe
  workdir = str(tmp_path_factory.mktemp('exit_job'))
  config = config.copy_and_resolve_references()
  config.mode, config.checkpoint = 'exit', os.path.join(recipe_workdir, 'joint')
  config.exit.q_grid = (0.5, 1.0, 2.0, 4.0)
  config.exit.budget_fractions = (0.7,)
  config.exit.timing_batches = 1
  result = early_exit.fit_and_evaluate(config, workdir)
  return config, workdir, result


def test_the_job_saves_thresholds_beside_the_checkpoint_and_writes_the_curve(exit_job):
  config, workdir, result = exit_job
  best, step = ckpt_lib.resolve(config.checkpoint)
  assert result['thresholds_file'] == os.path.join(best, early_exit.THRESHOLDS_FILE)
  curve = early_exit.load_thresholds(result['thresholds_file'], config, step)
  assert [c['q'] for c in curve] == [0.5, 1.0, 2.0, 4.0]
  assert all(c['thresholds'][-1] == -np.inf for c in curve)
  with open(os.path.join(workdir, 'exit', 'curve.json')) as f:
    saved = json.load(f)
  assert saved['variant'] == 'adafocus_v2' and saved['step'] == step
  assert os.path.isfile(os.path.join(workdir, 'exit', 'table.md'))


def test_the_exit_program_evaluates_what_the_full_forwards_exits_predict(exit_job):
  config, _, result = exit_job
  for row in result['table']:
    entry = next(c for c in result['curve'] if c['q'] == row['q'])
    assert row['mAP'] == pytest.approx(entry['mAP'])
    assert row['gflops_per_video'] == pytest.approx(entry['gflops_per_video'])
    assert entry['fit_gflops_per_video'] <= row['budget']  # on the split it was fit on
    assert row['seconds_per_video'] > 0 and row['no_exit_seconds_per_video'] > 0


@pytest.fixture(scope='module')
def exit_evaluator(exit_job):
  """One evaluator of the checkpoint with its exit program (one compilation for all tests)."""
  config = exit_job[0]
  setup = evaluate.restore_job(config, 'a test')
  evaluator = evaluate.Evaluator(setup['model'], setup['config'], parallel.make_mesh(),
                                 thresholds=[0.0] * T)

  def run(thresholds):
    evaluator.thresholds = jnp.asarray(thresholds, jnp.float32)
    return evaluator.run(setup['variables'])
  return run


def test_with_no_early_exit_the_results_equal_evaluation_without_exit(exit_job, exit_evaluator):
  no_exit = exit_job[2]['no_exit']
  # One exit point per frame (exit.group_frames = 1); none reachable before the last.
  got = exit_evaluator([np.inf] * (T - 1) + [-np.inf])['metrics']
  assert {k: got[k] for k in no_exit} == no_exit  # mAP, top1, GFLOPs per video: exactly
  assert got['mean_exit_step'] == T and got['exited_early'] == 0


def test_every_video_exits_after_its_first_frame_at_minus_infinity(exit_job, exit_evaluator):
  out = exit_evaluator([-np.inf] * T)
  table = flops.cost_table(exit_job[0].model)
  assert (out['predictions']['exit_step'] == 1).all()
  # GFLOPs per video: what ran, the glance, policy and local CNN on one frame.
  assert out['metrics']['gflops_per_video'] == pytest.approx(
      table.action_gflops[0] + table.policy_gflops)


def test_evaluation_with_a_budget_reads_the_saved_thresholds(exit_job, tmp_path):
  config, _, result = exit_job
  eval_config = config.copy_and_resolve_references()
  eval_config.mode = 'eval'
  eval_config.eval.budget_gflops = result['table'][0]['budget']
  metrics = evaluate.evaluate_checkpoint(eval_config, str(tmp_path))
  assert metrics['exit_q'] == result['table'][0]['q']
  assert metrics['mAP'] == pytest.approx(result['table'][0]['mAP'])
  eval_config.exit.group_frames = 2  # thresholds were fit for checks after every frame
  with pytest.raises(errors.UserError, match='group_frames: 1 there, 2 here'):
    evaluate.evaluate_checkpoint(eval_config, str(tmp_path))
  eval_config.exit.group_frames = 1
  eval_config.eval.budget_gflops = 1e-9
  with pytest.raises(errors.UserError, match='below what any q'):
    evaluate.evaluate_checkpoint(eval_config, str(tmp_path))
