"""The AR-Net router: masked compute, gradients, determinism, baselines as configurations."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import tiny_model_config

from arnet_jax import models
from arnet_jax.methods import arnet as arnet_method
from arnet_jax.models import ARNet

B, T, S = 2, 8, 32  # videos, frames, top resolution of the tiny config
VIDEO = jax.random.normal(jax.random.key(0), (B, T, S, S, 3))
RNGS = {'params': jax.random.key(0), 'gumbel': jax.random.key(1), 'dropout': jax.random.key(2)}


def build(variant='arnet', **overrides):
  model = models.create_model(tiny_model_config(variant=variant, **overrides))
  return model, jax.jit(model.init)(RNGS, VIDEO)


@functools.cache
def jitted(model, **kwargs):
  """`model.apply(variables, *args, **kwargs)` compiled once per (model, kwargs)."""
  return jax.jit(lambda variables, *args, **call_kwargs: model.apply(variables, *args, **kwargs,
                                                                     **call_kwargs))


@pytest.fixture(scope='module')
def tiny():
  return build()


def reference_video_logits(model, variables, video, forced):
  """Frame by frame: follow the skips, take only the chosen action's logits, average them."""
  space = model.action_space
  frames = video.reshape(-1, *video.shape[2:])
  per_backbone = [
      jitted(model, method=lambda m, x, i=i: m.backbone[i](x))(
          variables, models.resize(frames, r)).reshape(*video.shape[:2], -1)
      for i, r in enumerate(space.resolutions)]
  lite = jitted(model, method=ARNet.decide)(variables, video, forced=forced)['lite_logits']
  expected = []
  for b in range(video.shape[0]):
    total, count, remaining = jnp.zeros(model.num_classes), 0, 0
    for t in range(video.shape[1]):
      if remaining:
        remaining -= 1
        continue
      a = int(forced[b, t])
      if a >= space.num_resolution_actions:
        remaining = space.skip_lengths[a] - 1
      else:
        total += per_backbone[a][b, t] if a < len(space.backbones) else lite[b, t]
        count += 1
    expected.append(total / max(count, 1))
  return jnp.stack(expected)


@pytest.mark.parametrize('pattern', ['random', 'all_skipped', 'one_backbone', 'policy_head'])
def test_masked_output_equals_direct_per_frame_computation(tiny, pattern):
  model, variables = tiny
  a = model.action_space.num_actions
  forced = {
      'random': jax.random.randint(jax.random.key(5), (B, T), 0, a),
      'all_skipped': jnp.full((B, T), a - 1, jnp.int32),
      'one_backbone': jnp.ones((B, T), jnp.int32),
      'policy_head': jnp.full((B, T), 3, jnp.int32),
  }[pattern]
  out = jitted(model)(variables, VIDEO, forced=forced)
  np.testing.assert_allclose(out['logits'], reference_video_logits(model, variables, VIDEO, forced),
                             rtol=1e-5, atol=1e-5)
  if pattern == 'all_skipped':
    np.testing.assert_array_equal(out['logits'], 0.0)


def test_a_video_with_no_processed_frame_falls_back_to_the_policy_head_when_asked(tiny):
  model, variables = tiny
  fallback, same_variables = build(no_frame_fallback='policy_head')
  jax.tree.map(np.testing.assert_array_equal, same_variables, variables)
  skip4 = model.action_space.num_actions - 1
  forced = jnp.full((B, T), skip4, jnp.int32).at[0].set(0)  # video 0 read, video 1 all skipped
  plain, out = jitted(model)(variables, VIDEO, forced=forced), jitted(fallback)(
      variables, VIDEO, forced=forced)
  lite = jitted(model, method=ARNet.decide)(variables, VIDEO, forced=forced)['lite_logits']
  np.testing.assert_array_equal(plain['logits'][1], 0.0)  # the authors': predicted from nothing
  np.testing.assert_array_equal(out['logits'][0], plain['logits'][0])
  np.testing.assert_allclose(out['logits'][1], lite[1, T - 1], rtol=1e-6)
  np.testing.assert_array_equal(lite[1, T - 1], lite[1, T - 4])  # its state after the last decision


def test_gradients_reach_the_policy_through_the_gumbel_sample():
  model, variables = build(backbones=('resnet18',), resolutions=(32,))  # smaller to compile
  labels = jnp.array([1, 3])

  def loss(params):
    out, _ = model.apply({**variables, 'params': params}, VIDEO, train=True, tau=5.0,
                         rngs={'gumbel': jax.random.key(7), 'dropout': jax.random.key(8)},
                         mutable=['batch_stats'])
    return optax.softmax_cross_entropy_with_integer_labels(out['logits'], labels).mean()

  grads = jax.jit(jax.grad(loss))(variables['params'])['policy']
  for name in ('action_head', 'lstm_ih', 'lstm_hh', 'features'):
    assert optax.tree.norm(grads[name]) > 0, name


def test_evaluation_decisions_do_not_depend_on_the_rng_seed(tiny):
  model, variables = tiny
  run = jax.jit(lambda v, k: model.apply(v, VIDEO, rngs={'gumbel': k}))
  outs = [run(variables, jax.random.key(seed)) for seed in (0, 1)]
  np.testing.assert_array_equal(outs[0]['actions'], outs[1]['actions'])
  np.testing.assert_array_equal(outs[0]['logits'], outs[1]['logits'])


def test_training_decisions_are_sampled(tiny):
  model, variables = tiny
  run = jax.jit(lambda v, k: model.apply(v, VIDEO, train=True, rngs={'gumbel': k, 'dropout': k},
                                         mutable=['batch_stats'])[0]['actions'])
  assert not np.array_equal(run(variables, jax.random.key(0)), run(variables, jax.random.key(1)))


def test_jitted_forward_compiles_once_for_batches_of_one_shape(tiny):
  model, variables = tiny
  traces = []

  @jax.jit
  def forward(variables, video):
    traces.append(1)
    return model.apply(variables, video)['logits']

  for seed in range(3):
    forward(variables, jax.random.normal(jax.random.key(seed), (B, T, S, S, 3)))
  assert len(traces) == 1


def test_frozen_policy_keeps_its_batch_norm_statistics(tiny):
  model, variables = tiny
  _, updated = jax.jit(lambda v: model.apply(
      v, VIDEO, train=True, policy_train=False, mutable=['batch_stats'],
      rngs={'gumbel': jax.random.key(0), 'dropout': jax.random.key(0)}))(variables)
  before, after = variables['batch_stats'], updated['batch_stats']
  jax.tree.map(np.testing.assert_array_equal, before['policy'], after['policy'])
  assert not np.allclose(before['backbone_0']['features']['bn1']['mean'],
                         after['backbone_0']['features']['bn1']['mean'])


def test_resize_picks_torch_nearest_source_pixels():
  x = jnp.arange(224.0)[None, :, None, None] * jnp.ones((1, 224, 224, 1))
  rows = models.resize(x, 168)[0, :, 0, 0]
  np.testing.assert_array_equal(rows, np.floor(np.arange(168) * 224 / 168))


# --- Baselines and action spaces are configurations of the same code. ---------------------------

def test_uniform_runs_the_first_backbone_on_every_frame():
  model, variables = build('uniform')
  assert model.action_space.names == ('resnet50@32',)
  assert 'policy' not in variables['params']
  out = jitted(model)(variables, VIDEO)
  per_frame = jitted(model, method=lambda m, x: m.backbone[0](x))(
      variables, VIDEO.reshape(B * T, S, S, 3))
  np.testing.assert_allclose(out['logits'], per_frame.reshape(B, T, -1).mean(1), rtol=1e-5,
                             atol=1e-6)


def test_multiscale_equals_the_mean_of_single_action_runs(tiny):
  arnet, variables = tiny
  multi = models.create_model(tiny_model_config(variant='multiscale'))
  out = jitted(multi)(variables, VIDEO)  # the same parameters as AR-Net
  np.testing.assert_array_equal(out['processed'], 4.0)  # 3 backbones + the policy head
  np.testing.assert_array_equal(out['actions'][..., 4:], 0.0)  # skips are never taken
  forward = jitted(arnet)
  singles = [forward(variables, VIDEO, forced=jnp.full((B, T), a, jnp.int32))['logits']
             for a in range(4)]
  np.testing.assert_allclose(out['logits'], jnp.mean(jnp.stack(singles), 0), rtol=1e-5, atol=1e-6)


def test_random_policy_is_uniform_and_seeded_even_at_evaluation():
  model, variables = build('random')
  run = jax.jit(lambda v, k: model.apply(v, VIDEO, rngs={'gumbel': k}))
  first, again, other = (run(variables, jax.random.key(s)) for s in (3, 3, 4))
  np.testing.assert_array_equal(first['actions'], again['actions'])
  assert not np.array_equal(first['actions'], other['actions'])
  np.testing.assert_array_equal(first['action_logits'], 0.0)


def test_resolution_only_never_skips_and_skip_only_has_one_backbone():
  space = arnet_method.action_space(tiny_model_config(variant='resolution_only'))
  assert space.names == ('resnet50@32', 'resnet34@24', 'resnet18@16', 'policy@16')
  space = arnet_method.action_space(tiny_model_config(variant='skip_only'))
  assert space.names == ('resnet50@32', 'skip1', 'skip2', 'skip4')


def test_an_action_space_without_backbones_classifies_with_the_policy_head():
  model, variables = build('arnet', backbones=(), resolutions=())
  assert model.action_space.names == ('policy@16', 'skip1', 'skip2', 'skip4')
  out = jitted(model)(variables, VIDEO)
  decided_and_classified = out['decided'] & (out['actions'].argmax(-1) == 0)
  np.testing.assert_array_equal(out['processed'], decided_and_classified)


def test_lstm_baseline_averages_per_frame_predictions_of_an_lstm():
  model, variables = build('lstm')
  out = jitted(model)(variables, VIDEO)
  assert set(variables['params']) == {'backbone', 'lstm_ih', 'lstm_hh', 'head'}
  np.testing.assert_allclose(out['logits'], out['frame_logits'].mean(1), rtol=1e-6)


def test_action_space_errors_name_the_fix():
  with pytest.raises(ValueError, match='one resolution per backbone'):
    models.create_model(tiny_model_config(resolutions=(32, 24)))
  with pytest.raises(ValueError, match='variant'):
    models.create_model(tiny_model_config(variant='adaptive'))
  with pytest.raises(ValueError, match='no way to classify'):
    models.create_model(tiny_model_config(backbones=(), resolutions=(), policy_action=False))
