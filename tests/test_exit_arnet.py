"""AR-Net's exit program: without early exit it is the evaluation forward; with thresholds a video
stops at the first group whose running prediction is confident enough, and its later frames cost
no CNN work; skips cross groups; padding videos compute nothing; thresholds do not recompile."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import random_variables, tiny_model_config

from arnet_jax import models
from arnet_jax.models import exit_arnet, routing

B, T = 3, 5
R32, R16, LITE, SKIP1, SKIP2, SKIP4 = range(6)  # two backbones, the policy head, three skips
NAMES = ('resnet18@32', 'resnet18@16')


def model_config(**overrides):
  """Two thin ResNet-18s and a ResNet-18 policy (quicker to compile than a MobileNetV2)."""
  return tiny_model_config(backbones=('resnet18',) * 2, resolutions=(32, 16),
                           policy_backbone='resnet18', **overrides)


def video_of(seed, size):
  """Frames of different brightness and contrast, so that the policy's decisions vary."""
  k = jax.random.split(jax.random.key(seed), 3)
  return (jax.random.normal(k[0], (B, T, size, size, 3))
          * jax.random.uniform(k[1], (B, T, 1, 1, 1), minval=0.2, maxval=3.0)
          + jax.random.normal(k[2], (B, T, 1, 1, 3)))


class Setup:
  """A model, its variables, its evaluation forward and its exit programs (one per group)."""

  def __init__(self, variant='arnet', variables=None):
    self.model = models.create_model(model_config(variant=variant))
    self.video = video_of(0, self.model.action_space.top_resolution)
    self.variables = variables or random_variables(self.model, self.video)
    self.rng = jax.random.key(3) if self.model.needs_rng else None
    self._forward = jax.jit(lambda v, x, rng: self.model.apply(
        v, x, rngs=None if rng is None else {'gumbel': rng}))
    self._programs = {}

  def forward(self, variables=None):
    return self._forward(variables or self.variables, self.video, self.rng)

  def program(self, group):
    if group not in self._programs:
      self._programs[group] = exit_arnet.exit_inference_fn(self.model, group=group,
                                                           confidence='max_logit')
    return self._programs[group]

  def run(self, group, thresholds, variables=None, valid=np.ones(B, bool)):
    """The exit program's outputs. `valid` is always given, so that the padding test shares
    the compiled program."""
    return self.program(group)(variables or self.variables, self.video,
                               jnp.asarray(thresholds, jnp.float32), rng=self.rng, valid=valid)

  def centre_policy(self):
    """Centres the random action head on this video: its argmax then follows how the frames
    differ, and the decisions vary (skips included). Returns self."""
    head = self.variables['params']['policy']['action_head']
    head['bias'] = head['bias'] - self.forward()['action_logits'].mean((0, 1))
    return self


def never_early(group):
  """No video exits before the last group (whose threshold does not matter)."""
  return np.concatenate([np.full(-(-T // group) - 1, np.inf), [-np.inf]])


def always(group):
  """Every video exits after its first group."""
  return np.full(-(-T // group), -np.inf)


def running_predictions(full):
  """The forward's running prediction after each step `[B, T, C]` and frames processed so far."""
  total = np.cumsum(np.asarray(full['frame_logits']), 1)
  count = np.cumsum(np.asarray(full['processed']), 1)
  return total / np.maximum(count, 1)[..., None], count


def group_ends(group):
  return np.minimum(np.arange(1, -(-T // group) + 1) * group, T)


def routed_before(full, exit_step, names=NAMES):
  """{backbone name: frames routed to it among each video's first exit_step frames}."""
  read = np.arange(T)[None] < np.asarray(exit_step)[:, None]
  actions = np.asarray(full['actions'])
  return {name: int((actions[..., k] > 0)[read].sum()) for k, name in enumerate(names)}


def rows_of(out):
  return {name: int(count) for name, count in out['rows'].items()}


def assert_equals_forward(out, full, videos=slice(None)):
  np.testing.assert_allclose(out['logits'][videos], full['logits'][videos], atol=1e-5)
  for key in ('actions', 'processed', 'decided'):
    np.testing.assert_array_equal(out[key][videos], full[key][videos])


@pytest.fixture(scope='module')
def arnet():
  return Setup().centre_policy()


@pytest.fixture(scope='module')
def arnet_forward(arnet):
  return arnet.forward()


# --- The learned policy. -------------------------------------------------------------------------

@pytest.mark.parametrize('group', [1, 2])  # 2 does not divide T = 5: a last group of one frame
def test_without_early_exit_the_program_is_the_evaluation_forward(arnet, arnet_forward, group):
  assert (~np.asarray(arnet_forward['decided'])).any()  # skips cover frames of later groups
  assert float(jnp.abs(arnet_forward['logits']).max()) > 0.1  # 1e-5 is a meaningful tolerance
  out = arnet.run(group, never_early(group))
  assert_equals_forward(out, arnet_forward)
  np.testing.assert_array_equal(out['exit_step'], T)
  assert rows_of(out) == dict(policy=B * T, **routed_before(arnet_forward, [T] * B))


@pytest.mark.parametrize('group', [1, 2])
def test_minus_inf_thresholds_stop_every_video_after_its_first_group(arnet, arnet_forward, group):
  out = arnet.run(group, always(group))
  np.testing.assert_array_equal(out['exit_step'], group)
  np.testing.assert_array_equal(out['actions'][:, group:], 0.0)
  np.testing.assert_array_equal(out['decided'][:, group:], False)
  np.testing.assert_array_equal(out['actions'][:, :group], arnet_forward['actions'][:, :group])
  running, _ = running_predictions(arnet_forward)
  np.testing.assert_allclose(out['logits'], running[:, group - 1], atol=1e-5)
  assert rows_of(out) == dict(policy=B * group, **routed_before(arnet_forward, [group] * B))


def spread_thresholds(confidence):
  """Thresholds `[K]` from the forward's confidences `[B, K]` after each group: at each group the
  most confident video still running exits (halfway to the next one's), the rest at the end."""
  b, k = confidence.shape
  running, thresholds = np.ones(b, bool), np.full(k, np.inf)
  for j in range(k - 1):
    ranked = np.sort(np.where(running, confidence[:, j], -np.inf))[::-1]
    if np.isfinite(ranked[0]):
      thresholds[j] = (ranked[0] + ranked[1]) / 2 if np.isfinite(ranked[1]) else ranked[0] - 1
      running &= confidence[:, j] < thresholds[j]
  return thresholds


def test_each_video_exits_at_the_first_group_confident_enough(arnet, arnet_forward):
  group = 2
  running, count = running_predictions(arnet_forward)
  ends = group_ends(group)
  confidence = np.where(count[:, ends - 1] > 0, running[:, ends - 1].max(-1), -np.inf)
  thresholds = spread_thresholds(confidence)
  reached = confidence >= thresholds
  reached[:, -1] = True  # after the last group every video stops
  exit_group = reached.argmax(1)
  assert len(set(exit_group.tolist())) > 1  # the videos stop at different groups
  out = arnet.run(group, thresholds)
  np.testing.assert_array_equal(out['exit_step'], ends[exit_group])
  np.testing.assert_allclose(out['logits'], running[np.arange(B), ends[exit_group] - 1],
                             atol=1e-5)
  assert rows_of(out) == dict(policy=int(ends[exit_group].sum()),
                              **routed_before(arnet_forward, ends[exit_group]))


def test_a_skip_chosen_in_one_group_covers_the_next_groups_frames(arnet):
  variables = jax.tree.map(lambda x: x, arnet.variables)
  head = variables['params']['policy']['action_head']
  head['bias'] = head['bias'].at[SKIP4].add(1e3)  # the policy always skips 4 frames
  out = arnet.run(2, never_early(2), variables)
  full = arnet.forward(variables)
  assert_equals_forward(out, full)
  # Frame 0 skips 1 .. 3: the second group (frames 2, 3) is all covered; frame 4 decides again.
  np.testing.assert_array_equal(out['decided'], [[True, False, False, False, True]] * B)
  np.testing.assert_array_equal(out['actions'].argmax(-1), SKIP4)
  assert rows_of(out) == dict(policy=B * T, **{name: 0 for name in NAMES})


def test_padding_videos_compute_nothing(arnet, arnet_forward):
  valid = np.array([True, False, True])
  out = arnet.run(1, never_early(1), valid=valid)
  assert_equals_forward(out, arnet_forward, valid)
  np.testing.assert_array_equal(out['exit_step'], [T, 0, T])
  np.testing.assert_array_equal(out['logits'][1], 0.0)
  np.testing.assert_array_equal(out['actions'][1], 0.0)
  np.testing.assert_array_equal(out['decided'][1], False)
  assert rows_of(out) == dict(policy=2 * T, **routed_before(arnet_forward, [T, 0, T]))


def test_new_thresholds_do_not_recompile(arnet):
  program = arnet.program(2)
  arnet.run(2, always(2))
  traces = program.traces
  for thresholds in ([0.0, 1.0, -np.inf], [np.inf, 0.5, 0.5], never_early(2)):
    arnet.run(2, thresholds)
  assert program.traces == traces == 1


# --- The baselines. -----------------------------------------------------------------------------

@pytest.fixture(scope='module', params=['random', 'multiscale', 'uniform'])
def baseline(request, arnet):
  variant = request.param
  variables = (routing.module_variables(arnet.variables, 'backbone_0') if variant == 'uniform'
               else arnet.variables)  # Multi-Scale and Random: AR-Net's parameters
  setup = Setup(variant, variables)
  return setup, setup.forward()


def expected_rows(setup, full, exit_step):
  """The rows each CNN computes when every video reads its first exit_step frames."""
  space = setup.model.action_space
  routed = routed_before(full, exit_step, space.names[:len(space.backbones)])
  return dict(policy=int(np.sum(exit_step)) if setup.model.uses_policy else 0, **routed)


def test_baselines_without_early_exit_are_the_evaluation_forward(baseline):
  setup, full = baseline
  out = setup.run(1, never_early(1))
  assert_equals_forward(out, full)
  assert rows_of(out) == expected_rows(setup, full, [T] * B)
  if setup.model.policy_mode == 'none':  # Uniform: one backbone on every frame, no policy CNN
    assert rows_of(out) == {'policy': 0, NAMES[0]: B * T}
  elif setup.model.policy_mode == 'all':  # Multi-Scale: every frame through every backbone
    assert rows_of(out) == {'policy': B * T, **{name: B * T for name in NAMES}}
  else:  # Random: drawn as the forward draws them, skips honoured
    assert len(np.unique(np.asarray(out['actions']).argmax(-1))) > 2


def test_baselines_stop_after_the_first_group_with_minus_inf_thresholds(baseline):
  setup, full = baseline
  out = setup.run(1, always(1))
  np.testing.assert_array_equal(out['exit_step'], 1)
  np.testing.assert_array_equal(out['actions'][:, 1:], 0.0)
  np.testing.assert_array_equal(out['actions'][:, :1], full['actions'][:, :1])
  running, _ = running_predictions(full)
  np.testing.assert_allclose(out['logits'], running[:, 0], atol=1e-5)
  assert rows_of(out) == expected_rows(setup, full, [1] * B)


@pytest.mark.parametrize('fallback', ['none', 'policy_head'])
def test_a_video_with_no_processed_frame_predicts_as_the_forward_would(fallback):
  model = models.create_model(model_config(no_frame_fallback=fallback))
  total, last_lite = jnp.array([[2.0, 4.0], [0.0, 0.0]]), jnp.array([[9.0, 9.0], [1.0, 3.0]])
  logits = exit_arnet.running_prediction(model, total, jnp.array([2.0, 0.0]), last_lite)
  np.testing.assert_array_equal(logits[0], [1.0, 2.0])  # the mean of its processed frames
  # Nothing processed: zeros, or the lite head at its last step run (`ARNet.combine`'s rule).
  np.testing.assert_array_equal(logits[1], [0.0, 0.0] if fallback == 'none' else [1.0, 3.0])


# --- Bad input. ---------------------------------------------------------------------------------

def test_an_lstm_baseline_is_refused_by_name():
  model = models.create_model(model_config(variant='lstm'))
  with pytest.raises(TypeError, match='LSTMBaseline'):
    exit_arnet.exit_inference_fn(model, group=1, confidence='max_logit')


def test_thresholds_must_have_one_value_per_exit_point(arnet):
  with pytest.raises(ValueError, match='3 exit points'):
    arnet.run(2, [0.0, 0.0])
