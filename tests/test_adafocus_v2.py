"""AdaFocusV2: the coarse-to-fine frame order, a policy that always gives a valid corner, no
gradient from the policy into the global CNN, the authors' loss and learning-rate groups, a train
step that learns, deterministic evaluation, the authors' GFLOPs, and the registry entry trained
and evaluated end to end on the tiny demo data."""
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import (ADAFOCUS_T, random_variables, tiny_adafocus_model_config,
                      with_tiny_adafocus)
from flax import traverse_util

from arnet_jax import checkpoint as ckpt_lib
from arnet_jax import defaults, flops, losses, models, parallel, registry, train
from arnet_jax.methods import adafocus_v2 as method
from arnet_jax.models import adafocus_v2 as adafocus

CONFIGS_DIR = os.path.join(os.path.dirname(__file__), '..', 'configs')
T = ADAFOCUS_T


def tiny_adafocus_config(**overrides):
  return with_tiny_adafocus(defaults.get_config(), **overrides)


@pytest.fixture(scope='module')
def tiny():
  """A tiny model, a learnable toy batch (the class is the frames' brightness) and variables."""
  model = models.create_model(tiny_adafocus_model_config())
  rng = np.random.default_rng(0)
  labels = np.arange(8) % 4
  video = rng.normal(size=(8, T, 32, 32, 3)).astype(np.float32) + labels[:, None, None, None,
                                                                       None]
  return model, jnp.asarray(video), jnp.asarray(labels), random_variables(model, video[:1])


# --- Frame order. --------------------------------------------------------------------------------

def test_sixteen_frames_are_read_in_the_authors_coarse_to_fine_order():
  assert adafocus.coarse_to_fine_order(16) == (7, 0, 15, 3, 11, 1, 5, 9, 13, 2, 4, 6, 8, 10,
                                               12, 14)


@pytest.mark.parametrize('num_frames', [3, 4, 5, 8, 12, 25, 32])
def test_any_number_of_frames_is_read_middle_first_last_then_each_other_once(num_frames):
  order = adafocus.coarse_to_fine_order(num_frames)
  assert order[:3] == ((num_frames - 1) // 2, 0, num_frames - 1)
  assert sorted(order) == list(range(num_frames))


def test_one_or_two_frames_are_each_read_once():
  assert adafocus.coarse_to_fine_order(1) == (0,)
  assert adafocus.coarse_to_fine_order(2) == (0, 1)
  assert adafocus.coarse_to_fine_order(4) == (1, 0, 3, 2)


def test_the_natural_order_reads_frames_in_time():
  assert adafocus.frame_indices('natural', 5) == (0, 1, 2, 3, 4)


# --- Policy. -------------------------------------------------------------------------------------

@pytest.mark.parametrize('scale', [1.0, 1e4])
def test_the_policy_gives_a_valid_corner_for_any_input(scale):
  policy = adafocus.FocusPolicy(channels=4, hidden=8)
  maps = scale * jax.random.normal(jax.random.key(0), (3, 5, 2, 2, 6))
  variables = random_variables(policy, maps)
  apply = jax.jit(lambda v, x: (policy.apply(v, x),
                                policy.apply(v, x, True, mutable=['batch_stats'])[0]))
  for corners in apply(variables, maps):  # running and batch statistics
    assert corners.shape == (3, 5, 2)
    assert np.all((np.asarray(corners) >= 0) & (np.asarray(corners) <= 1))


def test_the_policy_is_causal_over_the_steps():
  policy = adafocus.FocusPolicy(channels=4, hidden=8)
  maps = jax.random.normal(jax.random.key(0), (2, 5, 2, 2, 6))
  variables = random_variables(policy, maps)
  changed = maps.at[:, 3:].set(7.0)  # later steps differ; running statistics, so no batch mix
  apply = jax.jit(policy.apply)
  before, after = apply(variables, maps), apply(variables, changed)
  np.testing.assert_allclose(before[:, :3], after[:, :3], rtol=1e-6)
  assert not np.allclose(before[:, 3:], after[:, 3:])


def test_the_policys_gradient_does_not_reach_the_global_cnn_through_its_input(tiny):
  model, video, _, variables = tiny

  def corner_sum(params):
    out, _ = model.apply({'params': params, 'batch_stats': variables['batch_stats']}, video,
                         train=True, mutable=['batch_stats'],
                         rngs={'gumbel': jax.random.key(0), 'dropout': jax.random.key(1)})
    return out['policy_corners'].sum()
  grads = jax.jit(jax.grad(corner_sum))(variables['params'])
  global_cnn = jax.tree.leaves(grads['backbone_0'])
  assert global_cnn and all(np.all(np.asarray(g) == 0) for g in global_cnn)
  assert any(np.any(np.asarray(g) != 0) for g in jax.tree.leaves(grads['policy']))


# --- Loss and optimiser. -------------------------------------------------------------------------

def test_the_loss_is_half_the_policy_pass_plus_half_the_random_pass():
  rng = np.random.default_rng(0)
  logits = {k: jnp.asarray(rng.normal(size=(2, 3, 4))) for k in (
      'step_logits', 'global_logits', 'local_logits', 'random_step_logits',
      'random_local_logits')}
  labels = jnp.asarray([1, 3])
  loss, parts = method.adafocus_v2_loss(logits, labels, None)
  ce = {k: float(np.mean([losses.cross_entropy(v[:, t], labels) for t in range(3)]))
        for k, v in logits.items()}  # every step's CE, averaged over B x T
  want = 0.5 * (ce['step_logits'] + ce['global_logits'] + ce['local_logits']) + 0.5 * (
      ce['random_step_logits'] + ce['global_logits'] + ce['random_local_logits'])
  assert float(loss) == pytest.approx(want, rel=1e-6)
  assert float(parts['ce_random_local']) == pytest.approx(ce['random_local_logits'], rel=1e-6)


def test_each_part_takes_its_learning_rate_multiplier_and_every_parameter_decays(tiny):
  model, video, _, variables = tiny
  config = tiny_adafocus_config()
  params = variables['params']
  labels = traverse_util.flatten_dict(train.param_labels(params, config), sep='/')
  assert labels['policy/gru/hh/kernel'] == 'lr_x0.1'
  assert labels['backbone_0/features/bn1/scale'] == 'lr_x0.5'
  assert labels['backbone_0/head/bias'] == 'lr_x0.5'
  assert labels['backbone_1/features/conv1/kernel'] == 'lr_x1'
  assert labels['classifier/head_3/kernel'] == 'lr_x5'
  # One SGD step of gradient 1 from zero momentum: -lr * mult * (1 + weight_decay * param).
  tx = train.create_optimizer(config, params, steps_per_epoch=3)
  updates, _ = jax.jit(lambda p: tx.update(jax.tree.map(jnp.ones_like, p), tx.init(p), p))(params)
  flat_updates = traverse_util.flatten_dict(updates, sep='/')
  flat_params = traverse_util.flatten_dict(params, sep='/')
  for name, mult in (('policy/fc/bias', 0.1), ('backbone_0/head/kernel', 0.5),
                     ('backbone_1/features/bn1/scale', 1.0), ('classifier/fc_bn/bias', 5.0)):
    np.testing.assert_allclose(flat_updates[name], -0.05 * mult * (1 + 1e-4 * flat_params[name]),
                               rtol=1e-5, err_msg=name)


def test_a_train_step_on_toy_data_lowers_the_loss(tiny):
  model, video, labels, variables = tiny
  # The step of the end-to-end test below (same config, 3 steps per epoch, batch shapes): it
  # compiles once for both, through the session's compilation cache.
  config = tiny_adafocus_config()
  mesh = parallel.make_mesh()
  tx = train.create_optimizer(config, variables['params'], steps_per_epoch=3)
  state = train.TrainState(jnp.zeros((), jnp.int32), variables['params'],
                           variables['batch_stats'], jax.jit(tx.init)(variables['params']))
  table = flops.cost_table(config.model)
  step = train.make_train_step(model, tx, config, np.asarray(table.action_gflops), mesh,
                               steps_per_epoch=3)
  batch = parallel.shard_batch(mesh, {'video': video, 'label': labels})
  first = jax.tree.map(np.asarray, state.params)
  history = []
  for _ in range(6):  # the same batch and key: the same random patches every step
    state, metrics = step(state, batch, jax.random.key(3))
    history.append(float(metrics['loss']))
  assert history[-1] < 0.8 * history[0], history
  assert {'ce_steps', 'ce_global', 'ce_local', 'ce_random_steps', 'ce_random_local'} <= set(
      metrics)
  assert float(metrics['gflops_per_frame']) == pytest.approx(table.action_gflops[0])
  for part in ('backbone_0', 'backbone_1', 'policy', 'classifier'):  # every part learns
    assert any(np.any(a != b) for a, b in zip(jax.tree.leaves(first[part]),
                                              jax.tree.leaves(jax.device_get(state.params[part]))))


# --- Evaluation. ---------------------------------------------------------------------------------

def test_evaluation_is_deterministic_and_predicts_with_the_last_steps_head(tiny):
  model, video, _, variables = tiny
  forward = registry.masked_inference(model, None)  # as the evaluator calls it (the end-to-end
  first = forward(variables, video[:4], rng=jax.random.key(5))  # test's batches of 4)
  second = forward(variables, video[:4], rng=jax.random.key(6))
  for key in ('logits', 'step_logits', 'corners', 'actions', 'decided'):
    np.testing.assert_array_equal(first[key], second[key], err_msg=key)
  np.testing.assert_array_equal(first['logits'], first['step_logits'][:, -1])
  assert first['actions'].shape == (4, T, 1) and bool(first['decided'].all())
  assert 'random_step_logits' not in first


@pytest.mark.parametrize('mode', ['focus', 'uniform'])
def test_cnns_in_chunks_of_frames_give_the_one_call_outputs(tiny, mode):
  model, video, _, variables = tiny
  model = model.clone(mode=mode)
  whole = model.apply(variables, video)
  chunked = model.clone(frames_per_call=5).apply(variables, video)  # 8 x T frames: 5 + ... + 2
  for key in whole:
    np.testing.assert_allclose(chunked[key], whole[key], atol=1e-5, err_msg=key)
  # ... and it really runs the CNNs in chunks: scans over 7 chunks of 5 images each.
  traced = lambda m: str(jax.make_jaxpr(lambda v, x: m.apply(v, x)['logits'])(variables, video))
  assert 'scan' not in traced(model)
  chunked_jaxpr = traced(model.clone(frames_per_call=5))
  assert 'length=7' in chunked_jaxpr and re.search(r'f32\[5,\d+,\d+,3\]', chunked_jaxpr)
  # The evaluation's forward takes the chunk from eval.frames_per_call.
  variant = method.NAME if mode == 'focus' else f'{method.NAME}_uniform'
  config = tiny_adafocus_config(variant=variant)
  config.eval.frames_per_call = 2 * T
  forward = registry.of(config).inference(model, config)
  np.testing.assert_allclose(forward(variables, video)['logits'], whole['logits'], atol=1e-5)
  # Training normalises with the whole batch's statistics: one call, whatever the chunk.
  rngs = {'dropout': jax.random.key(0), 'gumbel': jax.random.key(1)}
  train = lambda m: m.apply(variables, video, train=True, rngs=rngs, mutable=['batch_stats'])
  (out, stats), (out_5, stats_5) = train(model), train(model.clone(frames_per_call=5))
  np.testing.assert_array_equal(out['logits'], out_5['logits'])
  jax.tree.map(np.testing.assert_array_equal, stats, stats_5)


def test_patch_boxes_are_the_pixels_each_frame_was_read_at_in_temporal_order(tiny):
  model, video, _, variables = tiny
  corners = jax.random.uniform(jax.random.key(3), (8, T, 2))  # step order
  out = model.apply(variables, video, corners=corners)
  order = adafocus.coarse_to_fine_order(T)
  for k, frame in enumerate(order):
    top, left = corners[:, k, 0] * (32 - 16), corners[:, k, 1] * (32 - 16)
    np.testing.assert_allclose(out['patch_boxes'][:, frame],
                               np.stack([top, left, top + 16, left + 16], -1), rtol=1e-6)
  # The nearest crops read a slice at the rounded corner: their boxes say so.
  nearest = model.clone(crop_sampling='nearest_smooth').apply(variables, video, corners=corners)
  np.testing.assert_array_equal(nearest['patch_boxes'][:, order, :2],
                                np.floor(np.asarray(corners) * (32 - 16) + 0.5))


def test_the_uniform_baseline_runs_the_local_cnn_alone_on_every_whole_frame(tiny):
  model, video, _, variables = tiny
  uniform = model.clone(mode='uniform')
  assert set(random_variables(uniform, video[:1])['params']) == {'backbone_1'}
  out = uniform.apply(variables, video)
  per_frame = model.apply(variables, video.reshape(-1, 1, 32, 32, 3),
                          method=lambda m, x: m.backbone_1.logits(m.backbone_1(x[:, 0])))
  np.testing.assert_allclose(out['logits'], per_frame.reshape(8, T, -1).mean(1), atol=1e-5)
  np.testing.assert_array_equal(out['patch_boxes'][0, 0], [0, 0, 32, 32])


def test_the_random_patch_baseline_has_no_policy_and_draws_its_patches_from_the_key(tiny):
  model, video, _, variables = tiny
  random_patches = model.clone(mode='random')
  assert 'policy' not in random_variables(random_patches, video[:1])['params']
  forward = registry.masked_inference(random_patches, None)
  first, again = (forward(variables, video, rng=jax.random.key(1)) for _ in range(2))
  other = forward(variables, video, rng=jax.random.key(2))
  np.testing.assert_array_equal(first['corners'], again['corners'])
  assert not np.allclose(first['corners'], other['corners'])
  with_these = model.apply(variables, video, corners=first['corners'])  # the same classifier
  np.testing.assert_allclose(first['logits'], with_these['logits'], atol=1e-5)


# --- GFLOPs. -------------------------------------------------------------------------------------

@pytest.mark.parametrize('global_backbone,resolution,patch,gflops', [
    ('mobilenet_v2', 224, 96, 1.1010), ('mobilenet_v2', 224, 128, 1.6848),
    ('mobilenet_v2', 224, 160, 2.4355), ('mobilenet_v2', 224, 192, 3.3531),
    ('resnet50', 96, 96, 1.5474), ('resnet50', 96, 128, 2.1313), ('resnet50', 96, 160, 2.8820),
])
def test_gflops_per_frame_are_the_authors(global_backbone, resolution, patch, gflops):
  config = defaults.load_config(os.path.join(
      CONFIGS_DIR, f'adafocus_v2.py:patch={patch},global={global_backbone}'))
  assert config.model.global_resolution == resolution
  table = flops.cost_table(config.model)
  assert table.action_names == (f'glance+focus@{patch}',)
  assert table.action_gflops[0] + table.policy_gflops == pytest.approx(gflops, rel=0.02)
  assert table.action_gflops[0] + table.policy_gflops == pytest.approx(gflops, abs=1e-4)


def test_the_parts_of_a_frames_gflops_are_the_papers():
  config = defaults.load_config(os.path.join(CONFIGS_DIR, 'adafocus_v2.py:patch=128'))
  table = flops.cost_table(config.model)
  assert table.policy_cnn_gflops == pytest.approx(0.2995 + 1280 * 200 / 1e9, abs=1e-4)
  assert table.action_gflops[0] == pytest.approx(1.335 + 0.0150, abs=1e-3)  # + classifier
  assert table.lstm_gflops == pytest.approx((1280 * 64 * 49 + 3136 * 2048 + 6 * 2048 ** 2
                                             + 2048 * 2) / 1e9, rel=1e-9)


def test_per_step_patch_sizes_are_actions_with_their_own_costs_and_patches():
  config = tiny_adafocus_model_config(patch_sizes=(16, 8, 16, 8))
  table = flops.cost_table(config)
  assert table.action_names == ('glance+focus@16', 'glance+focus@8')
  assert table.action_gflops[0] > table.action_gflops[1]
  mixed = models.create_model(config)
  video = jax.random.normal(jax.random.key(0), (2, T, 32, 32, 3))
  variables = random_variables(mixed, video)
  corners = jax.random.uniform(jax.random.key(1), (2, T, 2))  # forced: not the policy's
  forward = lambda model: jax.jit(lambda v, x, c: model.apply(v, x, corners=c))(
      variables, video, corners)
  out = forward(mixed)
  np.testing.assert_array_equal(out['actions'][0], [[1, 0], [0, 1], [1, 0], [0, 1]])
  np.testing.assert_array_equal(out['corners'], corners)
  assert not np.allclose(out['policy_corners'], corners)
  # Steps 1 and 3 read 8 x 8 patches: as in a model of 8 x 8 patches only.
  want = forward(mixed.clone(patch_sizes=(8,)))
  np.testing.assert_allclose(out['local_logits'][:, 1::2], want['local_logits'][:, 1::2],
                             atol=1e-5)
  assert not np.allclose(out['local_logits'][:, ::2], want['local_logits'][:, ::2], atol=1e-3)


def test_bad_adafocus_settings_are_refused_before_anything_runs():
  config = tiny_adafocus_config(patch_sizes=(40,))
  with pytest.raises(ValueError, match=r'model.patch_sizes=\(40,\).*frame_resolution=32'):
    defaults.validate(config)
  config = tiny_adafocus_config(global_backbone='efficientnet_b0')
  with pytest.raises(ValueError, match='model.global_backbone'):
    defaults.validate(config)
  config = tiny_adafocus_config(frame_order='random')
  with pytest.raises(ValueError, match='model.frame_order must be one of'):
    defaults.validate(config)


# --- The registry entry, end to end. -------------------------------------------------------------

def test_the_recipe_warms_up_trains_and_compares_with_uniform_and_random_patches(
    tiny_adafocus_recipe):
  config, workdir, rows = tiny_adafocus_recipe
  assert list(rows) == [name for name, _, _ in method.RECIPE_ROWS]
  uniform, random_patches, adafocus_v2 = rows.values()
  assert all(r['num_videos'] == 12 for r in rows.values())
  table = flops.cost_table(config.model)
  assert adafocus_v2['action_usage'] == {'glance+focus@16': 1.0}
  assert adafocus_v2['gflops_per_video'] == pytest.approx(
      T * (table.action_gflops[0] + table.policy_gflops))
  # Random patches: the same networks without the policy; Uniform: the local CNN alone on the
  # whole 32 px frames.
  assert random_patches['gflops_per_video'] == pytest.approx(
      T * (table.action_gflops[0] + table.policy_cnn_gflops))
  assert uniform['action_usage'] == {'local@32': 1.0}
  assert uniform['gflops_per_video'] == pytest.approx(T * flops.backbone_gflops(
      'resnet18', 32, 4, convention='macs', width_multiplier=0.125, depth_multiplier=0.34))
  # The joint stage started from the warm-up's CNNs and initialised the policy afresh.
  warm, _ = ckpt_lib.load_variables(os.path.join(workdir, 'warmup', 'best'))
  assert set(warm['params']) == {'backbone_0', 'backbone_1'}
