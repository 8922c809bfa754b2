"""Sparse inference, on the device and with host-planned buckets: equal to masked compute, no
frame dropped, few compilations, one dispatch per batch on the device, every policy mode."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import random_variables, tiny_model_config

from arnet_jax import models
from arnet_jax.models import buckets, routing

B, T = 2, 8
R50, R34, R18, LITE, SKIP1, SKIP2, SKIP4 = range(7)  # the paper's action space


def paper_model_config(**overrides):
  """The paper's networks at full depth (ResNet-50/34/18, MobileNetV2), quarter width, 64 px."""
  return tiny_model_config(resolutions=(64, 48, 32), policy_resolution=24, depth_multiplier=1.0,
                           width_multiplier=0.25, lstm_hidden=32, num_classes=10, **overrides)


def video_of(seed, size):
  """Frames of different brightness and contrast, so that a policy can tell them apart."""
  k = jax.random.split(jax.random.key(seed), 3)
  return (jax.random.normal(k[0], (B, T, size, size, 3))
          * jax.random.uniform(k[1], (B, T, 1, 1, 1), minval=0.2, maxval=3.0)
          + jax.random.normal(k[2], (B, T, 1, 1, 3)))


class Setup:
  """One model with random variables, its jitted masked forward and a router, for a module."""

  def __init__(self, config, variables=None, router=routing.SparseRouter, **router_kwargs):
    self.model = models.create_model(config)
    self.size = self.model.action_space.top_resolution
    self.video = video_of(0, self.size)
    self.variables = variables or random_variables(self.model, self.video)
    self.masked = jax.jit(lambda v, x, forced, rng: self.model.apply(
        v, x, forced=forced, rngs={'gumbel': rng}))
    self.router = router(self.model, **router_kwargs)

  def centre_policy(self):
    """Centres the random action head on this video's frames: the argmax then follows how the
    frames differ, and the policy's own decisions vary. Returns self."""
    head = self.variables['params']['policy']['action_head']
    logits = self.router.decide(self.variables, self.video)['action_logits']
    head['bias'] = head['bias'] - logits.mean((0, 1))
    return self

  def compare(self, forced=None, rng=jax.random.key(3), video=None, valid=None):
    """Runs both paths; asserts equal decisions and video logits within 1e-4; returns both."""
    video = self.video if video is None else video
    sparse = self.router(self.variables, video, forced=forced, rng=rng, valid=valid)
    masked = self.masked(self.variables, video, forced, rng)
    np.testing.assert_array_equal(sparse['actions'], masked['actions'])
    np.testing.assert_array_equal(sparse['decided'], masked['decided'])
    real = slice(None) if valid is None else np.asarray(valid)
    assert float(jnp.abs(sparse['logits'] - masked['logits'])[real].max()) <= 1e-4
    np.testing.assert_allclose(sparse['frame_logits'][real], masked['frame_logits'][real],
                               atol=1e-4)
    np.testing.assert_array_equal(sparse['processed'][real], masked['processed'][real])
    return sparse, masked


@pytest.fixture(scope='module')
def paper():
  # Buckets of 8 frames only (a count is rounded up to 8, more overflow into further buckets):
  # each of the paper's backbones compiles once (~3 s each here). The policy CNN runs in chunks
  # of 5 frames (the last one padded): the decisions must not change.
  return Setup(paper_model_config(), capacities=(8,), policy_chunk=5)


def tiny_model(**overrides):
  """Three thin ResNet-18s and a MobileNetV2 policy: the paper's action space, fast to compile."""
  return tiny_model_config(backbones=('resnet18',) * 3, **overrides)


@pytest.fixture(scope='module')
def tiny():
  """One bucket of all B * T frames per backbone."""
  return Setup(tiny_model(), capacities=(B * T,)).centre_policy()


@pytest.fixture
def stats(paper):
  paper.router.stats.reset()
  return paper.router.stats


def pattern(name: str) -> jnp.ndarray:
  return {
      'all_skipped': jnp.full((B, T), SKIP1),
      'all_resnet50': jnp.full((B, T), R50),
      'all_resnet34': jnp.full((B, T), R34),
      'all_policy_head': jnp.full((B, T), LITE),
      # 7 frames to ResNet-50, 2 to the policy head, 7 skipped (a skip covers the next frames
      # whatever their forced action); the ResNet-34 and ResNet-18 buckets are empty.
      'empty_buckets': jnp.array([[R50, SKIP2, R50, R50, R50, SKIP1, R50, LITE],
                                  [LITE, R50, R50, SKIP4, R50, R50, R50, R50]]),
      'random': jax.random.randint(jax.random.key(5), (B, T), 0, 7),
  }[name].astype(jnp.int32)


# --- The paper's architecture: sparse equals masked compute. -----------------------------------

@pytest.mark.parametrize('name', ['random', 'all_resnet34', 'empty_buckets'])
def test_sparse_equals_masked_compute_on_forced_patterns(paper, name):
  _, masked = paper.compare(pattern(name))
  assert float(jnp.abs(masked['logits']).max()) > 0.1  # 1e-4 is a meaningful tolerance




def test_skipped_frames_and_the_policy_head_cost_no_backbone_work(paper, stats):
  sparse, _ = paper.compare(pattern('all_skipped'))
  np.testing.assert_array_equal(sparse['logits'], 0.0)
  paper.compare(pattern('all_policy_head'))
  assert stats.routed == [0, 0, 0] and stats.padded == [0, 0, 0]
  assert stats.capacities == [set(), set(), set()]


def test_each_backbone_classifies_exactly_its_routed_frames(paper, stats):
  paper.compare(pattern('empty_buckets'))
  assert stats.routed == [7, 0, 0]
  assert stats.padded == [1, 0, 0]  # 7 frames in a bucket of 8
  assert stats.capacities == [{8}, set(), set()]
  assert stats.padding_waste == pytest.approx(1 / 8)


def test_padded_videos_are_not_classified(paper, stats):
  valid = np.array([True, False])
  sparse, _ = paper.compare(pattern('all_resnet50'), valid=valid)
  assert stats.routed == [T, 0, 0]
  np.testing.assert_array_equal(sparse['logits'][1], 0.0)


# --- Bucket capacities. -------------------------------------------------------------------------

def test_pow2_capacities_end_at_the_largest_bucket():
  assert buckets.pow2_capacities(16) == (1, 2, 4, 8, 16)
  assert buckets.pow2_capacities(48) == (1, 2, 4, 8, 16, 32, 48)
  assert buckets.pow2_capacities(1) == (1,)


@pytest.mark.parametrize('count, plan', [(0, ()), (1, (1,)), (3, (4,)), (8, (8,)),
                                         (19, (8, 8, 4)), (24, (8, 8, 8))])
def test_bucket_plan_overflows_into_more_buckets_and_never_drops_a_frame(count, plan):
  assert buckets.bucket_plan(count, (1, 2, 4, 8), 8) == plan


@pytest.mark.parametrize('count, plan', [(0, ()), (3, (2, 1)), (8, (8,)), (13, (8, 4, 1)),
                                         (19, (8, 8, 2, 1))])
def test_split_bucket_plan_takes_the_binary_digits_of_the_count(count, plan):
  assert buckets.bucket_plan(count, (1, 2, 4, 8), 8, split=True) == plan


def test_exact_bucket_plan_has_no_padding():
  assert buckets.bucket_plan(19, None, 8) == (8, 8, 3)
  assert buckets.bucket_plan(5, None, 64) == (5,)


def test_bucket_indices_pad_with_an_out_of_range_frame():
  routed = np.zeros(10, bool)
  routed[[1, 4, 5, 9]] = True
  first, second = buckets.bucket_indices(routed, (2, 4))
  np.testing.assert_array_equal(first, [1, 4])
  np.testing.assert_array_equal(second, [5, 9, 10, 10])
  with pytest.raises(ValueError, match='do not fit'):
    buckets.bucket_indices(routed, (2,))


def test_frames_beyond_the_largest_bucket_overflow_and_none_is_dropped(paper, stats):
  paper.compare(pattern('all_resnet50'))
  assert stats.routed == [B * T, 0, 0] and stats.padded == [0, 0, 0]
  assert stats.capacities == [{8}, set(), set()]  # 16 frames in two buckets of chunk_size=8


# --- Every policy mode; the models without routing. ---------------------------------------------

def test_sparse_equals_masked_compute_with_the_policys_own_decisions(tiny):
  sparse, _ = tiny.compare(video=video_of(1, tiny.size))
  assert len(np.unique(np.asarray(sparse['actions']).argmax(-1))) > 2


@pytest.mark.parametrize('variant', ['random', 'multiscale', 'uniform'])
def test_every_policy_mode_equals_masked_compute(tiny, variant):
  variables = (routing.module_variables(tiny.variables, 'backbone_0') if variant == 'uniform'
               else tiny.variables)  # Multi-Scale: AR-Net's parameters, skips never taken
  setup = Setup(tiny_model(variant=variant), variables, capacities=(B * T,))
  sparse, masked = setup.compare()
  if variant == 'random':
    assert len(np.unique(np.asarray(sparse['actions']).argmax(-1))) > 1
    assert 'resolution_logits' not in sparse  # most of it was never computed
  else:  # every frame through every resolution action: each one's logits are all there
    np.testing.assert_allclose(sparse['resolution_logits'], masked['resolution_logits'],
                               atol=1e-4)
  if variant == 'multiscale':  # every frame through every backbone and the policy head
    np.testing.assert_array_equal(sparse['processed'], 4.0)
    assert setup.router.stats.routed == [B * T] * 3
  if variant == 'uniform':
    assert setup.router.stats.routed == [B * T]


def test_a_full_evaluation_compiles_each_program_once(tiny):
  router = routing.SparseRouter(tiny.model, chunk_size=2)  # buckets of 2, then 1 frame
  videos = [video_of(100 + seed, tiny.size) for seed in range(4)]  # the policy decides
  for video in videos:
    router(tiny.variables, video)
  stats = router.stats
  assert all(used <= {1, 2} for used in stats.capacities)
  assert sum(len(used) for used in stats.capacities) >= 3  # the backbones had work
  assert stats.padded == [0, 0, 0]  # binary digits of each count: no padding
  # decide and combine for the one batch shape, a bucket per (backbone, capacity) used.
  assert stats.compilations == 2 + sum(len(used) for used in stats.capacities)
  assert stats.traces == stats.compilations  # however many batches came
  stats.reset()
  for video in videos:
    router(tiny.variables, video)
  assert stats.batches == 4 and stats.traces == 0  # all compiled already
  assert stats.compilations == 2 + sum(len(used) for used in stats.capacities)


def test_random_policy_needs_a_key():
  model = models.create_model(tiny_model_config(variant='random'))
  with pytest.raises(ValueError, match='rng=jax.random.key'):
    routing.SparseRouter(model)({}, jnp.zeros((B, T, 32, 32, 3)))


def test_inference_fn_routes_arnet_and_runs_other_models_directly(tiny):
  assert isinstance(routing.inference_fn(tiny.model, dispatch='host'), routing.SparseRouter)
  assert not isinstance(routing.inference_fn(tiny.model, routing='masked', dispatch='host'),
                        routing.SparseRouter)
  model = models.create_model(tiny_model_config(variant='lstm', backbones=('resnet18',)))
  variables = random_variables(model, tiny.video)
  out = routing.inference_fn(model)(variables, tiny.video)
  np.testing.assert_allclose(out['logits'], out['frame_logits'].mean(1), rtol=1e-6)


# --- Errors name the fix. -----------------------------------------------------------------------

def test_bad_input_errors_name_the_fix(tiny):
  model = models.create_model(tiny_model_config(variant='lstm'))
  with pytest.raises(TypeError, match='model.apply'):
    routing.SparseRouter(model)
  with pytest.raises(ValueError, match=r'video\[None\]'):
    tiny.router(tiny.variables, tiny.video[0])
  with pytest.raises(ValueError, match='drop `forced`'):
    uniform = models.create_model(tiny_model_config(variant='uniform'))
    routing.SparseRouter(uniform)({}, tiny.video, forced=pattern('random'))
  with pytest.raises(ValueError, match='capacities'):
    routing.SparseRouter(tiny.model, capacities='fixed')
  with pytest.raises(ValueError, match='not both'):
    routing.SparseRouter(tiny.model, capacities=(4, 8), chunk_size=8)
  with pytest.raises(ValueError, match='policy_chunk must be >= 1'):
    routing.SparseRouter(tiny.model, policy_chunk=0)
  with pytest.raises(ValueError, match='routing'):
    routing.inference_fn(tiny.model, routing='dense')
