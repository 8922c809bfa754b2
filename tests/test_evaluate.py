"""Evaluation routing on the tiny demo data: sparse routing (on the device or host-planned) gives
masked compute's metrics, says what it cost (compilations, dispatches, padding waste), pooled
batches change nothing, and every variant evaluates under either setting."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import random_variables, tiny_train_config

from arnet_jax import data as data_lib
from arnet_jax import defaults, evaluate, models, parallel
from arnet_jax.models import routing

SAME_METRICS = ('mAP', 'mmAP', 'top1', 'top5', 'gflops_per_frame', 'gflops_per_video',
                'action_usage', 'num_videos', 'evidence_to_top_resolution',
                'other_to_top_resolution')


def eval_config(data_dir, variant='arnet', routing_name='sparse', **eval_overrides):
  """The training tests' tiny demo config; 12 validation videos in batches of 5, so the last
  batch holds 3 padding videos."""
  config = tiny_train_config(data_dir, variant=variant)
  config.eval.routing = routing_name
  config.eval.batch_size = 5
  config.eval.update(eval_overrides)
  return config


@pytest.fixture(scope='module')
def arnet_variables(demo_data_dir):
  """Random AR-Net variables whose policy takes every kind of action on the demo videos: the
  action head standardises its logits over the validation frames, so the argmax follows how
  the frames differ rather than the largest random bias."""
  config = eval_config(demo_data_dir)
  model = models.create_model(config.model)
  size = config.data.image_size
  variables = random_variables(model, jnp.zeros((1, config.data.num_frames, size, size, 3)))
  batches, _ = data_lib.create_split(config.data, config.data.eval_split, batch_size=12,
                                     train=False, num_classes=config.model.num_classes)
  decide = jax.jit(lambda v, video: model.apply(v, video, method=lambda m, x: m.decide(x)))
  logits = np.asarray(decide(variables, next(iter(batches))['video'])['action_logits'])
  mean, std = logits.mean((0, 1)), logits.std((0, 1))
  head = variables['params']['policy']['action_head']
  head['kernel'], head['bias'] = head['kernel'] / std, (head['bias'] - mean) / std
  return variables


def variables_for(variant, arnet_variables, data_dir):
  if variant in ('arnet', 'random', 'multiscale'):  # the same parameters
    return arnet_variables
  if variant == 'uniform':
    return routing.module_variables(arnet_variables, 'backbone_0')
  config = eval_config(data_dir, variant)
  size = config.data.image_size
  return random_variables(models.create_model(config.model),
                          jnp.zeros((1, config.data.num_frames, size, size, 3)))


def run(config, variables, evaluator=None):
  evaluator = evaluator or evaluate.Evaluator(models.create_model(config.model), config,
                                              parallel.make_mesh())
  return evaluator.run(variables)


@pytest.fixture(scope='module')
def arnet_runs(demo_data_dir, arnet_variables):
  """AR-Net evaluated three ways: {'sparse' (device), 'host', 'masked': result}."""
  return {'sparse': run(eval_config(demo_data_dir), arnet_variables),
          'host': run(eval_config(demo_data_dir, dispatch='host'), arnet_variables),
          'masked': run(eval_config(demo_data_dir, routing_name='masked'), arnet_variables)}


def assert_same_evaluation(sparse, masked):
  for key in SAME_METRICS:
    if key in masked['metrics']:
      assert sparse['metrics'][key] == pytest.approx(masked['metrics'][key], abs=1e-6), key
  np.testing.assert_array_equal(sparse['predictions']['actions'],
                                masked['predictions']['actions'])
  np.testing.assert_allclose(sparse['predictions']['logits'], masked['predictions']['logits'],
                             atol=1e-4)


def test_sparse_evaluation_gives_the_masked_metrics(arnet_runs):
  sparse, masked = arnet_runs['sparse'], arnet_runs['masked']
  assert_same_evaluation(sparse, masked)
  assert_same_evaluation(arnet_runs['host'], masked)
  assert (sparse['metrics']['routing'], masked['metrics']['routing']) == ('sparse', 'masked')
  usage = sparse['metrics']['action_usage']
  assert sum(share > 0 for share in usage.values()) >= 3  # the routing had real work to do
  assert sparse['metrics']['num_videos'] == 12  # the 3 padding videos dropped


def test_per_action_map_needs_masked_compute_for_arnet(arnet_runs):
  assert set(arnet_runs['masked']['metrics']['mAP_per_action']) == {'resnet18@64', 'policy@32'}
  assert 'mAP_per_action' not in arnet_runs['sparse']['metrics']
  assert 'action_video_logits' not in arnet_runs['sparse']['predictions']


def test_device_routing_is_one_program_and_one_dispatch_per_batch(arnet_runs):
  metrics, predictions = arnet_runs['sparse']['metrics'], arnet_runs['sparse']['predictions']
  assert metrics['dispatch'] == 'device'
  assert metrics['compilations'] == 1  # every batch has one shape: the last one is padded
  assert metrics['dispatches_per_batch'] == 1 and metrics['syncs_per_batch'] == 0
  use = metrics['bucket_use']['resnet18@64']
  assert use['routed'] == int(predictions['actions'][..., 0].sum())
  assert use['padded'] == 0  # binary digits on the CPU
  for name in ('sparse', 'masked'):  # host buckets compile when a new size first appears
    assert arnet_runs[name]['metrics']['compilations_after_first_batch'] == 0


def test_host_routing_reports_compilations_and_padding(arnet_runs):
  metrics, predictions = arnet_runs['host']['metrics'], arnet_runs['host']['predictions']
  use = metrics['bucket_use']['resnet18@64']
  # Every real frame choosing the backbone went through it, the padding videos' frames did not.
  assert use['routed'] == int(predictions['actions'][..., 0].sum())
  assert use['padded'] == 0 and metrics['padding_waste'] == 0.0  # binary buckets: no padding
  # decide and combine for the one batch shape, one bucket function per capacity used.
  assert metrics['compilations'] == 2 + len(use['capacities'])
  assert metrics['syncs_per_batch'] == 2  # the routed frames, the padding mask
  assert metrics['dispatches_per_batch'] >= 3
  assert arnet_runs['masked']['metrics']['compilations'] == 1
  assert 'padding_waste' not in arnet_runs['masked']['metrics']


def test_pow2_buckets_report_their_padding_waste(demo_data_dir, arnet_variables, arnet_runs):
  result = run(eval_config(demo_data_dir, dispatch='host', buckets='pow2'), arnet_variables)
  assert_same_evaluation(result, arnet_runs['masked'])
  metrics = result['metrics']
  use = metrics['bucket_use']['resnet18@64']
  assert use['routed'] == arnet_runs['host']['metrics']['bucket_use']['resnet18@64']['routed']
  assert all(c & (c - 1) == 0 for c in use['capacities'])  # powers of two
  assert use['padded'] > 0
  assert metrics['padding_waste'] == pytest.approx(use['padded'] / (use['padded'] + use['routed']))


def test_a_second_evaluation_reports_the_same_cost_without_compiling(demo_data_dir,
                                                                       arnet_variables):
  config = eval_config(demo_data_dir, dispatch='host', max_bucket=8)
  evaluator = evaluate.Evaluator(models.create_model(config.model), config, parallel.make_mesh())
  first = run(config, arnet_variables, evaluator)['metrics']
  second = run(config, arnet_variables, evaluator)['metrics']
  assert evaluator.router.stats.traces == 0
  assert second['compilations'] == first['compilations']
  assert second['bucket_use'] == first['bucket_use']
  assert max(first['bucket_use']['resnet18@64']['capacities']) <= 8


def test_pooled_batches_give_the_same_evaluation(demo_data_dir, arnet_variables, arnet_runs):
  # 3 batches of 5 in pools of 2: the second pool is one batch and one of padding videos.
  pooled = run(eval_config(demo_data_dir, router_batch=2), arnet_variables)
  assert_same_evaluation(pooled, arnet_runs['sparse'])
  assert pooled['metrics']['num_videos'] == 12
  assert pooled['metrics']['compilations'] == 1
  assert pooled['metrics']['compilations_after_first_batch'] == 0


@pytest.mark.parametrize('variant', ['random', 'uniform', 'multiscale', 'lstm'])
def test_every_variant_evaluates_the_same_under_either_routing(demo_data_dir, arnet_variables,
                                                               variant):
  variables = variables_for(variant, arnet_variables, demo_data_dir)
  sparse, masked = (run(eval_config(demo_data_dir, variant, name), variables)
                    for name in ('sparse', 'masked'))
  assert_same_evaluation(sparse, masked)
  if variant == 'lstm':  # nothing to route: one backbone on every frame
    assert sparse['metrics']['routing'] == 'masked'
    assert sparse['metrics']['compilations'] == 1
  else:
    assert sparse['metrics']['routing'] == 'sparse'
  if variant in ('uniform', 'multiscale'):  # every frame through every resolution action
    assert sparse['metrics']['mAP_per_action'] == pytest.approx(
        masked['metrics']['mAP_per_action'], abs=1e-6)
  if variant == 'random':  # the same seeded draws both ways
    assert len(set(sparse['predictions']['actions'].argmax(-1).ravel().tolist())) > 2


def test_an_unknown_routing_is_rejected_with_the_choices(demo_data_dir):
  config = eval_config(demo_data_dir, routing_name='dense')
  with pytest.raises(ValueError, match=r"eval.routing must be one of \('sparse', 'masked'\)"):
    defaults.validate(config)  # before anything runs


def test_an_unknown_bucket_policy_names_the_choices(demo_data_dir):
  config = eval_config(demo_data_dir, buckets='fixed')
  with pytest.raises(ValueError, match='eval.buckets.*binary'):
    defaults.validate(config)  # before anything runs


def demo_predictions(patch_boxes=None):
  """2 videos x 2 frames, one action: frame 0 of each shows the glyph at (10, 20)-(26, 36)."""
  glyph = np.array([10.0, 20.0, 26.0, 36.0])
  p = dict(actions=np.ones((2, 2, 1)), evidence=np.array([[True, False], [True, False]]),
           glyph_box=np.array([[glyph, np.zeros(4)], [glyph, np.zeros(4)]]))
  if patch_boxes is not None:
    p['patch_boxes'] = patch_boxes
  return p


def test_patch_models_report_the_glyph_in_their_patch_not_the_top_resolution():
  inside, outside = [0.0, 8.0, 32.0, 40.0], [32.0, 32.0, 64.0, 64.0]
  p = demo_predictions(np.array([[inside, outside], [outside, inside]]))
  result = evaluate.demo_metrics(p, (64, 64))
  # The centre 32 x 32 patch (16..48) misses the glyph's top rows (10..26).
  assert result == {'glyph_in_patch': 0.5, 'glyph_in_random_patch': pytest.approx(10 / 32 * 0.5),
                    'glyph_in_centre_patch': 0.0}
  # A nearest crop rounds its corners: the random patches it is compared with do too (rows
  # 0..10 of 0..32 round from [0, 10.5), columns 4..20 from [3.5, 20.5)).
  rounded = evaluate.demo_metrics(p, (64, 64), rounded=True)
  assert rounded['glyph_in_random_patch'] == pytest.approx(10.5 / 32 * 17 / 32)
  # A model without patches: where its frames with evidence go.
  assert evaluate.demo_metrics(demo_predictions(), (64, 64)) == {
      'evidence_to_top_resolution': 1.0, 'other_to_top_resolution': 1.0}


def test_evaluation_keeps_a_patch_models_boxes_for_the_report():
  out = dict(logits=np.zeros((2, 4)), actions=np.ones((2, 3, 1)), decided=np.ones((2, 3), bool),
             step_logits=np.zeros((2, 3, 4)), patch_boxes=np.full((2, 3, 4), 7.0))
  kept = evaluate.prediction(out)
  assert sorted(kept) == ['actions', 'decided', 'logits', 'patch_boxes']
  np.testing.assert_array_equal(kept['patch_boxes'], out['patch_boxes'])
  del out['patch_boxes']  # AR-Net's outputs
  assert 'patch_boxes' not in evaluate.prediction(out)


def table_row(**demo):
  return dict(mAP=70.0, mmAP=71.0, top1=60.0, gflops_per_frame=0.001, gflops_per_video=0.016,
              action_usage={'resnet18@64': 0.25, 'skip1': 0.75}, **demo)


def test_an_arnet_table_has_the_top_resolution_column_only():
  table = evaluate.summary_table({'AR-Net': table_row(evidence_to_top_resolution=0.9,
                                                      other_to_top_resolution=0.1)})
  assert table.splitlines() == [
      '| run | mAP | mmAP | top1 | GFLOPs/f | GFLOPs/V | action usage | top res.: evidence / '
      'other |',
      '|---|---:|---:|---:|---:|---:|---|---:|',
      '| AR-Net | 70.0 | 71.0 | 60.0 | 0.001 | 0.016 | resnet18@64 25%, skip1 75% | 90% / 10% |']


def test_a_table_with_patch_models_shows_each_demo_column_where_a_row_has_it():
  table = evaluate.summary_table({
      'AR-Net': table_row(evidence_to_top_resolution=0.9, other_to_top_resolution=0.1),
      'AdaFocusV2': dict(table_row(glyph_in_patch=0.85, glyph_in_random_patch=0.25),
                         action_usage={'glance+focus@28': 1.0})})
  header, _, arnet, adafocus = table.splitlines()
  assert header.endswith('| top res.: evidence / other | glyph in patch: learned / random |')
  assert arnet.endswith('| 90% / 10% | - |')
  assert adafocus.endswith('| glance+focus@28 100% | - | 85% / 25% |')
