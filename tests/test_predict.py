"""`python -m arnet_jax.predict`: video files -> the classes, actions and GFLOPs evaluation gives
them; unreadable files reported, the others predicted; bad inputs named with their fix.

One tiny AR-Net checkpoint (random weights, the config saved as training saves it) and a
custom dataset prepared from generated mp4s (`data_helpers.custom_videos_dir`) serve every test.
"""
import io
import json
import os

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from conftest import random_variables, tiny_model_config

import data_helpers as h
from arnet_jax import checkpoint as ckpt_lib
from arnet_jax import defaults, errors, evaluate, flops, metrics, models, predict
from arnet_jax.data import builders, decode, prepare
from arnet_jax.tools import policy_strips

TRAIN_VIDEOS = ('clips/a0.mp4', 'clips/a1.mp4', 'clips/b0.mp4', 'clips/c0.mp4')


def custom_config(data_dir, **model_overrides):
  """A tiny AR-Net on the prepared custom dataset, evaluated on its 4 training videos."""
  config = defaults.get_config()
  config.data = defaults.data_config('custom')
  config.data.data_dir = data_dir
  config.data.image_size = 64
  config.data.eval_split = 'train'
  model = dict(num_classes=len(h.CLASSES), backbones=('resnet18',), resolutions=(64,),
               policy_backbone='resnet18', policy_resolution=32)
  config.model = tiny_model_config(**{**model, **model_overrides})
  config.eval.batch_size = 4
  config.eval.report = False
  return defaults.finalize(config)


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
  """(manual_dir, config, workdir of the checkpoint): the videos prepared at prepare's custom
  defaults (4 fps, short side 256), a checkpoint in WORKDIR/best as training writes it."""
  root = tmp_path_factory.mktemp('predict')
  manual = h.custom_videos_dir(str(root / 'manual'))
  data_dir = str(root / 'tfds')
  assert prepare.main(['--dataset=custom', f'--manual_dir={manual}', f'--data_dir={data_dir}',
                       '--num_workers=1', '--no_progress']) == 0
  config = custom_config(data_dir)
  model = models.create_model(config.model)
  variables = random_variables(model, jnp.zeros((1, 16, 64, 64, 3)))
  workdir = str(root / 'run')
  ckpt_lib.write_variables(os.path.join(workdir, 'best'), variables,
                           {'config': config.to_dict(), 'stage': config.stage}, step=6)
  return manual, config, workdir


@pytest.fixture(scope='module')
def predictor(setup):
  return predict.Predictor(setup[2], err=io.StringIO())


def run_all(predictor, videos, **kwargs):
  out, err = io.StringIO(), io.StringIO()
  status = predict.predict_all(predictor, videos, out=out, err=err, **kwargs)
  return status, out.getvalue(), err.getvalue()


def test_predictions_are_evaluations_classes_scores_actions_and_gflops(setup, predictor,
                                                                      tmp_path):
  manual, config, workdir = setup
  evaluate.evaluate_checkpoint(config, str(tmp_path / 'eval'), workdir)
  p = np.load(tmp_path / 'eval' / 'eval' / 'predictions.npz')
  from arnet_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  ids = data_lib.split_video_ids(config.data, 'train')
  assert sorted(ids) == sorted(TRAIN_VIDEOS)
  table = flops.cost_table(config.model)
  for row, index in enumerate(p['index']):
    result = predictor(os.path.join(manual, ids[index]), top_k=len(h.CLASSES))
    scores = metrics.softmax(p['logits'][row][None].astype(np.float64))[0]
    assert [c['class'] for c in result['top_k']] == np.argsort(-scores).tolist()
    np.testing.assert_allclose([c['score'] for c in result['top_k']],
                               np.sort(scores)[::-1], atol=1e-5)
    assert [c['name'] for c in result['top_k']] == [h.CLASSES[c] for c in np.argsort(-scores)]
    assert result['actions'] == policy_strips.frame_labels(p['actions'][row], p['decided'][row],
                                                           table.action_names)
    assert result['gflops'] == pytest.approx(
        flops.decision_gflops(p['actions'][row][None], table)['per_video'][0], rel=1e-9)


def test_videos_are_decoded_as_the_prepared_copy_stored_them(predictor):
  assert predictor.facts.frame_options == decode.FrameOptions(fps=4.0, short_side=256,
                                                              jpeg_quality=90)
  assert predictor.facts.class_names == h.CLASSES


def test_an_unreadable_file_is_one_line_and_the_others_are_predicted(setup, predictor,
                                                                    tmp_path):
  manual = setup[0]
  bad = {'empty.mp4': h.write_bytes(str(tmp_path / 'empty.mp4'), b''),
         'notes.mp4': h.write_text(str(tmp_path / 'notes.mp4'), 'not a video\n' * 20),
         'short.mp4': h.write_video(str(tmp_path / 'short.mp4'), 2),
         'gone.mp4': str(tmp_path / 'gone.mp4')}
  good = [os.path.join(manual, 'val/b1.mp4'), os.path.join(manual, 'val/c1.mp4')]
  status, out, err = run_all(predictor, [good[0], *bad.values(), good[1]])
  assert status == 0
  lines = err.strip().splitlines()
  assert len(lines) == len(bad)
  reasons = {'empty.mp4': 'empty file', 'notes.mp4': 'unreadable', 'short.mp4': 'too short',
             'gone.mp4': 'missing file'}
  for line, (name, path) in zip(lines, bad.items()):
    assert line.startswith(f'cannot predict {path}: {reasons[name]}')
  for path in good:
    assert f'{path}  (' in out
  assert out.strip().splitlines()[-1] == 'predicted 2 of 6 videos'


def test_json_output_has_every_field(setup, predictor):
  manual = setup[0]
  videos = [os.path.join(manual, 'val/b1.mp4'), os.path.join(manual, 'gone.mp4')]
  status, out, _ = run_all(predictor, videos, top_k=2, as_json=True)
  assert status == 0
  report = json.loads(out)
  assert report['score'] == predict.SCORE and report['variant'] == 'arnet'
  assert report['frames_per_clip'] == 16
  assert report['decoding'] == '4 fps, short side 256, JPEG quality 90'
  ok, missing = report['videos']
  assert ok['path'] == videos[0]
  assert [set(c) for c in ok['top_k']] == [{'class', 'name', 'score'}] * 2
  assert ok['top_k'][0]['score'] >= ok['top_k'][1]['score'] > 0
  assert ok['top_k'][0]['name'] == h.CLASSES[ok['top_k'][0]['class']]
  names = predictor.evaluator.names
  assert len(ok['actions']) == 16 and all(a in names or a == 'skipped' for a in ok['actions'])
  assert ok['gflops'] > 0 and ok['seconds'] > 0
  assert missing == {'path': videos[1], 'error': f'missing file: {videos[1]}'}


def test_nothing_predicted_exits_with_status_1(setup, predictor, tmp_path):
  status, out, err = run_all(predictor, [str(tmp_path / 'gone.mp4')])
  assert status == predict.NOTHING_PREDICTED == 1
  assert out.strip().splitlines()[-1] == 'predicted 0 of 1 videos'
  assert 'missing file' in err


def test_strips_writes_one_picture_per_video(setup, predictor, tmp_path):
  manual = setup[0]
  videos = [os.path.join(manual, 'val/b1.mp4'), os.path.join(manual, 'clips/b0.mp4')]
  status, out, _ = run_all(predictor, videos, as_json=True, strips=str(tmp_path / 'strips'))
  assert status == 0
  paths = [v['strip'] for v in json.loads(out)['videos']]
  assert paths == [str(tmp_path / 'strips' / 'b1.png'), str(tmp_path / 'strips' / 'b0.png')]
  for path in paths:
    with Image.open(path) as image:
      assert image.width > 16 * policy_strips.MIN_DISPLAY  # 16 frames side by side


def test_folders_give_their_videos_and_an_empty_one_is_an_error(setup, tmp_path):
  manual = setup[0]
  assert predict.find_videos([os.path.join(manual, 'val')]) == [
      os.path.join(manual, 'val', 'b1.mp4'), os.path.join(manual, 'val', 'c1.mp4')]
  h.write_text(str(tmp_path / 'notes.txt'), 'no videos here')
  with pytest.raises(errors.UserError, match='No videos found in .*Name video files or folders'):
    predict.run(setup[2], [str(tmp_path)])


def test_a_missing_checkpoint_names_the_path_and_what_to_give(setup, tmp_path):
  video = os.path.join(setup[0], 'val/b1.mp4')
  with pytest.raises(errors.PathNotFoundError, match=f'{tmp_path}/nothing does not exist.*'
                     'Give a training workdir'):
    predict.run(str(tmp_path / 'nothing'), [video])


def test_a_checkpoint_of_another_model_says_to_drop_config(setup):
  manual, config, workdir = setup
  other = custom_config(config.data.data_dir, backbones=('resnet34',))
  with pytest.raises(errors.UserError, match="holds another model than --config describes: it "
                     r"was trained with model.backbones=\['resnet18'\] \(this run: \['resnet34'\]\)"
                     '.*drop --config'):
    predict.run(workdir, [os.path.join(manual, 'val/b1.mp4')], config=other)


def test_a_checkpoint_without_a_config_asks_for_one(setup, tmp_path):
  variables = ckpt_lib.load_variables(setup[2])[0]
  ckpt_lib.write_variables(str(tmp_path / 'imported'), variables, {'kind': 'backbone'})
  with pytest.raises(errors.UserError, match='holds no config.*--config=FILE'):
    ckpt_lib.saved_config(str(tmp_path / 'imported'))


def test_the_saved_config_is_the_trained_one_with_tuples(setup):
  config = ckpt_lib.saved_config(setup[2])
  assert config.model.backbones == ('resnet18',) and config.model.num_classes == 3
  assert config.data.data_dir == setup[1].data.data_dir and config.data.eval_split == 'train'


@pytest.mark.parametrize('kind,fps,side,quality', [('videos', 4.0, 256, 90),
                                                   ('videos', 0.5, None, 95),
                                                   ('videos', None, 128, 90)])
def test_frame_options_are_read_back_from_the_prepared_copys_name(kind, fps, side, quality):
  name = builders.config_name(kind, fps, side, jpeg_quality=quality)
  assert predict.stored_frame_options(name) == decode.FrameOptions(
      fps=fps, short_side=side, jpeg_quality=quality)


def test_a_copy_of_frame_folders_has_no_frame_rate_to_read():
  assert predict.stored_frame_options(builders.config_name('frames', None, 256)) is None


def test_a_dataset_not_at_hand_gives_numbered_classes_and_a_warning(setup, tmp_path):
  config = setup[1].copy_and_resolve_references()
  config.data.data_dir = str(tmp_path / 'elsewhere')
  err = io.StringIO()
  facts = predict.dataset_facts(config, err)
  assert facts.class_names == ('class 0', 'class 1', 'class 2')
  assert facts.frame_options.fps == builders.BUILDERS['custom'].DEFAULT_FPS
  assert err.getvalue().startswith('warning: the prepared dataset is not at hand')
  assert '--data_dir=DIR' in err.getvalue()
