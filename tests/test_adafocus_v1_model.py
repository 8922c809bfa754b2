"""AdaFocus V1's model: the nearest resize and integer crop, the grid's pixel origins, the
policy's patches (argmax, samples, the Gaussian), the reward's random patch classified from the
chosen path's previous state, AdaFocus+'s skipped frames (held classifier state, the dense and
sparse paths equal), deterministic evaluation, frozen parts, and the whole-frame modes."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import random_variables

from arnet_jax.models import adafocus_v1 as v1
from arnet_jax.models import crop

B, T, S, P, R, GRID = 2, 3, 40, 18, 32, 7  # S - P = 22: origins 0, 3, 7, 11, 14, 18, 22
TINY = dict(num_classes=4, global_backbone='resnet18', local_backbone='resnet18',
            global_resolution=R, patch_size=P, policy_channels=4, policy_hidden=8,
            classifier_hidden=16, grid=GRID, width_multiplier=0.125, depth_multiplier=0.34,
            global_dropout=0.0, dropout_rate=0.0)


def tiny_model(**overrides) -> v1.AdaFocusV1:
  return v1.AdaFocusV1(**{**TINY, **overrides})


@functools.lru_cache(maxsize=None)
def _program(model, train, mutable):
  def program(variables, video, rngs, overrides):
    return model.apply(variables, video, train=train, rngs=rngs, mutable=mutable, **overrides)
  return jax.jit(program)


def run(model, variables, video, *, seed=None, train=False, mutable=False, **overrides):
  """`model.apply`, jitted once per (model, train, mutable); `seed` keys the rng streams."""
  rngs = {} if seed is None else {'gumbel': jax.random.key(seed),
                                  'dropout': jax.random.key(seed + 1)}
  return _program(model, train, mutable)(variables, video, rngs, overrides)


@functools.lru_cache(maxsize=None)
def _method(model, fn):
  return jax.jit(lambda variables, *args: model.apply(variables, *args, method=fn))


def policy_outputs(model, variables, video):
  """The patch policy's actor outputs `[B, T, A]` on `video`'s glance."""
  return _method(model, lambda m, x: m.policy(m.glance(x)['feature_map'])[0])(variables, video)


def local_head(model, variables, images):
  """`[N, s, s, 3]` -> `[N, C]` the local CNN and its head (inference)."""
  return _method(model, lambda m, x: m.backbone_1.logits(m.backbone_1(x)))(variables, images)


def without_skip_policy(variables):
  return {**variables, 'params': {k: v for k, v in variables['params'].items()
                                  if k != 'skip_policy'}}


@pytest.fixture(scope='module')
def video():
  return jnp.asarray(np.random.default_rng(0).normal(size=(B, T, S, S, 3)), jnp.float32)


@pytest.fixture(scope='module')
def skip_variables(video):
  """Random variables of the AdaFocus+ model: every child, `skip_policy` included."""
  return random_variables(tiny_model(skip_policy=True), video)


@pytest.fixture(scope='module')
def variables(skip_variables):
  return without_skip_policy(skip_variables)


def grid_origin(k: int, span: int) -> tuple[int, int]:
  """The authors' pixel origin of cell k: floor(a * (S - P)) with their float32 corners."""
  r, c = divmod(k, GRID)
  return tuple(int(np.floor(np.float32(i / (GRID - 1)) * np.float32(span))) for i in (r, c))


# --- Crop and resize. ---------------------------------------------------------------------------

def test_nearest_resize_reads_source_pixel_floor_of_dst_times_in_over_out():
  assert crop.nearest_indices(7, 3).tolist() == [0, 2, 4]
  assert crop.nearest_indices(5, 3).tolist() == [0, 1, 3]
  assert crop.nearest_indices(3, 7).tolist() == [0, 0, 0, 1, 1, 2, 2]
  frames = jnp.arange(2 * 5 * 7 * 1, dtype=jnp.float32).reshape(2, 5, 7, 1)
  np.testing.assert_array_equal(crop.resize_nearest(frames, 3),
                                np.asarray(frames)[:, [0, 1, 3]][:, :, [0, 2, 4]])


def test_nearest_resize_matches_torch_interpolate():
  torch = pytest.importorskip('torch')
  frames = np.random.default_rng(0).normal(size=(2, 40, 40, 3)).astype(np.float32)
  for size in (32, 17, 56):
    want = torch.nn.functional.interpolate(torch.from_numpy(frames).permute(0, 3, 1, 2), (size,
                                                                                        size))
    np.testing.assert_array_equal(crop.resize_nearest(jnp.asarray(frames), size),
                                  want.permute(0, 2, 3, 1).numpy())


def test_slice_patches_are_exact_slices_of_the_frames():
  frames = np.random.default_rng(0).normal(size=(3, 20, 24, 2)).astype(np.float32)
  origins = np.asarray([[0, 0], [12, 16], [5, 9]])  # the far corner of a 20 x 24 frame, P = 8
  patches = crop.slice_patches(jnp.asarray(frames), jnp.asarray(origins), 8)
  for n, (y, x) in enumerate(origins):
    np.testing.assert_array_equal(patches[n], frames[n, y:y + 8, x:x + 8])


def test_grid_cells_take_the_authors_pixel_origins():
  cells = np.arange(GRID * GRID)
  origins = v1.grid_origins(jnp.asarray(cells), GRID, 64, 64, 30)  # S = 64, P = 30: span 34
  assert [tuple(o) for o in np.asarray(origins).tolist()] == [grid_origin(k, 34) for k in cells]
  assert np.asarray(origins)[:GRID, 1].tolist() == [0, 5, 11, 17, 22, 28, 34]
  np.testing.assert_allclose(v1.grid_corners(GRID)[8], [1 / 6, 1 / 6])  # row 1, column 1


# --- The patch policy. --------------------------------------------------------------------------

def test_the_model_reads_the_patch_at_the_grid_cells_origin(variables, video):
  model = tiny_model()
  cells = jnp.asarray([[0, 8, 48], [6, 24, 42]])
  out = run(model, variables, video, grid_index=cells)
  want = np.asarray([[grid_origin(k, S - P) for k in row] for row in cells.tolist()])
  np.testing.assert_array_equal(out['origins'], want)
  np.testing.assert_array_equal(out['grid_index'], cells)
  np.testing.assert_allclose(out['corners'], v1.grid_corners(GRID)[np.asarray(cells)])
  np.testing.assert_array_equal(out['patch_boxes'], np.concatenate([want, want + P], -1))
  patches = np.stack([np.asarray(video)[b, t, y:y + P, x:x + P] for b in range(B)
                      for t in range(T) for y, x in [want[b, t]]])
  np.testing.assert_allclose(out['local_logits'].reshape(B * T, -1),
                             local_head(model, variables, jnp.asarray(patches)), rtol=1e-5,
                             atol=1e-6)


def test_focus_takes_the_most_probable_cell(variables, video):
  model = tiny_model()
  out = run(model, variables, video)
  actor = policy_outputs(model, variables, video)
  np.testing.assert_array_equal(out['grid_index'], np.argmax(actor, -1))
  np.testing.assert_array_equal(out['actions'], np.ones((B, T, 1)))
  assert out['step_logits'].shape == (B, T, 4) and out['global_logits'].shape == (B, T, 4)
  np.testing.assert_array_equal(out['logits'], out['step_logits'][:, -1])


def test_evaluation_is_deterministic_and_needs_no_rng(variables, video):
  model = tiny_model()
  first, second = run(model, variables, video), run(model, variables, video)
  for key in first:
    np.testing.assert_array_equal(first[key], second[key], err_msg=key)


def test_ppo_samples_cells_with_their_log_probability_and_entropy(variables, video):
  model = tiny_model(mode='ppo')
  out = run(model, variables, video, seed=0)
  log_p = jax.nn.log_softmax(policy_outputs(model, variables, video), -1)
  np.testing.assert_allclose(
      out['log_prob'], np.take_along_axis(log_p, out['grid_index'][..., None], -1)[..., 0],
      rtol=1e-5)
  np.testing.assert_allclose(out['entropy'], -np.sum(np.exp(log_p) * log_p, -1), rtol=1e-5)
  assert out['log_prob'].dtype == jnp.float32 and out['value'].shape == (B, T)
  other = run(model, variables, video, seed=5)
  assert not np.array_equal(out['grid_index'], other['grid_index'])  # 49 cells, 6 draws


def test_ppos_chosen_path_is_focus_on_the_same_cells(variables, video):
  out = run(tiny_model(mode='ppo'), variables, video, seed=0)
  focus = run(tiny_model(), variables, video, grid_index=out['grid_index'])
  np.testing.assert_allclose(out['step_logits'], focus['step_logits'], rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(out['origins'], focus['origins'])


def test_ppos_random_patch_is_classified_from_the_chosen_paths_previous_state(variables, video):
  random_origins = jnp.asarray([[[0, 22], [22, 0], [5, 9]], [[22, 22], [1, 2], [13, 0]]])
  out = run(tiny_model(mode='ppo'), variables, video, seed=0, random_origins=random_origins)
  focus = tiny_model()
  for t in range(T):  # steps < t on the chosen patches, step t on the random one
    origins = jnp.where((jnp.arange(T) == t)[None, :, None], random_origins, out['origins'])
    want = run(focus, variables, video, origins=origins)['step_logits'][:, t]
    np.testing.assert_allclose(out['random_step_logits'][:, t], want, rtol=1e-5, atol=1e-6)


def test_random_origins_are_uniform_over_every_position_including_the_far_edge(variables):
  model = tiny_model(mode='random')
  draw = jax.jit(lambda key: model.apply(variables, 64, 32, S, S, rngs={'gumbel': key},
                                         method=lambda m, *a: m.draw_random_origins(*a)))
  origins = np.asarray(draw(jax.random.key(0)))
  assert origins.shape == (64, 32, 2) and origins.dtype == np.int32
  for axis in range(2):  # each of the 23 positions drawn about 89 times
    assert sorted(set(origins[..., axis].ravel().tolist())) == list(range(S - P + 1))


def test_the_random_mode_reads_the_given_random_origins(variables, video):
  random_origins = jnp.asarray([[[0, 22], [22, 0], [5, 9]], [[22, 22], [1, 2], [13, 0]]])
  out = run(tiny_model(mode='random'), variables, video, seed=0, random_origins=random_origins)
  np.testing.assert_array_equal(out['origins'], random_origins)
  np.testing.assert_allclose(out['corners'], random_origins / (S - P))
  np.testing.assert_array_equal(out['grid_index'], -np.ones((B, T)))


# --- The Gaussian policy. -----------------------------------------------------------------------

@pytest.fixture(scope='module')
def gaussian_variables(video):
  return random_variables(tiny_model(policy_actions='gaussian'), video)


def test_the_gaussian_policy_evaluates_at_its_mean(gaussian_variables, video):
  model = tiny_model(policy_actions='gaussian')
  out = run(model, gaussian_variables, video)
  mean = jax.nn.sigmoid(policy_outputs(model, gaussian_variables, video))
  np.testing.assert_allclose(out['corners'], mean, rtol=1e-6)
  np.testing.assert_array_equal(out['origins'], np.floor(np.asarray(mean) * (S - P)))


def test_gaussian_samples_are_clamped_to_the_unit_square_with_the_clamped_log_prob(
    gaussian_variables, video):
  std = 1.0  # wide enough that clamping happens
  model = tiny_model(policy_actions='gaussian', mode='ppo', policy_std=std)
  out = run(model, gaussian_variables, video, seed=0)
  corners = np.asarray(out['corners'])
  assert np.all((corners >= 0) & (corners <= 1)) and np.any((corners == 0) | (corners == 1))
  mean = jax.nn.sigmoid(policy_outputs(model, gaussian_variables, video))
  want = np.sum(-0.5 * ((corners - mean) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi), -1)
  np.testing.assert_allclose(out['log_prob'], want, rtol=1e-5)
  np.testing.assert_allclose(out['entropy'], 2 * (0.5 + 0.5 * np.log(2 * np.pi) + np.log(std)),
                             rtol=1e-6)


# --- AdaFocus+: the skip policy. ----------------------------------------------------------------

PROCESSED = jnp.asarray([[True, False, True], [True, True, False]])
ORIGINS = jnp.asarray([[[0, 0], [3, 7], [22, 11]], [[14, 18], [7, 3], [0, 22]]])


def with_skip_bias(variables, bias):
  """The skip policy's logit = `bias` on every frame (zero actor kernel)."""
  params = dict(variables['params'])
  actor = params['skip_policy']['actor']
  params['skip_policy'] = {**params['skip_policy'], 'actor': dict(
      kernel=jnp.zeros_like(actor['kernel']), bias=jnp.full_like(actor['bias'], bias))}
  return {**variables, 'params': params}


@pytest.mark.parametrize('bias, want', [(-10.0, [True, False, False]), (10.0, [True] * 3),
                                        (0.0, [True] * 3)])  # p = 0.5 is processed
def test_frames_are_processed_where_p_is_at_least_one_half_and_step_0_always(
    skip_variables, video, bias, want):
  out = run(tiny_model(skip_policy=True), with_skip_bias(skip_variables, bias), video)
  np.testing.assert_array_equal(out['processed'], [want] * B)
  np.testing.assert_array_equal(out['actions'][..., 0], [want] * B)


def test_skipped_frames_are_left_out_of_classification(skip_variables, variables, video):
  out = run(tiny_model(skip_policy=True), skip_variables, video, origins=ORIGINS,
            processed=PROCESSED)
  kept = [[0, 2], [0, 1]]  # each video's processed frames
  pick = lambda x: jnp.stack([x[b, np.asarray(kept[b])] for b in range(B)])
  alone = run(tiny_model(), variables, pick(video), origins=pick(ORIGINS))
  np.testing.assert_allclose(out['logits'], alone['logits'], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(pick(out['step_logits']), alone['step_logits'], rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_array_equal(out['step_logits'][0, 1], out['step_logits'][0, 0])  # held
  np.testing.assert_array_equal(out['actions'][..., 0], PROCESSED)
  for key in ('local_logits', 'patch_boxes'):
    assert np.all(np.asarray(out[key])[~np.asarray(PROCESSED)] == 0), key


@pytest.mark.parametrize('plan', ['binary', 'grid'])
def test_the_sparse_plans_give_the_dense_outputs_from_the_processed_rows_only(
    skip_variables, video, plan):
  dense = run(tiny_model(skip_policy=True), skip_variables, video, origins=ORIGINS,
              processed=PROCESSED)  # the program of the test above
  sparse, state = run(tiny_model(skip_policy=True, sparse_plan=plan), skip_variables, video,
                      origins=ORIGINS, processed=PROCESSED, mutable=('intermediates',))
  for key in ('logits', 'step_logits', 'local_logits'):
    np.testing.assert_allclose(sparse[key], dense[key], rtol=1e-5, atol=1e-6, err_msg=key)
  assert int(state['intermediates']['local_rows'][0]) == 4  # both plans: the 4 of 6 rows


def test_skip_ppo_samples_decisions_with_their_bernoulli_log_prob(skip_variables, video):
  variables = with_skip_bias(skip_variables, 0.5)
  out = run(tiny_model(skip_policy=True, mode='skip_ppo'), variables, video, seed=0)
  p = 1 / (1 + np.exp(-0.5))
  processed = np.asarray(out['processed'])
  assert processed[:, 0].all()
  np.testing.assert_allclose(out['skip_log_prob'][:, 1:],
                             np.log(np.where(processed[:, 1:], p, 1 - p)), rtol=1e-5)
  np.testing.assert_array_equal(out['skip_log_prob'][:, 0], 0)
  np.testing.assert_allclose(out['skip_entropy'][:, 1:],
                             -(p * np.log(p) + (1 - p) * np.log(1 - p)), rtol=1e-5)
  draws = [run(tiny_model(skip_policy=True, mode='skip_ppo'), variables, video, seed=s)[
      'processed'] for s in range(1, 4)]
  assert any(not np.array_equal(d, processed) for d in draws)


def test_skip_ppos_prior_logits_are_the_prediction_before_each_step(skip_variables, video):
  out = run(tiny_model(skip_policy=True, mode='skip_ppo'), skip_variables, video, seed=0)
  fc_bias = skip_variables['params']['classifier']['fc']['bias']
  np.testing.assert_allclose(out['prior_logits'][:, 0], np.broadcast_to(fc_bias, (B, 4)),
                             rtol=1e-6)  # fc(h_{-1} = 0)
  np.testing.assert_allclose(out['prior_logits'][:, 1:], out['step_logits'][:, :-1], rtol=1e-6)


# --- Frozen parts. ------------------------------------------------------------------------------

def test_parts_outside_train_parts_get_no_gradient_and_keep_their_statistics(variables, video):
  model = tiny_model(mode='random', train_parts=('local', 'classifier'))
  weights = jax.random.normal(jax.random.key(3), (3, B, T, 4))

  def loss(params):
    out, updates = run(model, {**variables, 'params': params}, video, seed=0, train=True,
                       mutable=('batch_stats',))
    total = sum(jnp.sum(w * out[k]) for w, k in zip(
        weights, ('step_logits', 'global_logits', 'local_logits')))
    return total, updates['batch_stats']
  grads, stats = jax.grad(loss, has_aux=True)(variables['params'])
  nonzero = lambda tree: any(np.any(np.asarray(g) != 0) for g in jax.tree.leaves(tree))
  assert not nonzero(grads['backbone_0']) and not nonzero(grads['policy'])
  assert nonzero(grads['backbone_1']) and nonzero(grads['classifier'])
  before = variables['batch_stats']
  for a, b in zip(jax.tree.leaves(stats['backbone_0']), jax.tree.leaves(before['backbone_0'])):
    np.testing.assert_array_equal(a, b)
  assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(stats['backbone_1']),
                                                      jax.tree.leaves(before['backbone_1'])))


def test_ppo_trains_the_policy_through_log_prob_and_value_only(variables, video):
  model = tiny_model(mode='ppo', train_parts=('policy',))
  out, backward = jax.vjp(lambda params: run(model, {**variables, 'params': params}, video,
                                             seed=0), variables['params'])
  nonzero = lambda tree: any(np.any(np.asarray(g) != 0) for g in jax.tree.leaves(tree))
  ones_at = lambda keys: {k: jnp.ones_like(v) if k in keys else jnp.zeros_like(v)
                          for k, v in out.items()}  # d(sum of out[keys]) / d out
  grads, = backward(ones_at(('log_prob', 'value', 'entropy')))
  assert nonzero(grads['policy'])
  grads, = backward(ones_at(('step_logits', 'random_step_logits', 'logits')))
  assert not nonzero(grads)


# --- Whole frames; initialisation. -------------------------------------------------------------

def test_warmup_reads_whole_frames_with_each_cnns_head(variables, video):
  model = tiny_model(mode='warmup')
  out = run(model, variables, video)
  frames = video.reshape(B * T, S, S, 3)
  np.testing.assert_allclose(out['local_logits'].reshape(B * T, -1),
                             local_head(model, variables, frames), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out['logits'], out['local_logits'].mean(1), rtol=1e-6)
  glance = _method(model, lambda m, x: m.backbone_0.logits(jnp.mean(m.backbone_0(x), (1, 2))))
  np.testing.assert_allclose(out['global_logits'].reshape(B * T, -1),
                             glance(variables, crop.resize_nearest(frames, R)), rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_array_equal(out['patch_boxes'], np.broadcast_to([0, 0, S, S], (B, T, 4)))
  np.testing.assert_array_equal(out['actions'], np.ones((B, T, 1)))


def test_uniform_averages_the_local_head_over_whole_frames(variables, video):
  out = run(tiny_model(mode='uniform'), variables, video)
  warmup = run(tiny_model(mode='warmup'), variables, video)
  assert set(out) == {'logits', 'local_logits', 'actions', 'decided', 'patch_boxes'}
  np.testing.assert_allclose(out['logits'], warmup['logits'], rtol=1e-6)
  assert out['local_logits'].shape == (B, T, 4) and out['decided'].all()


@pytest.mark.parametrize('mode', ['warmup', 'random'])
def test_initialisation_creates_every_child_in_every_mode(variables, mode):
  from arnet_jax import models  # pylint: disable=g-import-not-at-top
  shapes = models.abstract_variables(tiny_model(mode=mode), (B, T, S, S, 3))
  assert jax.tree.map(lambda x: x.shape, shapes) == jax.tree.map(jnp.shape, variables)
