"""AdaFocusV2's exit program: with no early exit it is the model's evaluation forward; a video
stops after the first group whose running prediction reaches the threshold, as the rule on the
full forward's step logits says; stopped and invalid videos cost no CNN rows; new thresholds
reuse the compiled program."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import random_variables
from conftest import tiny_adafocus_model_config

from arnet_jax import models
from arnet_jax.models import adafocus_v2 as adafocus
from arnet_jax.models import exit_adafocus_v2 as exit_program
from arnet_jax.models import exits

B, T = 3, 5  # coarse to fine: steps read frames 2, 0, 4, 1, 3
ORDER = adafocus.coarse_to_fine_order(T)
KEY = jax.random.key(7)  # the random-patch mode's corners


@functools.cache
def tiny():
  """A tiny model (ResNet-18s, 32 px frames, 16 px patches, a 24 px glance), a batch whose
  videos differ in brightness, random variables."""
  model = models.create_model(tiny_adafocus_model_config())
  video = jax.random.normal(jax.random.key(0), (B, T, 32, 32, 3)) + jnp.arange(B)[
      :, None, None, None, None]
  return model, video, random_variables(model, video[:1])


@functools.cache
def full_forward(mode):
  """The model's own evaluation forward (`model.apply`), once per mode."""
  model, video, variables = tiny()
  m = model.clone(mode=mode)
  return jax.device_get(jax.jit(lambda v, x: m.apply(v, x, rngs={'gumbel': KEY}))(
      variables, video))


@functools.cache
def program(mode, group):
  """One exit program per (mode, group), shared by the tests (one compilation each)."""
  return exit_program.exit_inference_fn(tiny()[0].clone(mode=mode), group=group,
                                        confidence='max_logit')


def run(mode, group, thresholds, valid=None):
  _, video, variables = tiny()
  out = program(mode, group)(variables, video, jnp.asarray(thresholds, jnp.float32), rng=KEY,
                             valid=valid)
  return jax.device_get(out)


def no_early_exit(group):
  k = exits.num_exit_points(T, group)
  return np.r_[np.full(k - 1, np.inf), -np.inf]


def running_logits(mode):
  """`[B, T, C]` the running prediction after each step, from the full forward."""
  full = full_forward(mode)
  if mode == 'uniform':  # the mean of the local head over the frames read, in step order
    local = full['local_logits'][:, list(ORDER)]
    return np.cumsum(local, axis=1) / np.arange(1, T + 1)[None, :, None]
  return full['step_logits']


def assert_ran(out, exit_step):
  """The outputs of steps not run are zero / False, those of steps run are the model's."""
  ran = np.arange(T)[None] < np.asarray(exit_step)[:, None]
  np.testing.assert_array_equal(out['exit_step'], exit_step)
  np.testing.assert_array_equal(out['decided'], ran)
  np.testing.assert_array_equal(out['actions'][..., 0], ran.astype(np.float32))
  if 'corners' in out:
    assert np.all(out['corners'][~ran] == 0)


# --- No early exit: the model's forward. ---------------------------------------------------------

@pytest.mark.parametrize('mode,group', [('focus', 1), ('focus', 2), ('random', 2),
                                        ('uniform', 2)])
def test_without_early_exit_the_program_is_the_models_evaluation_forward(mode, group):
  out, full = run(mode, group, no_early_exit(group)), full_forward(mode)
  scale = np.abs(full['logits']).max()
  np.testing.assert_allclose(out['logits'], full['logits'], atol=1e-5 * scale, rtol=0)
  np.testing.assert_array_equal(out['actions'], full['actions'])
  np.testing.assert_array_equal(out['decided'], full['decided'])
  assert_ran(out, [T] * B)
  if mode != 'uniform':
    np.testing.assert_allclose(out['corners'], full['corners'], atol=1e-6)
  assert out['rows'] == dict(glance=0 if mode == 'uniform' else B * T, local=B * T)


# --- Early exit. ---------------------------------------------------------------------------------

@pytest.mark.parametrize('mode,group', [('focus', 2), ('random', 2), ('uniform', 2)])
def test_thresholds_of_minus_infinity_stop_every_video_after_its_first_group(mode, group):
  out = run(mode, group, np.full(exits.num_exit_points(T, group), -np.inf))
  assert_ran(out, [group] * B)
  np.testing.assert_allclose(out['logits'], running_logits(mode)[:, group - 1], atol=1e-5)
  assert out['rows'] == dict(glance=0 if mode == 'uniform' else B * group, local=B * group)
  if mode == 'focus':  # the first group's corners are the policy's, as in the full forward
    np.testing.assert_allclose(out['corners'][:, :group], full_forward(mode)['corners'][:, :group],
                               atol=1e-6)


def thresholds_for_varied_exits(group):
  """Thresholds between the full forward's confidences (far from any: float rounding cannot
  flip a comparison) that stop the most confident running video at each exit point."""
  last_steps = [min((j + 1) * group, T) - 1 for j in range(exits.num_exit_points(T, group))]
  conf = running_logits('focus')[:, last_steps].max(-1)  # [B, K]
  thresholds = []
  for j in range(len(last_steps)):
    c = np.sort(conf[:, j])
    thresholds.append((c[-1] + c[-2]) / 2)
  assert np.abs(conf - np.asarray(thresholds)[None]).min() > 1e-3  # a robust test
  return np.asarray(thresholds, np.float32), conf, last_steps


@pytest.mark.parametrize('group', [1, 2])
def test_videos_exit_at_the_first_group_whose_confidence_reaches_its_threshold(group):
  thresholds, conf, last_steps = thresholds_for_varied_exits(group)
  reached = conf >= thresholds[None]
  reached[:, -1] = True  # after the last group every video stops
  exit_group = reached.argmax(axis=1)  # the rule, on the full forward's step logits
  exit_step = np.asarray(last_steps)[exit_group] + 1
  assert len(set(exit_step)) > 1  # the thresholds do separate the videos
  out = run('focus', group, thresholds)
  assert_ran(out, exit_step)
  np.testing.assert_allclose(out['logits'], running_logits('focus')[np.arange(B), exit_step - 1],
                             atol=1e-5)
  # Each CNN computed the frames of the groups that ran, nothing more.
  assert out['rows'] == dict(glance=int(exit_step.sum()), local=int(exit_step.sum()))


def test_invalid_videos_compute_nothing():
  valid = jnp.asarray([True, False, True])
  out = run('focus', 2, no_early_exit(2), valid=valid)
  assert_ran(out, [T, 0, T])
  np.testing.assert_array_equal(out['logits'][1], 0)
  np.testing.assert_allclose(out['logits'][::2], full_forward('focus')['logits'][::2], atol=1e-5)
  assert out['rows'] == dict(glance=2 * T, local=2 * T)


def test_new_thresholds_reuse_the_compiled_program():
  for thresholds in (no_early_exit(2), [-np.inf] * 3, [0.1, 0.5, 2.0]):
    run('focus', 2, thresholds)
  assert program('focus', 2).traces == 1


# --- Settings. -----------------------------------------------------------------------------------

def test_per_step_patch_sides_each_run_their_own_local_cnn():
  model, video, variables = tiny()  # the sides change no parameter's shape
  mixed = model.clone(patch_sizes=(16, 8, 16, 8, 8))
  fn = exit_program.exit_inference_fn(mixed, group=1, confidence='max_prob')
  out = jax.device_get(fn(variables, video[:1], no_early_exit(1)))  # 1 row: 1 bucket a CNN
  full = jax.jit(mixed.apply)(variables, video[:1])
  np.testing.assert_allclose(out['logits'], full['logits'], atol=1e-5)
  np.testing.assert_allclose(out['corners'], full['corners'], atol=1e-6)
  np.testing.assert_array_equal(out['actions'], full['actions'])  # one-hot of each step's side
  assert out['rows'] == dict(glance=T, local=T)


def test_bad_settings_are_refused_before_anything_runs():
  model, video, variables = tiny()
  with pytest.raises(ValueError, match='modes'):
    exit_program.exit_inference_fn(model.clone(mode='warmup'), group=1, confidence='max_logit')
  with pytest.raises(ValueError, match='confidence'):
    exit_program.exit_inference_fn(model, group=1, confidence='entropy')
  with pytest.raises(ValueError, match='group'):
    exit_program.exit_inference_fn(model, group=0, confidence='max_logit')
  with pytest.raises(ValueError, match=r'thresholds must be \[K\] = \[3\]'):
    program('focus', 2)(variables, video, jnp.zeros(5))
  with pytest.raises(ValueError, match='rng'):
    program('random', 2)(variables, video, jnp.zeros(3))
