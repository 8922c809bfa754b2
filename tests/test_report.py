"""The report figures: which runs are found, what is plotted (the evaluation JSON's numbers), the
PNGs' sizes, and the policy strips showing each frame as its backbone saw it."""
import json
import os
import sys

import numpy as np
import pytest
from absl import flags
from PIL import Image

from arnet_jax import data as data_lib
from arnet_jax import defaults, metrics, registry
from arnet_jax.methods import arnet as arnet_method
from arnet_jax.tools import charts, policy_strips, report

NAMES = ('resnet50@64', 'resnet34@48', 'resnet18@32', 'policy@24', 'skip1', 'skip2', 'skip4')
T = 16


def demo_config(data_dir):
  path = os.path.join(os.path.dirname(__file__), '..', 'configs', 'demo.py')
  config = defaults.load_config(path)
  config.data.data_dir = data_dir
  config.data.builder_config = 'tiny'
  config.model.num_classes = 4
  return defaults.finalize(config)


def one_hot(sequence):
  """Action indices [T] -> [T, A] one-hot."""
  return np.eye(len(NAMES))[np.asarray(sequence)]


def write_run(directory, metrics_dict, predictions=None):
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, 'metrics.json'), 'w') as f:
    json.dump(metrics_dict, f, indent=2, sort_keys=True)
  if predictions is not None:
    np.savez_compressed(os.path.join(directory, 'predictions.npz'), **predictions)


def arnet_predictions(labels):
  """Decisions for every validation video: video i processes frame 0 with action i % 4, then
  skips 4 (frames 1-4), then alternates resnet18@32 and resnet50@64."""
  n = len(labels)
  actions, decided = np.zeros((n, T, len(NAMES))), np.ones((n, T), bool)
  for i in range(n):
    sequence = [i % 4] + [6] * 4 + [2, 0] * 5 + [2]
    actions[i] = one_hot(sequence)
    decided[i, 2:5] = False
  logits = np.eye(4)[(np.asarray(labels) + np.arange(n) % 2) % 4] * 3.0  # every other one wrong
  return dict(logits=logits, actions=actions, decided=decided, label=np.asarray(labels),
              labels=np.eye(4)[labels], index=np.arange(n), mask=np.ones(n))


@pytest.fixture(scope='module')
def recipe_dir(demo_data_dir, tmp_path_factory):
  """A recipe workdir as the recipe leaves it: a stage's final eval (no predictions), two
  baselines with predictions, results.json rows naming them."""
  workdir = str(tmp_path_factory.mktemp('recipe'))
  config = demo_config(demo_data_dir)
  labels = [c.label for c in policy_strips.read_clips(config.data, range(12))]
  arnet = arnet_predictions(labels)
  arnet_metrics = dict(mAP=71.25, mmAP=71.25, top1=50.0, top5=100.0, gflops_per_video=0.0123,
                       gflops_per_frame=0.0123 / T, num_videos=12,
                       action_usage=metrics.action_usage(arnet['actions'], NAMES),
                       checkpoint=os.path.join(workdir, 'finetune', 'best'))
  uniform_metrics = dict(mAP=64.5, mmAP=64.5, top1=41.7, top5=100.0, gflops_per_video=0.0385,
                         gflops_per_frame=0.0385 / T, num_videos=12,
                         action_usage={'resnet50@64': 1.0})
  finetune_metrics = dict(arnet_metrics, step=9)
  write_run(os.path.join(workdir, 'baselines', 'arnet', 'eval'), arnet_metrics, arnet)
  write_run(os.path.join(workdir, 'baselines', 'uniform', 'eval'), uniform_metrics)
  write_run(os.path.join(workdir, 'finetune', 'eval'), finetune_metrics)
  with open(os.path.join(workdir, 'results.json'), 'w') as f:
    json.dump(dict(rows={'Uniform': uniform_metrics, 'AR-Net': arnet_metrics}), f)
  return workdir, config


@pytest.fixture(scope='module')
def written(recipe_dir):
  workdir, config = recipe_dir
  return report.write_report(workdir, config, num_videos=3), workdir


def test_runs_are_labelled_by_recipe_row_or_folder(recipe_dir):
  runs = {r.label: r for r in report.collect_runs([recipe_dir[0]])}
  assert list(runs) == ['finetune', 'Uniform', 'AR-Net']  # stages, then the table's rows
  assert runs['AR-Net'].predictions_path.endswith('baselines/arnet/eval/predictions.npz')
  assert runs['finetune'].predictions_path is None
  assert report.choose_run(list(runs.values())).label == 'AR-Net'


def test_several_workdirs_prefix_labels_with_the_workdir_name(recipe_dir, tmp_path):
  other = tmp_path / 'other'
  write_run(str(other / 'eval'), dict(mAP=50.0, gflops_per_video=0.02, action_usage={}))
  labels = [r.label for r in report.collect_runs([recipe_dir[0], str(other)])]
  assert f'{os.path.basename(recipe_dir[0])}: AR-Net' in labels
  assert 'other: other' in labels


def test_three_pngs_are_written_with_the_expected_pixel_sizes(written):
  result, workdir = written
  sizes = {name: Image.open(os.path.join(workdir, 'report', f'{name}.png')).size
           for name in ('gflops_map', 'action_usage', 'policy_strips')}
  assert sizes['gflops_map'] == (900, 620)
  # 2 runs ('AR-Net = finetune', 'Uniform'), 4 classes: 100 px per inch of
  # (0.45 * 2 + 1.3) + (0.32 * 4 + 1.5) + 1.2.
  assert sizes['action_usage'] == (1200, 618)
  # 16 frames of 128 px (64 px crops doubled) 4 px apart, 16 px margins; 3 videos of
  # 24 + 17 px text + 7 + 128 + 7 px strip + 18 px gap, under a 92 px header.
  assert sizes['policy_strips'] == (16 * 128 + 15 * 4 + 32, 92 + 3 * 201 + 16)
  assert all(sizes[k] == result[k]['size'] for k in sizes)


def test_gflops_map_plots_the_evaluation_json_numbers(written):
  result, workdir = written
  with open(os.path.join(workdir, 'baselines', 'uniform', 'eval', 'metrics.json')) as f:
    uniform = json.load(f)
  with open(os.path.join(workdir, 'finetune', 'eval', 'metrics.json')) as f:
    finetune = json.load(f)
  plotted = {label: (g, m) for label, g, m in result['gflops_map']['runs']}
  # The fine-tuning stage and the AR-Net row evaluate the same checkpoint: one point.
  assert plotted == {'Uniform': (uniform['gflops_per_video'], uniform['mAP']),
                     'AR-Net = finetune': (finetune['gflops_per_video'], finetune['mAP'])}
  assert result['gflops_map']['paper'] == []


def test_paper_points_are_the_published_activitynet_numbers_in_their_own_panel(tmp_path):
  result = charts.plot_gflops_map([charts.Point('demo', 0.012, 60.0)], str(tmp_path / 'g.png'),
                                  paper_points=True)
  paper = {(label, family): (g, m) for label, family, g, m in result['paper']}
  assert paper[('AR-Net', 'ResNet')] == (33.47, 73.8)
  assert paper[('Uniform', 'ResNet')] == (65.76, 72.5)
  assert paper[('Multi-Scale', 'ResNet')] == (110.43, 73.5)
  assert paper[('AR-Net', 'EfficientNet')] == (15.29, 79.7)
  assert result['size'] == (1500, 620) == Image.open(tmp_path / 'g.png').size
  # A full-size run shares the paper's axes instead.
  assert charts.paper_on_same_axes([charts.Point('activitynet', 33.0, 73.0)])
  assert not charts.paper_on_same_axes([charts.Point('demo', 0.012, 60.0)])


def test_action_usage_plots_the_evaluation_json_shares(written):
  result, workdir = written
  usage = result['action_usage']
  with open(os.path.join(workdir, 'baselines', 'arnet', 'eval', 'metrics.json')) as f:
    arnet = json.load(f)['action_usage']
  assert usage['actions'] == list(NAMES)  # highest resolution first, then skips
  assert usage['overall']['AR-Net = finetune'] == arnet
  assert usage['overall']['Uniform'] == {n: float(n == 'resnet50@64') for n in NAMES}


def test_per_class_usage_averages_the_frames_of_each_class():
  actions = np.stack([one_hot([0] * 8 + [6] * 8),   # class 1
                      one_hot([2] * 16),            # class 1
                      one_hot([1] * 4 + [4] * 12)])  # class 0
  usage, videos = charts.per_class_usage(actions, np.array([1, 1, 0]), num_classes=3)
  np.testing.assert_array_equal(videos, [1, 2, 0])
  np.testing.assert_allclose(usage[0], [0, 0.25, 0, 0, 0.75, 0, 0])
  np.testing.assert_allclose(usage[1], [0.25, 0, 0.5, 0, 0, 0, 0.25])
  assert np.isnan(usage[2]).all()


def test_per_class_chart_plots_the_predictions_shares(written, recipe_dir):
  result, workdir = written
  p = np.load(os.path.join(workdir, 'baselines', 'arnet', 'eval', 'predictions.npz'))
  usage, videos = charts.per_class_usage(p['actions'], p['label'], 4)
  names = report.class_names(recipe_dir[1])
  plotted = result['action_usage']['per_class']
  assert sorted(plotted) == sorted(names[c] for c in range(4) if videos[c])
  for c, name in enumerate(names):
    if videos[c]:
      assert plotted[name] == pytest.approx(dict(zip(NAMES, usage[c])))


def test_strips_show_the_chosen_videos_with_their_captions(written):
  result, _ = written
  strips = result['policy_strips']
  assert len(strips['strips']) == 3
  assert strips['labels'][0] == (['resnet50@64', 'skip4', 'skipped', 'skipped', 'skipped']
                                 + ['resnet18@32', 'resnet50@64'] * 5 + ['resnet18@32'])


def test_strip_pixels_in_the_png_are_the_strip_arrays(written):
  result, workdir = written
  png = np.asarray(Image.open(os.path.join(workdir, 'report', 'policy_strips.png')).convert('RGB'))
  for strip, (x, y) in zip(result['policy_strips']['strips'],
                           result['policy_strips']['origins']):
    np.testing.assert_array_equal(png[y:y + strip.shape[0], x:x + strip.shape[1]], strip)


def frame_cell(strip, t, display=128):
  left = policy_strips.frame_left(t, display)
  return strip[policy_strips.BAR:policy_strips.BAR + display, left:left + display]


def colourful_frames(seed=0):
  return np.random.default_rng(seed).integers(0, 256, (T, 64, 64, 3), dtype=np.uint8)


def test_skipped_frames_are_grey_and_processed_frames_keep_their_colour():
  frames = colourful_frames()
  strip = policy_strips.strip_array(frames, one_hot([6] * 4 + [0] * 12), NAMES,
                                    charts.action_colours(NAMES))
  for t in range(4):
    cell = frame_cell(strip, t).astype(int)
    assert (cell[..., 0] == cell[..., 1]).all() and (cell[..., 1] == cell[..., 2]).all()
    assert cell.min() >= 150  # faded towards white
  cell = frame_cell(strip, 4).astype(int)
  assert (cell[..., 0] != cell[..., 1]).mean() > 0.9


def test_frames_are_drawn_at_the_resolution_of_their_action():
  frames = colourful_frames()
  strip = policy_strips.strip_array(frames, one_hot([0, 1, 2, 3] * 4), NAMES,
                                    charts.action_colours(NAMES))
  top = frame_cell(strip, 0)  # 64 px shown at 128: each pixel a 2 x 2 block, nothing lost
  np.testing.assert_array_equal(top, frames[0].repeat(2, 0).repeat(2, 1))
  low = frame_cell(strip, 2)  # resnet18@32: 4 x 4 blocks of the nearest-resized frame
  np.testing.assert_array_equal(low, frames[2][::2, ::2].repeat(4, 0).repeat(4, 1))
  for t, resolution in enumerate((64, 48, 32, 24)):
    cell = frame_cell(strip, t)
    distinct_rows = (np.abs(np.diff(cell.astype(int), axis=0)).sum(axis=(1, 2)) > 0).sum() + 1
    assert distinct_rows == resolution


def test_multiscale_frames_are_drawn_at_the_finest_resolution_and_captioned_all():
  actions = np.zeros((T, len(NAMES)))
  actions[:, :4] = 1
  assert policy_strips.frame_labels(actions, np.ones(T, bool), NAMES) == ['all 4'] * T
  strip = policy_strips.strip_array(colourful_frames(), actions, NAMES,
                                    charts.action_colours(NAMES))
  np.testing.assert_array_equal(frame_cell(strip, 0),
                                colourful_frames()[0].repeat(2, 0).repeat(2, 1))


def test_evidence_frames_get_a_mark_under_them():
  evidence = np.zeros(T, bool)
  evidence[3] = True
  strip = policy_strips.strip_array(colourful_frames(), one_hot([0] * T), NAMES,
                                    charts.action_colours(NAMES), evidence=evidence)
  below = strip[-2, :, :]
  left = policy_strips.frame_left(3, 128)
  assert (below[left:left + 128] == policy_strips.EVIDENCE_COLOUR).all()
  assert (below[:left] == 255).all()


PATCH_NAMES = ('glance+focus@28',)  # AdaFocusV2's one action


def test_patch_and_glyph_boxes_are_outlined_at_their_edges():
  frames = colourful_frames()
  patch_boxes = np.tile([8.0, 12.0, 36.0, 40.0], (T, 1))  # 28 x 28 in the 64 px frame
  patch_boxes[1] = [8.4, 12.2, 36.4, 40.2]  # corners between pixels: the nearest display pixel
  glyph_boxes = np.zeros((T, 4))
  glyph_boxes[0] = [10, 20, 26, 36]
  strip = policy_strips.strip_array(frames, np.ones((T, 1)), PATCH_NAMES,
                                    charts.action_colours(PATCH_NAMES), patch_boxes=patch_boxes,
                                    glyph_boxes=glyph_boxes)
  full = lambda t: frames[t].repeat(2, 0).repeat(2, 1)  # full resolution, 64 px shown at 128
  for t, (top, left, bottom, right) in ((0, (16, 24, 72, 80)), (1, (17, 24, 73, 80)),
                                        (2, (16, 24, 72, 80))):
    cell = frame_cell(strip, t)
    for edge in (cell[top, left:right], cell[bottom - 1, left:right], cell[top:bottom, left],
                 cell[top:bottom, right - 1]):
      assert (edge == policy_strips.PATCH_COLOUR).all()
    outline = np.zeros((128, 128), bool)
    outline[top:bottom, left:right] = True
    outline[top + 1:bottom - 1, left + 1:right - 1] = False
    glyph = np.zeros((128, 128), bool)
    if t == 0:  # the glyph's box (20, 40)-(52, 72), inside the patch
      glyph[20:52, 40:72] = True
      glyph[21:51, 41:71] = False
      assert (cell[glyph] == policy_strips.GLYPH_COLOUR).all()
    untouched = ~outline & ~glyph
    np.testing.assert_array_equal(cell[untouched], full(t)[untouched])


def test_patch_strips_in_the_png_are_the_strip_arrays_with_the_patches(tmp_path):
  frames = colourful_frames()
  boxes = np.zeros((T, 4))
  boxes[3] = [10, 20, 26, 36]
  clips = [policy_strips.Clip(0, 'validation/00000_glyph_00', 0, frames, boxes[:, 0] > 0, boxes)]
  patch_boxes = np.tile([8.0, 12.0, 36.0, 40.0], (1, T, 1))
  result = policy_strips.plot_policy_strips(
      clips, np.ones((1, T, 1)), np.ones((1, T), bool), np.array([0]), PATCH_NAMES,
      ['glyph_00'], str(tmp_path / 's.png'), patch_boxes=patch_boxes)
  strip, (x, y) = result['strips'][0], result['origins'][0]
  assert result['labels'] == [['glance+focus@28'] * T]
  assert (frame_cell(strip, 3)[20, 40:72] == policy_strips.GLYPH_COLOUR).all()
  assert (frame_cell(strip, 0)[16, 24:80] == policy_strips.PATCH_COLOUR).all()
  png = np.asarray(Image.open(tmp_path / 's.png').convert('RGB'))
  np.testing.assert_array_equal(png[y:y + strip.shape[0], x:x + strip.shape[1]], strip)


def test_clips_are_the_evaluation_clips_the_model_saw(demo_data_dir):
  config = demo_config(demo_data_dir)
  batches, _ = data_lib.create_split(config.data, 'validation', batch_size=4, train=False,
                                     num_classes=4, process_index=0, process_count=1)
  batch = next(batches)
  clips = policy_strips.read_clips(config.data, [2, 0])
  for clip, row in zip(clips, (2, 0)):
    assert batch['index'][row] == clip.index
    assert clip.label == batch['label'][row]
    np.testing.assert_array_equal(clip.evidence, batch['evidence'][row])
    np.testing.assert_array_equal(clip.glyph_box, batch['glyph_box'][row])
    seen = data_lib.denormalize(batch['video'][row]).astype(int)
    assert np.abs(seen - clip.frames).max() <= 1


def test_videos_are_chosen_one_class_at_a_time():
  assert policy_strips.choose_videos(np.array([0, 0, 1, 0, 2, 1]), 4) == [0, 1, 2, 4]
  assert policy_strips.choose_videos(np.array([3, 3]), 5) == [0, 1]


def test_actions_are_ordered_by_resolution_then_skip_length():
  assert charts.action_order(['skip4', 'policy@24', 'skip1', 'resnet18@32', 'resnet50@64']) == [
      'resnet50@64', 'resnet18@32', 'policy@24', 'skip1', 'skip4']


def test_action_names_match_the_model_action_space(recipe_dir):
  assert arnet_method.action_space(recipe_dir[1].model).names == NAMES


def test_a_failing_report_is_a_warning_not_an_error(tmp_path, recipe_dir):
  config = recipe_dir[1]
  assert report.maybe_write_report(str(tmp_path / 'nothing here'), config) is None
  config.eval.report = False
  try:
    assert report.maybe_write_report(recipe_dir[0], config) is None
  finally:
    config.eval.report = True


def test_without_predictions_the_charts_are_still_written(tmp_path):
  write_run(str(tmp_path / 'eval'), dict(mAP=50.0, gflops_per_video=0.02,
                                         action_usage={'resnet50@64': 0.5, 'skip1': 0.5}))
  result = report.write_report(str(tmp_path))
  assert sorted(result) == ['action_usage', 'gflops_map']
  assert sorted(os.listdir(tmp_path / 'report')) == ['action_usage.png', 'gflops_map.png']


def patch_model_run(directory, patch_boxes):
  """An AdaFocusV2-style evaluation of 4 videos: one action, the demo's glyph metrics."""
  m = dict(mAP=80.0, mmAP=80.0, top1=75.0, top5=100.0, gflops_per_video=0.05,
           gflops_per_frame=0.05 / T, num_videos=4, action_usage={'glance+focus@28': 1.0},
           glyph_in_patch=0.6, glyph_in_random_patch=0.2)
  p = dict(logits=np.eye(4), actions=np.ones((4, T, 1)), decided=np.ones((4, T), bool),
           label=np.arange(4), labels=np.eye(4), index=np.arange(4), mask=np.ones(4),
           patch_boxes=patch_boxes, glyph_box=np.zeros((4, T, 4)), evidence=np.zeros((4, T), bool))
  write_run(directory, m, p)
  return m


def test_patch_model_rows_are_plotted_by_their_gflops_and_map(tmp_path):
  adafocus = patch_model_run(str(tmp_path / 'baselines' / 'adafocus_v2' / 'eval'),
                             np.tile([8.0, 12.0, 36.0, 40.0], (4, T, 1)))
  arnet = dict(mAP=71.25, mmAP=71.25, top1=50.0, top5=100.0, gflops_per_video=0.0123,
               gflops_per_frame=0.0123 / T, num_videos=4,
               action_usage={'resnet50@64': 0.5, 'skip1': 0.5}, evidence_to_top_resolution=0.9,
               other_to_top_resolution=0.1)
  with open(tmp_path / 'results.json', 'w') as f:
    json.dump(dict(rows={'AdaFocusV2': adafocus, 'AR-Net': arnet}), f)
  result = report.write_report(str(tmp_path))  # no config: no strips
  assert sorted(os.listdir(tmp_path / 'report')) == ['action_usage.png', 'gflops_map.png']
  assert result['gflops_map']['runs'] == [('AdaFocusV2', 0.05, 80.0), ('AR-Net', 0.0123, 71.25)]
  assert result['action_usage']['actions'] == ['resnet50@64', 'glance+focus@28', 'skip1']
  assert result['action_usage']['overall']['AdaFocusV2'] == {
      'resnet50@64': 0.0, 'glance+focus@28': 1.0, 'skip1': 0.0}


def test_a_patch_model_whose_patches_move_is_chosen_for_the_strips(tmp_path):
  still = np.tile([8.0, 12.0, 36.0, 40.0], (4, T, 1))
  moving = still.copy()
  moving[1, 3] += 5
  patch_model_run(str(tmp_path / 'a_still' / 'eval'), still)
  patch_model_run(str(tmp_path / 'b_moving' / 'eval'), moving)
  assert report.choose_run(report.collect_runs([str(tmp_path)])).label == 'b_moving'


def test_run_folders_name_the_model_variants(tmp_path):
  for name in registry.names():
    assert report.Run('', str(tmp_path / 'baselines' / name / 'eval'), {}).variant == name
  assert report.Run('', str(tmp_path / 'baselines' / 'unknown' / 'eval'), {}).variant is None
  stages = report._stage_names()  # pylint: disable=protected-access
  assert stages[:3] == registry.get('arnet').stage_names  # each stage once, in recipe order
  assert set(stages) == {s for name in registry.names() for s in registry.get(name).stage_names}
  assert len(set(stages)) == len(stages)
  run = report.Run('x', os.path.join('w', 'baselines', 'random', 'eval'), {})
  assert run.variant == 'random'
  assert report.Run('x', os.path.join('w', 'random', 'eval'), {}).variant is None


def test_many_classes_show_the_extremes_of_top_resolution_use(tmp_path):
  actions = np.zeros((50, T, len(NAMES)))
  for c in range(50):  # class c takes the top resolution on c of... frames, the rest resnet18
    actions[c, :, 0] = np.arange(T) < c % (T + 1)
    actions[c, :, 2] = 1 - actions[c, :, 0]
  usage, videos = charts.per_class_usage(actions, np.arange(50), 50)
  result = charts.plot_action_usage(
      {'AR-Net': dict(zip(NAMES, actions.mean((0, 1))))}, str(tmp_path / 'u.png'),
      per_class=('AR-Net', usage, videos, [f'c{i}' for i in range(50)], list(NAMES)),
      max_classes=10)
  top = sorted(result['per_class'], key=lambda c: -result['per_class'][c]['resnet50@64'])
  assert len(top) == 10
  assert result['per_class'][top[0]]['resnet50@64'] == 1.0
  assert result['per_class'][top[-1]]['resnet50@64'] == 0.0


@pytest.mark.filterwarnings('ignore:the load_module:DeprecationWarning')  # ml_collections
def test_command_line_writes_the_report(recipe_dir, tmp_path, monkeypatch):
  workdir, config = recipe_dir
  out = tmp_path / 'out'
  flag_values = flags.FlagValues()
  report.define_flags(flag_values)
  monkeypatch.chdir(os.path.join(os.path.dirname(__file__), '..'))
  argv = ['report', f'--workdir={workdir}', f'--out={out}', '--paper_points', '--num_videos=2',
          '--config=configs/demo.py', f'--config.data.data_dir={config.data.data_dir}',
          '--config.data.builder_config=tiny', '--config.model.num_classes=4']
  monkeypatch.setattr(sys, 'argv', argv)  # config_flags finds its overrides in sys.argv
  flag_values(argv)
  report.run_from_flags(flag_values)
  assert sorted(os.listdir(out)) == ['action_usage.png', 'gflops_map.png', 'policy_strips.png']
  assert Image.open(out / 'gflops_map.png').size == (1500, 620)
  assert Image.open(out / 'policy_strips.png').size[1] == 92 + 2 * 201 + 16


def test_a_recipes_own_method_is_drawn_rather_than_its_random_baseline_or_a_stage(tmp_path):
  moving = np.tile([8.0, 12.0, 36.0, 40.0], (4, T, 1))
  moving[1, 3] += 5
  for folder in ('joint', 'baselines/adafocus_v2_random', 'baselines/adafocus_v2'):
    patch_model_run(str(tmp_path / folder / 'eval'), moving)
  chosen = report.choose_run(report.collect_runs([str(tmp_path)]))
  assert chosen.variant == 'adafocus_v2'


def write_exit_curve(directory, points, no_exit=(0.0123, 71.25), variant='arnet'):
  """`config.mode=exit`'s curve.json with `points` (GFLOPs per video, mAP) for its sweep."""
  os.makedirs(directory, exist_ok=True)
  curve = [dict(q=0.5 + i, thresholds=[1.0, -1e9], fit_gflops_per_video=g, mAP=m, top1=m,
                gflops_per_video=g, mean_exit_step=8.0) for i, (g, m) in enumerate(points)]
  saved = dict(variant=variant, step=9, checkpoint='unused', confidence='max_logit',
               group_frames=4, curve=curve, table=[],
               no_exit=dict(gflops_per_video=no_exit[0], mAP=no_exit[1], top1=50.0))
  with open(os.path.join(directory, 'curve.json'), 'w') as f:
    json.dump(saved, f)


def test_an_exit_curve_is_drawn_by_gflops_and_ends_at_its_model_without_exit(tmp_path):
  write_run(str(tmp_path / 'eval'), dict(mAP=64.5, gflops_per_video=0.0385,
                                         action_usage={'resnet50@64': 1.0}))
  write_exit_curve(str(tmp_path / 'exit'), [(0.009, 70.0), (0.004, 55.0), (0.009, 70.0),
                                            (0.0123, 71.25), (0.006, 66.0)])
  result = report.write_report(str(tmp_path))['gflops_map']
  # Sorted by GFLOPs, the duplicate merged, the point where nothing exits early is the end.
  assert result['curves'] == [('arnet with exit', [(0.004, 55.0), (0.006, 66.0), (0.009, 70.0),
                                                   (0.0123, 71.25)])]
  assert result['runs'] == [(tmp_path.name, 0.0385, 64.5)]
  assert result['size'] == (900, 620) == Image.open(tmp_path / 'report' / 'gflops_map.png').size


def test_the_no_exit_point_ends_the_curve_even_when_an_exit_setting_costs_more(tmp_path):
  curve = charts.Curve('x', [(0.0124, 71.0), (0.005, 60.0)], end=(0.0123, 71.25))
  assert charts.curve_points(curve) == [(0.005, 60.0), (0.0124, 71.0), (0.0123, 71.25)]
  result = charts.plot_gflops_map([], str(tmp_path / 'g.png'),
                                  curves=[('no end', [(0.2, 50.0), (0.1, 40.0)])])
  assert result['curves'] == [('no end', [(0.1, 40.0), (0.2, 50.0)])]


def test_several_workdirs_prefix_exit_curve_labels_with_the_workdir_name(tmp_path):
  write_exit_curve(str(tmp_path / 'a' / 'exit'), [(0.005, 60.0)])
  write_exit_curve(str(tmp_path / 'b' / 'finetune' / 'exit'), [(0.02, 70.0)], (0.05, 80.0),
                   variant='adafocus_v2')
  curves = report.collect_exit_curves([str(tmp_path / 'a'), str(tmp_path / 'b')])
  assert [(c.label, c.points, c.end) for c in curves] == [
      ('a: arnet with exit', [(0.005, 60.0)], (0.0123, 71.25)),
      ('b: adafocus_v2 with exit (finetune)', [(0.02, 70.0)], (0.05, 80.0))]
  assert [c.label for c in report.collect_exit_curves([str(tmp_path / 'b')])] == [
      'adafocus_v2 with exit (finetune)']


def test_a_malformed_exit_curve_is_left_out_with_a_warning(tmp_path, caplog):
  write_run(str(tmp_path / 'eval'), dict(mAP=50.0, gflops_per_video=0.02,
                                         action_usage={'resnet50@64': 1.0}))
  for folder, text in (('truncated', '{"variant": "arnet", "curve": ['),
                       ('no_no_exit', json.dumps(dict(variant='arnet', curve=[]))),
                       ('not_numbers', json.dumps(dict(variant='arnet', no_exit={}, curve=[
                           dict(gflops_per_video='many', mAP=None)])))):
    os.makedirs(tmp_path / folder / 'exit')
    (tmp_path / folder / 'exit' / 'curve.json').write_text(text)
  write_exit_curve(str(tmp_path / 'good' / 'exit'), [(0.01, 60.0)])
  result = report.write_report(str(tmp_path))
  assert [label for label, _ in result['gflops_map']['curves']] == ['arnet with exit (good)']
  warnings = [r.getMessage() for r in caplog.records if r.levelname == 'WARNING']
  for folder in ('truncated', 'no_no_exit', 'not_numbers'):
    assert any(os.path.join(folder, 'exit', 'curve.json') in w and 'left out' in w
               for w in warnings), folder


def test_a_workdir_with_only_an_exit_curve_gets_the_gflops_map(tmp_path):
  write_exit_curve(str(tmp_path / 'exit'), [(0.005, 60.0)])
  result = report.write_report(str(tmp_path))
  assert sorted(result) == ['gflops_map']
  assert os.listdir(tmp_path / 'report') == ['gflops_map.png']
  assert result['gflops_map']['curves'] == [('arnet with exit', [(0.005, 60.0), (0.0123, 71.25)])]
