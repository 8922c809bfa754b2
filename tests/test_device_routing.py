"""Routing as one device program (`eval.dispatch='device'`): equal to masked compute for every
policy mode and every count of frames, one dispatch and no host copy per batch, one compilation
per batch shape."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_routing import B, R34, R50, SKIP1, T, Setup, pattern, tiny_model, video_of

from arnet_jax.models import buckets, routing

N = B * T
PLANS = ('grid', 'binary')
ALL = np.ones(B, bool)  # every call passes `valid`, so the tests share compiled programs


def compare(setup, forced=None, valid=ALL, **kwargs):
  """`Setup.compare` (equal decisions, logits within 1e-4), then video logits within 1e-5."""
  sparse, masked = setup.compare(forced, valid=valid, **kwargs)
  real = np.asarray(valid)
  assert float(jnp.abs(sparse['logits'] - masked['logits'])[real].max()) <= 1e-5
  return sparse, masked


@pytest.fixture(scope='module', params=PLANS)
def device(request):
  """The tiny AR-Net with a device router; the policy's own decisions vary on its video."""
  return Setup(tiny_model(), router=routing.DeviceRouter, plan=request.param,
               grid_steps=4).centre_policy()


@pytest.fixture
def stats(device):
  device.router.stats.reset()
  return device.router.stats


def first_frames_to(count: int, action: int, rest: int = R34) -> jnp.ndarray:
  """`[B, T]` forced actions: the first `count` of the N frames take `action`, the others `rest`."""
  return jnp.where(jnp.arange(N) < count, action, rest).reshape(B, T).astype(jnp.int32)


# --- Equal to masked compute. --------------------------------------------------------------------

def test_the_policys_own_decisions_give_masked_compute(device):
  sparse, _ = compare(device, video=video_of(1, device.size))
  assert len(np.unique(np.asarray(sparse['actions']).argmax(-1))) > 2


@pytest.mark.parametrize('name', ['random', 'all_resnet50', 'all_skipped', 'all_policy_head',
                                  'empty_buckets'])
def test_forced_patterns_give_masked_compute(device, name):
  compare(device, pattern(name))


def test_every_count_of_frames_from_zero_to_all_is_classified(device, stats):
  for count in range(N + 1):
    compare(device, first_frames_to(count, R50))
  assert stats.routed[0] == sum(range(N + 1))


def test_padding_videos_are_not_classified(device, stats):
  sparse, _ = compare(device, pattern('all_resnet50'), valid=np.array([True, False]))
  assert stats.routed == [T, 0, 0]
  np.testing.assert_array_equal(sparse['logits'][1], 0.0)


@pytest.mark.parametrize('variant, plan', [('random', 'grid'), ('multiscale', 'binary'),
                                           ('uniform', 'grid'), ('uniform', 'binary')])
def test_every_policy_mode_gives_masked_compute(variant, plan):
  """The Random baseline, Multi-Scale ('all') and Uniform ('none'); the learned policy above."""
  setup = Setup(tiny_model(variant=variant), router=routing.DeviceRouter, plan=plan,
                grid_steps=4)
  sparse, masked = compare(setup)
  if variant != 'random':  # every frame through every resolution action
    np.testing.assert_allclose(sparse['resolution_logits'], masked['resolution_logits'],
                               atol=1e-4)
  routed = int((np.asarray(sparse['actions'])[..., 0] > 0).sum())  # frames to backbone 0
  assert setup.router.stats.routed[0] == routed
  assert (0 < routed < N) if variant == 'random' else routed == N


# --- One program, one dispatch, no host round trip. ----------------------------------------------

def test_a_batch_is_one_dispatch_with_no_copy_to_the_host(device, stats):
  variables, video, forced, valid = jax.device_put(
      (device.variables, device.video, pattern('random'), ALL))
  rng = jax.random.key(3)
  with jax.transfer_guard('disallow'), jax.transfer_guard_device_to_host('disallow_explicit'):
    jax.block_until_ready(device.router(variables, video, forced=forced, rng=rng, valid=valid))
  assert stats.batches == 1 and stats.dispatches == 1 and stats.syncs == 0


def test_one_program_is_compiled_per_batch_shape_whatever_the_counts(device, stats):
  for count in (0, 3, N):
    compare(device, first_frames_to(count, R50))
  compare(device)  # the policy's own decisions
  assert stats.compilations == 2  # forced and policy-decided calls are two programs
  assert stats.batches == 4 and stats.dispatches == 4 and stats.syncs == 0


def test_the_grid_pads_to_its_next_capacity_and_binary_digits_pad_nothing(device, stats):
  compare(device, first_frames_to(5, R50, rest=SKIP1))  # 5 frames to ResNet-50, the rest skipped
  if device.router.plan == 'grid':  # capacities N/4, N/2, 3N/4, N = 4, 8, 12, 16
    assert stats.capacities[0] == {8} and stats.padded[0] == 3
  else:
    assert stats.capacities[0] == {4, 1} and stats.padded[0] == 0


# --- The plans. ----------------------------------------------------------------------------------

def test_grid_capacities_are_evenly_spaced_and_end_at_n():
  assert buckets.grid_capacities(128, 8) == (16, 32, 48, 64, 80, 96, 112, 128)
  assert buckets.grid_capacities(10, 4) == (3, 5, 8, 10)
  assert buckets.grid_capacities(3, 8) == (1, 2, 3)


def test_a_grid_that_cannot_hold_every_frame_is_refused():
  with pytest.raises(ValueError, match='must end at N'):
    buckets.classify_on_grid(lambda bucket, x: x, jnp.ones(8, bool), jnp.zeros((8, 1, 1)), (4,))


def test_bad_plans_name_the_choices(device):
  with pytest.raises(ValueError, match="plan must be one of \\('grid', 'binary'\\)"):
    routing.DeviceRouter(device.model, plan='pow2')
  with pytest.raises(ValueError, match='dispatch must be one of'):
    routing.inference_fn(device.model, dispatch='cpu')
  assert isinstance(routing.inference_fn(device.model), routing.DeviceRouter)
  assert isinstance(routing.inference_fn(device.model, dispatch='host'), routing.SparseRouter)
