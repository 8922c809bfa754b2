"""AdaFocus V1 and AdaFocus+ as registry entries: the rewards, the authors' GFLOPs, the
settings refused, and the five stages trained and evaluated end to end on the tiny demo data
(each stage changes only the parts it trains; skipped frames cost nothing; evaluation is
deterministic)."""
import os

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_train_config
from flax import traverse_util

from arnet_jax import checkpoint as ckpt_lib
from arnet_jax import defaults, evaluate, flops, registry
from arnet_jax.methods import adafocus_v1 as method

CONFIGS_DIR = os.path.join(os.path.dirname(__file__), '..', 'configs')
T = 4  # frames of the tiny end-to-end run
STAGES = ('warmup', 'random', 'policy', 'finetune', 'skip')


def tiny_v1_model_config(**overrides):
  """AdaFocus+ at toy width and size (ResNet-18s, the quickest to compile, glance and focus)."""
  model = defaults.get_config().model
  model.update(variant=method.PLUS, num_classes=4, frame_resolution=32, global_resolution=32,
               global_backbone='resnet18', local_backbone='resnet18', patch_sizes=(16,),
               policy_channels=4, policy_hidden=8, classifier_hidden=16, grid=7,
               width_multiplier=0.125, depth_multiplier=0.34, dropout=0.0)
  model.update(overrides)
  return model


# --- Rewards. ------------------------------------------------------------------------------------

def test_the_patch_reward_is_the_label_confidence_gained_over_a_random_patch():
  chosen = jnp.log(jnp.asarray([[[0.7, 0.3], [0.2, 0.8]]]))  # [B=1, T=2, C=2]
  random = jnp.log(jnp.asarray([[[0.5, 0.5], [0.4, 0.6]]]))
  rewards = method.patch_rewards(dict(step_logits=chosen, random_step_logits=random),
                                 jnp.asarray([1]))
  np.testing.assert_allclose(rewards, [[0.3 - 0.5, 0.8 - 0.6]], atol=1e-6)


def test_the_skip_reward_prices_a_processed_frame_and_is_zero_on_a_skipped_one():
  prior = jnp.log(jnp.asarray([[[0.5, 0.5], [0.4, 0.6], [0.4, 0.6]]]))
  after = jnp.log(jnp.asarray([[[0.4, 0.6], [0.4, 0.6], [0.1, 0.9]]]))
  out = dict(step_logits=after, prior_logits=prior, processed=jnp.asarray([[True, False, True]]))
  np.testing.assert_allclose(method.skip_rewards(out, jnp.asarray([1]), 0.05),
                             [[0.1 - 0.05, 0.0, 0.3 - 0.05]], atol=1e-6)


# --- GFLOPs. -------------------------------------------------------------------------------------

@pytest.mark.parametrize('patch,published', [(96, 17), (128, 27), (160, 39)])
def test_gflops_per_video_are_the_papers(patch, published):
  config = defaults.load_config(os.path.join(CONFIGS_DIR, f'adafocus_v1.py:patch={patch}'))
  table = flops.cost_table(config.model)
  assert table.action_names == (f'glance+focus@{patch}',)
  per_video = 16 * (table.action_gflops[0] + table.policy_gflops)
  assert per_video == pytest.approx(published, rel=0.03)  # "about", the paper's figures


def test_the_policy_and_classifier_steps_are_counted_from_their_layers():
  config = defaults.load_config(os.path.join(CONFIGS_DIR, 'adafocus_v1.py:patch=128'))
  table = flops.cost_table(config.model)
  # 1x1 conv 1280 -> 32 on 7 x 7, Dense 1568 -> 1024, the GRU's 6 H^2, actor 49 and critic.
  assert table.lstm_gflops == pytest.approx(
      (1280 * 32 * 49 + 1568 * 1024 + 6 * 1024 ** 2 + 1024 * 49 + 1024) / 1e9, rel=1e-9)
  # The local ResNet-50 at 128 px with its head, then a classifier step: GRU and its head.
  classifier = (3 * 3328 * 1024 + 3 * 1024 ** 2 + 1024 * 200) / 1e9
  resnet = flops.backbone_gflops('resnet50', 128, 200, convention='macs')
  assert table.action_gflops[0] == pytest.approx(resnet + classifier, rel=1e-9)


def test_bad_adafocus_v1_settings_are_refused_before_anything_runs():
  config = defaults.get_config()
  config.stage = 'random'
  config.model = tiny_v1_model_config(patch_sizes=(16, 8))
  with pytest.raises(ValueError, match=r'config.random \(the settings of stage .random.\) is '
                     'missing'):
    defaults.validate(config)
  config.random = defaults.stage_settings()
  with pytest.raises(ValueError, match='AdaFocus V1 reads one patch side'):
    defaults.validate(config)
  config.model = tiny_v1_model_config(grid=1)
  with pytest.raises(ValueError, match='model.grid must be >= 2'):
    defaults.validate(config)
  config.model = tiny_v1_model_config(policy_actions='beta')
  with pytest.raises(ValueError, match='model.policy_actions must be one of'):
    defaults.validate(config)
  config.model = tiny_v1_model_config()
  config.stage = 'policy'
  config.policy = defaults.stage_settings(optimizer='rmsprop')
  with pytest.raises(ValueError, match=r"policy.optimizer must be one of \('sgd', 'adam'\)"):
    defaults.validate(config)


def test_only_adafocus_plus_has_the_skip_stage():
  assert registry.get(method.NAME).stage_names == STAGES[:-1]
  assert registry.get(method.PLUS).stage_names == STAGES
  with pytest.raises(ValueError, match="has no stage 'skip'"):
    registry.get(method.NAME).stage('skip')


# --- The five stages, end to end. ----------------------------------------------------------------

@pytest.fixture(scope='module')
def recipe_run(demo_data_dir, tmp_path_factory):
  """AdaFocus+'s recipe on the tiny demo data, an epoch (3 steps) per stage at 32 px, T = 4."""
  from arnet_jax import recipe  # pylint: disable=g-import-not-at-top (imports TensorFlow)
  workdir = str(tmp_path_factory.mktemp('adafocus_v1_recipe'))
  config = tiny_train_config(demo_data_dir)
  config.model, config.stage = tiny_v1_model_config(), 'warmup'
  config.data.image_size, config.data.num_frames = 32, T
  config.train.update(lr_schedule='cosine', grad_clip=0.0, skip_cost=0.0)
  for stage in STAGES:
    adam = stage in ('policy', 'skip')
    config[stage] = defaults.stage_settings(
        lr=1e-3 if adam else 0.05, num_epochs=1, optimizer='adam' if adam else 'sgd',
        lr_schedule='constant' if adam else '')
  return config, workdir, recipe.run(config, workdir)


def _flat(workdir: str, stage: str) -> dict:
  variables, _ = ckpt_lib.load_variables(os.path.join(workdir, stage, 'best'))
  return {(collection,) + k: np.asarray(v) for collection in variables
          for k, v in traverse_util.flatten_dict(variables[collection]).items()}


@pytest.mark.parametrize('stage,before,trained', [
    ('policy', 'random', 'policy'), ('finetune', 'policy', 'classifier'),
    ('skip', 'finetune', 'skip_policy')])
def test_each_stage_changes_only_the_part_it_trains(recipe_run, stage, before, trained):
  _, workdir, _ = recipe_run
  old, new = _flat(workdir, before), _flat(workdir, stage)
  changed = {k[1] for k in new if k not in old or not np.array_equal(old[k], new[k])}
  assert changed == {trained}  # the frozen parts bit for bit, BatchNorm statistics too
  assert set(old) <= set(new)


def test_adafocus_v1s_stages_read_every_frame_and_the_skip_stage_adds_the_skip_policy(
    recipe_run):
  _, workdir, _ = recipe_run
  assert not any(k[1] == 'skip_policy' for k in _flat(workdir, 'finetune'))
  assert any(k[1] == 'skip_policy' for k in _flat(workdir, 'skip'))


def test_the_recipe_compares_random_patches_and_the_policy_with_one_classifier(recipe_run):
  config, _, rows = recipe_run
  assert list(rows) == [name for name, _, _ in method.RECIPE_ROWS + (method.PLUS_ROW,)]
  assert all(r['num_videos'] == 12 for r in rows.values())
  table = flops.cost_table(config.model)
  v1 = flops.cost_table(registry.with_variant(config.model, method.NAME))
  random_table = flops.cost_table(registry.with_variant(config.model, f'{method.NAME}_random'))
  assert rows['AdaFocus V1']['gflops_per_video'] == pytest.approx(
      T * (v1.action_gflops[0] + v1.policy_gflops))
  assert rows['Random patches (stage-2 classifier)']['gflops_per_video'] == pytest.approx(
      T * (random_table.action_gflops[0] + random_table.policy_cnn_gflops))
  assert table.policy_gflops > v1.policy_gflops  # AdaFocus+ also runs its skip policy


def test_adafocus_plus_pays_the_local_cnn_only_on_the_frames_it_processes(recipe_run):
  config, _, rows = recipe_run
  plus = rows[method.PLUS_ROW[0]]
  table = flops.cost_table(config.model)
  frames = plus['frames_per_video']
  assert 1 <= frames <= T
  assert plus['gflops_per_video'] == pytest.approx(
      T * table.policy_gflops + frames * table.action_gflops[0])


def test_evaluation_from_a_checkpoint_is_deterministic(recipe_run, tmp_path):
  config, workdir, _ = recipe_run
  c = config.copy_and_resolve_references()
  c.mode, c.stage, c.eval.report = 'eval', 'skip', False
  runs = [evaluate.evaluate_checkpoint(c, str(tmp_path / str(i)),
                                       checkpoint=os.path.join(workdir, 'skip', 'best'))
          for i in range(2)]
  assert runs[0] == runs[1]
  first, again = (np.load(tmp_path / str(i) / 'eval' / 'predictions.npz') for i in range(2))
  np.testing.assert_array_equal(first['logits'], again['logits'])
  np.testing.assert_array_equal(first['processed'], again['processed'])
  assert np.isfinite(first['logits']).all()
