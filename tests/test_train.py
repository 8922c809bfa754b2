"""Training and evaluation on the tiny demo dataset: resume, SIGTERM, eval from a checkpoint,
every baseline variant, the frozen policy, config errors."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import sigterm_at_batch, tiny_model_config, tiny_train_config
from flax import traverse_util

from arnet_jax import checkpoint, defaults, evaluate, flops, main, models, parallel, train


def final_variables(workdir):
  state, _ = checkpoint.load(os.path.join(workdir, 'checkpoints'))
  return {'params': state['params'], 'batch_stats': state['batch_stats']}, int(state['step'])


@pytest.fixture(scope='module')
def uninterrupted(demo_data_dir, tmp_path_factory):
  """Joint training, 2 epochs of 3 steps, evaluated after each epoch."""
  config = tiny_train_config(demo_data_dir)
  workdir = str(tmp_path_factory.mktemp('uninterrupted'))
  return config, workdir, train.train_and_evaluate(config, workdir)


def test_sigterm_saves_a_checkpoint_and_resuming_ends_like_an_uninterrupted_run(
    uninterrupted, tmp_path, monkeypatch):
  config, reference_dir, reference_metrics = uninterrupted
  workdir = str(tmp_path / 'interrupted')
  sigterm_at_batch(3, monkeypatch.setattr)  # while step 4 (the first of epoch 2) is prepared
  assert train.train_and_evaluate(config, workdir) == {'interrupted_at_step': 4}
  assert final_variables(workdir)[1] == 4
  monkeypatch.undo()

  resumed_metrics = train.train_and_evaluate(config, workdir)
  assert resumed_metrics == reference_metrics
  (got, step), (want, want_step) = final_variables(workdir), final_variables(reference_dir)
  assert step == want_step == 6
  jax.tree.map(np.testing.assert_array_equal, got, want)


def test_the_final_metrics_are_written_with_the_documented_keys(uninterrupted):
  _, workdir, result = uninterrupted
  with open(os.path.join(workdir, 'eval', 'metrics.json')) as f:
    written = json.load(f)
  for key in ('mAP', 'mmAP', 'top1', 'top5', 'gflops_per_frame', 'gflops_per_video',
              'action_usage'):
    assert key in written
  assert written['mAP'] == pytest.approx(result['mAP'])
  assert sum(written['action_usage'].values()) == pytest.approx(1.0)
  assert written['num_videos'] == 12  # every validation video once, padding dropped


def test_evaluating_the_best_checkpoint_reproduces_the_training_time_evaluation(
    uninterrupted, tmp_path):
  config, workdir, result = uninterrupted
  config = config.copy_and_resolve_references()
  config.mode, config.checkpoint = 'eval', workdir
  metrics = evaluate.evaluate_checkpoint(config, str(tmp_path))
  for key in ('mAP', 'mmAP', 'top1', 'top5', 'gflops_per_frame', 'action_usage'):
    assert metrics[key] == result[key], key
  assert os.path.exists(tmp_path / 'eval' / 'predictions.npz')


def test_evaluation_rejects_a_checkpoint_of_another_architecture(uninterrupted, tmp_path):
  config, workdir, _ = uninterrupted
  config = config.copy_and_resolve_references()
  config.model.num_classes = 7
  with pytest.raises(ValueError, match=r'shape: .*head/kernel has \(.*, 4\), the model needs'):
    evaluate.evaluate_checkpoint(config, str(tmp_path), checkpoint=workdir)


# --- One step of every variant and stage. --------------------------------------------------------

def test_a_policy_that_skips_every_frame_is_reported_in_the_log_the_table_and_the_metrics(
    demo_data_dir, tmp_path, caplog, capsys):
  config = tiny_train_config(demo_data_dir)
  config.train.update(alpha=1.0, beta=0.0)  # nothing but the efficiency loss: a forced collapse
  config.joint.update(lr=0.5, num_epochs=1)
  result = train.train_and_evaluate(config, str(tmp_path))
  assert result['no_frame_videos'] == 1.0 and result['frames_per_video'] == 0.0
  assert result['warnings'][0].startswith('100% of videos had no processed frame')
  training_log = [r.getMessage() for r in caplog.records
                  if r.levelname == 'WARNING' and r.getMessage().startswith('Step ')]
  assert training_log and 'lower train.alpha (now 1)' in training_log[0]
  assert 'Warning (joint (arnet)): 100% of videos had no processed frame' in capsys.readouterr().out
  with open(os.path.join(tmp_path, 'eval', 'metrics.json')) as f:
    assert json.load(f)['warnings'] == result['warnings']


def one_step(config):
  """Builds the stage's model and optimiser, runs one train step on a random batch."""
  mesh = parallel.make_mesh()
  model = train.stage_model(config)
  example = jnp.zeros((1, 16, 64, 64, 3))
  variables = train.initial_variables(model, config, example)
  tx = train.create_optimizer(config, variables['params'], steps_per_epoch=3)
  state = train.TrainState(jnp.zeros((), jnp.int32), variables['params'],
                           variables['batch_stats'], tx.init(variables['params']))
  table = flops.cost_table(config.model)
  step = train.make_train_step(model, tx, config, np.asarray(table.action_gflops), mesh,
                               steps_per_epoch=3)
  batch = {'video': jax.random.normal(jax.random.key(0), (8, 16, 64, 64, 3)),
           'label': jnp.arange(8) % 4}
  new_state, metrics = step(jax.tree.map(jnp.copy, state), parallel.shard_batch(mesh, batch),
                            jax.random.key(1))
  return state, new_state, metrics


@pytest.mark.parametrize('variant,stage', [
    ('arnet', 'warmup'), ('arnet', 'joint'), ('uniform', 'joint'), ('lstm', 'joint'),
    ('random', 'joint'), ('multiscale', 'joint'), ('resolution_only', 'joint'),
    ('skip_only', 'joint'),
])
def test_every_variant_trains_one_step(demo_data_dir, variant, stage):
  config = tiny_train_config(demo_data_dir, variant=variant)
  config.stage = stage
  state, new_state, metrics = one_step(config)
  assert np.isfinite(float(metrics['loss']))
  changed = jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))),
                         state.params, new_state.params)
  assert any(jax.tree.leaves(changed))
  if stage != 'warmup' and variant in ('arnet', 'resolution_only', 'skip_only'):  # policy loss
    assert {'ce', 'flops', 'uniformity'} <= set(metrics)
    # What the log shows of the policy: each action's share of frames, empty videos.
    names = flops.cost_table(config.model).action_names
    assert sum(float(metrics[f'usage/{n}']) for n in names) == pytest.approx(1.0)
    assert 0.0 <= float(metrics['no_frame_videos']) <= 1.0


def test_fine_tuning_freezes_the_policy_parameters_and_batch_statistics(demo_data_dir):
  config = tiny_train_config(demo_data_dir)
  config.stage = 'finetune'
  state, new_state, _ = one_step(config)
  jax.tree.map(np.testing.assert_array_equal, state.params['policy'], new_state.params['policy'])
  jax.tree.map(np.testing.assert_array_equal, state.batch_stats['policy'],
               new_state.batch_stats['policy'])
  assert not np.array_equal(state.params['backbone_0']['head']['kernel'],
                            new_state.params['backbone_0']['head']['kernel'])


def test_init_checkpoint_supplies_every_variable_it_has_and_fresh_ones_fill_the_rest(
    demo_data_dir, tmp_path):
  config = tiny_train_config(demo_data_dir)
  model = train.stage_model(config)
  example = jnp.zeros((1, 16, 64, 64, 3))  # one_step's: the same init program
  fresh = train.initial_variables(model, config, example)
  saved = jax.tree.map(lambda x: np.full(x.shape, 0.5, np.float32), fresh)
  saved['params']['backbone_0']['head']['kernel'] = np.zeros((3, 3), np.float32)  # wrong shape
  manager = checkpoint.manager(str(tmp_path))
  checkpoint.save(manager, 1, saved, {})
  manager.wait_until_finished()
  config.init.checkpoint = str(tmp_path)
  got = traverse_util.flatten_dict(train.initial_variables(model, config, example), sep='/')
  for name, value in traverse_util.flatten_dict(fresh, sep='/').items():
    want = value if name == 'params/backbone_0/head/kernel' else np.full(value.shape, 0.5)
    np.testing.assert_array_equal(got[name], want, err_msg=name)


def test_linear_layers_get_the_original_learning_rate_multipliers():
  config = defaults.get_config()
  config.model = tiny_model_config()
  model = train.stage_model(config)
  params = models.abstract_variables(model, (1, 4, 32, 32, 3))['params']
  labels = traverse_util.flatten_dict(train.param_labels(params, config), sep='/')
  assert labels['backbone_0/head/kernel'] == 'head_kernel'
  assert labels['backbone_0/head/bias'] == 'head_bias'
  assert labels['policy/lite_head/kernel'] == 'head_kernel'
  assert labels['backbone_0/features/bn1/scale'] == 'no_decay'
  assert labels['backbone_0/features/conv1/kernel'] == 'default'
  config.stage = 'finetune'
  labels = traverse_util.flatten_dict(train.param_labels(params, config), sep='/')
  assert {v for k, v in labels.items() if k.startswith('policy/')} == {'frozen'}


# --- Config errors. ------------------------------------------------------------------------------

def test_the_per_epoch_cosine_is_constant_within_an_epoch_and_ends_with_an_epoch_at_zero():
  config = defaults.get_config()
  config.train.lr_schedule = 'cosine_epoch'
  config.joint = defaults.stage_settings(lr=0.002, num_epochs=5)  # 4 epochs of cosine + 1 at 0
  lr = train.learning_rate(config, steps_per_epoch=10)
  got = [float(lr(step)) for step in (0, 9, 10, 20, 30, 39, 40, 49, 60)]
  np.testing.assert_allclose(got, [0.002, 0.002, 0.001 * (1 + np.cos(np.pi / 4)), 0.001,
                                   0.001 * (1 - np.cos(np.pi / 4)),
                                   0.001 * (1 - np.cos(np.pi / 4)), 0.0, 0.0, 0.0], atol=1e-9)


def test_an_unknown_field_in_a_config_file_lists_the_valid_fields():
  config = defaults.get_config()
  with config.unlocked():
    config.train.learning_rate = 0.1
  with pytest.raises(KeyError, match='config.train.learning_rate.*Valid fields of config.train:'
                                     '.*batch_size'):
    defaults.validate(config)


def test_a_mistyped_override_names_the_valid_fields():
  message = main.config_error(['--config=x.py', '--config.train.lrr=0.1'], '--config.train.lrr')
  assert 'Unknown config field --config.train.lrr' in message
  assert 'Valid fields of config.train: alpha, batch_size' in message


def test_the_command_line_rejects_a_mistyped_key_with_the_valid_ones(tmp_path):
  result = subprocess.run(
      [sys.executable, '-m', 'arnet_jax.main', '--config=configs/activitynet.py',
       '--config.modle.num_classes=3', f'--workdir={tmp_path}'],
      capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)),
      timeout=300)
  assert result.returncode != 0
  assert 'Unknown config field --config.modle' in result.stderr
  assert 'Valid fields of config: ' in result.stderr and 'model' in result.stderr
