"""`python -m arnet_jax.data.prepare`: files on disk -> TFDS dataset + report."""

import json
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

import data_helpers as h
from arnet_jax.data import decode
from arnet_jax.data import prepare
from arnet_jax.data import report as report_lib


def _run(capsys, *args):
  code = prepare.main(list(args) + ['--no_progress'])
  return code, capsys.readouterr()


def _dataset_dir(data_dir, name, config):
  return os.path.join(data_dir, name, config, str(tfds.builder_cls(name).VERSION))


def _read(folder, split):
  builder = tfds.builder_from_directory(folder)
  ds = builder.as_dataset(split=split, decoders={'frames': tfds.decode.SkipDecoding()})
  return builder, {ex['video_id'].decode(): ex for ex in ds.as_numpy_iterator()}


def test_custom_videos_with_bad_files(tmp_path, capsys):
  manual = h.custom_videos_dir(str(tmp_path / 'manual'), bad=True)
  data_dir = str(tmp_path / 'tfds')
  code, out = _run(capsys, '--dataset=custom', f'--manual_dir={manual}',
                   f'--data_dir={data_dir}', '--fps=0', '--num_workers=1')
  assert code == 0
  summary = ('prepared 6, skipped 5 (unreadable: 2, empty file: 1, missing file: 1, '
             'too short: 1)')
  assert out.out.strip().splitlines()[-1] == summary

  folder = _dataset_dir(data_dir, 'arnet_custom', 'videos_fpsall_side256')
  report = report_lib.read_report(folder)
  assert report['summary'] == summary
  assert report['prepared_per_split'] == {'train': 4, 'validation': 2}
  skipped = {os.path.basename(s['path']): s['reason'] for s in report['skipped_files']}
  assert set(skipped) == {'empty.mp4', 'notes.mp4', 'cut.mp4', 'short.mp4', 'gone.mp4'}
  assert skipped['short.mp4'].startswith('too short: 2 frame(s)')
  with open(os.path.join(folder, 'prepare_report.txt')) as f:
    assert 'bad/notes.mp4: unreadable' in f.read()

  builder, train = _read(folder, 'train')
  assert builder.info.features['label'].names == list(h.CLASSES)
  assert {k: int(v['num_frames']) for k, v in train.items()} == {
      'clips/a0.mp4': 12, 'clips/a1.mp4': 20, 'clips/b0.mp4': 15, 'clips/c0.mp4': 10}
  multi = train['clips/a1.mp4']
  assert multi['label'] == 0 and multi['labels'].tolist() == [0, 2]
  assert len(multi['frames']) == 20 and multi['frames'][0][:2] == b'\xff\xd8'  # JPEG
  assert train['clips/b0.mp4']['labels'].tolist() == [1]
  _, val = _read(folder, 'validation')
  assert sorted(val) == ['val/b1.mp4', 'val/c1.mp4']
  # The per-video cache is removed after a successful build.
  assert not [d for d in os.listdir(os.path.dirname(folder)) if d.startswith('_prepare_work')]


def test_resume_after_an_interruption_decodes_only_the_rest(tmp_path, capsys, monkeypatch):
  manual = h.custom_videos_dir(str(tmp_path / 'manual'))
  data_dir = str(tmp_path / 'tfds')
  args = ['--dataset=custom', f'--manual_dir={manual}', f'--data_dir={data_dir}', '--fps=0',
          '--num_workers=1']
  real_decode = decode.decode_video
  decoded = []

  def interrupted_after_three(path, options):
    if len(decoded) == 3:
      raise KeyboardInterrupt  # Ctrl-C while the 4th video decodes
    decoded.append(path)
    return real_decode(path, options)

  monkeypatch.setattr(decode, 'decode_video', interrupted_after_three)
  with pytest.raises(KeyboardInterrupt):
    _run(capsys, *args)
  assert not os.path.exists(_dataset_dir(data_dir, 'arnet_custom', 'videos_fpsall_side256'))

  first_run = list(decoded)
  decoded.clear()
  monkeypatch.setattr(decode, 'decode_video',
                      lambda path, options: decoded.append(path) or real_decode(path, options))
  code, out = _run(capsys, *args)
  assert code == 0 and out.out.strip().endswith('prepared 6, skipped 0')
  assert len(decoded) == 3 and not set(decoded) & set(first_run)
  _, train = _read(_dataset_dir(data_dir, 'arnet_custom', 'videos_fpsall_side256'), 'train')
  assert len(train) == 4


def test_parallel_workers_give_the_same_dataset(tmp_path, capsys):
  manual = h.custom_videos_dir(str(tmp_path / 'manual'), bad=True)
  data_dir = str(tmp_path / 'tfds')
  code, out = _run(capsys, '--dataset=custom', f'--manual_dir={manual}',
                   f'--data_dir={data_dir}', '--num_workers=2', '--short_side=24')
  assert code == 0 and 'prepared 6, skipped 5' in out.out
  _, train = _read(_dataset_dir(data_dir, 'arnet_custom', 'videos_fps4_side24'), 'train')
  # 4 fps of 10-fps video: 12 frames (1.2 s) -> frames 0, 3, 5, 8, 10.
  assert int(train['clips/a0.mp4']['num_frames']) == 5


def test_a_video_listed_twice_is_kept_once(tmp_path, capsys):
  manual = h.custom_videos_dir(str(tmp_path / 'manual'))
  with open(os.path.join(manual, 'train.csv'), 'a') as f:
    f.write('clips/b0.mp4,bowling\n')
  code, out = _run(capsys, '--dataset=custom', f'--manual_dir={manual}',
                   f'--data_dir={tmp_path}/tfds', '--num_workers=1')
  assert code == 0
  assert out.out.strip().splitlines()[-1] == 'prepared 6, skipped 1 (duplicate: 1)'
  assert f'already listed at {manual}/train.csv:3' in out.out


def test_custom_frames_with_arnet_lists(tmp_path, capsys):
  manual = h.custom_frames_dir(str(tmp_path / 'manual'))
  data_dir = str(tmp_path / 'tfds')
  code, out = _run(capsys, '--dataset=custom', f'--manual_dir={manual}',
                   f'--data_dir={data_dir}', '--num_workers=1')
  assert code == 0
  assert out.out.strip().splitlines()[-1] == 'prepared 4, skipped 1 (too short: 1)'
  folder = _dataset_dir(data_dir, 'arnet_custom', 'frames_step1_side256')
  _, train = _read(folder, 'train')
  assert {k: int(v['num_frames']) for k, v in train.items()} == {'v_a': 7, 'v_b': 5, 'v_c': 4}
  assert train['v_b']['labels'].tolist() == [1, 2] and train['v_b']['label'] == 1
  report = report_lib.read_report(folder)
  assert report['warnings'] == [{'split': 'train', 'video_id': 'v_c', 'warning':
                                 'list says 6 frames, frame 5 is missing: kept the 4 before it'}]


def test_missing_manual_dir_names_the_expected_files(tmp_path, capsys):
  code, out = _run(capsys, '--dataset=activitynet', f'--manual_dir={tmp_path}/nowhere',
                   f'--data_dir={tmp_path}/tfds')
  assert code == 2
  assert 'does not exist' in out.err
  assert 'activity_net.v1-3.min.json' in out.err and 'actnet_train_split.txt' in out.err


def test_incomplete_manual_dir_says_what_is_missing(tmp_path, capsys):
  manual = tmp_path / 'manual'
  h.write_text(str(manual / 'classInd.txt'), 'a\nb\n')
  h.write_text(str(manual / 'train.csv'), 'x.mp4,a\n')
  code, out = _run(capsys, '--dataset=custom', f'--manual_dir={manual}',
                   f'--data_dir={tmp_path}/tfds')
  assert code == 2
  assert 'For --input_kind=videos it lacks: val.csv' in out.err
  assert 'For --input_kind=frames it lacks: train_split.txt, val_split.txt, frames/' in out.err


def test_unknown_label_names_the_file_and_line(tmp_path, capsys):
  manual = h.custom_videos_dir(str(tmp_path / 'manual'))
  with open(os.path.join(manual, 'val.csv'), 'a') as f:
    f.write('val/b1.mp4,juggling\n')
  code, out = _run(capsys, '--dataset=custom', f'--manual_dir={manual}',
                   f'--data_dir={tmp_path}/tfds', '--num_workers=1')
  assert code == 2
  assert f'{manual}/val.csv:3: label \'juggling\' is not in the class list' in out.err


def test_label_index_out_of_range_names_the_file_and_line(tmp_path, capsys):
  manual = h.custom_frames_dir(str(tmp_path / 'manual'))
  h.write_text(os.path.join(manual, 'val_split.txt'), 'v_d,6,1\nv_d,6,7\n')
  code, out = _run(capsys, '--dataset=custom', f'--manual_dir={manual}',
                   f'--data_dir={tmp_path}/tfds', '--num_workers=1')
  assert code == 2
  assert f'{manual}/val_split.txt:2: label \'7\' is not a class index in [0, 3)' in out.err


def test_activitynet_json_and_videos(tmp_path, capsys):
  manual = tmp_path / 'anet'
  database = {
      'abc': {'subset': 'training', 'annotations': [
          {'label': 'Surfing', 'segment': [0, 1]}, {'label': 'Archery', 'segment': [1, 2]}]},
      'def': {'subset': 'validation', 'annotations': [{'label': 'Surfing', 'segment': [0, 1]}]},
      'ghi': {'subset': 'training', 'annotations': [{'label': 'Archery', 'segment': [0, 1]}]},
      'tst': {'subset': 'testing', 'annotations': []},
  }
  h.write_text(str(manual / 'activity_net.v1-3.min.json'), json.dumps({'database': database}))
  h.write_video(str(manual / 'videos/v_abc.mp4'), 12)
  h.write_video(str(manual / 'videos/sub/def.mkv'.replace('.mkv', '.mp4')), 9)
  code, out = _run(capsys, '--dataset=activitynet', f'--manual_dir={manual}',
                   f'--data_dir={tmp_path}/tfds', '--fps=0', '--num_workers=1')
  assert code == 0
  assert out.out.strip().splitlines()[-1] == 'prepared 2, skipped 1 (missing file: 1)'
  builder, train = _read(_dataset_dir(f'{tmp_path}/tfds', 'arnet_activitynet',
                                      'videos_fpsall_side256'), 'train')
  assert builder.info.features['label'].names == ['Archery', 'Surfing']  # sorted by default
  assert train['abc']['labels'].tolist() == [0, 1] and train['abc']['label'] == 0


def test_fcvid_split_list_and_label_matrix(tmp_path, capsys):
  manual = tmp_path / 'fcvid'
  h.write_text(str(manual / 'FCVID_VideoName_TrainTestSplit.txt'),
               'cat/a.mp4 train\ncat/b.mp4 test\ndog/c.mp4 train\n')
  h.write_text(str(manual / 'FCVID_Label.txt'), '1 0 0\n1 0 1\n0 1 1\n')
  h.write_text(str(manual / 'classInd.txt'), 'cat\ndog\nfield\n')
  for name in ('cat/a.mp4', 'cat/b.mp4', 'dog/c.mp4'):
    h.write_video(str(manual / 'videos' / name), 30, fps=10)
  code, out = _run(capsys, '--dataset=fcvid', f'--manual_dir={manual}',
                   f'--data_dir={tmp_path}/tfds', '--num_workers=1')
  assert code == 0 and out.out.strip().endswith('prepared 3, skipped 0')
  folder = _dataset_dir(f'{tmp_path}/tfds', 'arnet_fcvid', 'videos_fps1_side256')
  _, train = _read(folder, 'train')
  assert int(train['cat/a.mp4']['num_frames']) == 3  # 3 s at FCVID's default 1 fps
  assert train['dog/c.mp4']['labels'].tolist() == [1, 2]
  _, val = _read(folder, 'validation')
  assert val['cat/b.mp4']['labels'].tolist() == [0, 2]


def test_mini_kinetics_csv_restricted_to_the_subset(tmp_path, capsys):
  manual = tmp_path / 'minik'
  header = 'label,youtube_id,time_start,time_end,split,is_cc\n'
  h.write_text(str(manual / 'kinetics_train.csv'),
               header + 'abseiling,aaaaaaaaaaa,10,20,train,0\n'
               '"air drumming, loud",bbbbbbbbbbb,0,10,train,0\n'
               'yoga,ccccccccccc,5,15,train,0\n')
  h.write_text(str(manual / 'kinetics_val.csv'), header + 'abseiling,ddddddddddd,1,11,val,0\n')
  h.write_text(str(manual / 'train_ytid_list.txt'), 'aaaaaaaaaaa\nbbbbbbbbbbb\n')
  h.write_text(str(manual / 'val_ytid_list.txt'), 'ddddddddddd\n')
  h.write_video(str(manual / 'videos/abseiling/aaaaaaaaaaa_000010_000020.mp4'), 10)
  h.write_video(str(manual / 'videos/bbbbbbbbbbb.mp4'), 10)
  h.write_video(str(manual / 'videos/ddddddddddd_000001_000011.mp4'), 10)
  code, out = _run(capsys, '--dataset=mini_kinetics', f'--manual_dir={manual}',
                   f'--data_dir={tmp_path}/tfds', '--num_workers=1')
  assert code == 0 and out.out.strip().endswith('prepared 3, skipped 0')
  builder, train = _read(_dataset_dir(f'{tmp_path}/tfds', 'arnet_mini_kinetics',
                                      'videos_fps8_side256'), 'train')
  assert builder.info.features['label'].names == ['abseiling', 'air drumming, loud']
  assert sorted(train) == ['aaaaaaaaaaa_000010_000020', 'bbbbbbbbbbb_000000_000010']
  assert int(train['aaaaaaaaaaa_000010_000020']['num_frames']) == 8  # 1 s at 8 fps


def test_demo_is_generated_without_manual_dir(tmp_path, capsys):
  code, out = _run(capsys, '--dataset=demo', '--demo_config=tiny', f'--data_dir={tmp_path}')
  assert code == 0 and out.out.strip().endswith('prepared 36, skipped 0')
  _, train = _read(_dataset_dir(str(tmp_path), 'arnet_demo', 'tiny'), 'train')
  example = next(iter(train.values()))
  assert int(example['num_frames']) == 16 and 3 <= example['evidence'].sum() <= 6
  assert np.asarray(example['evidence']).dtype == bool


@pytest.mark.parametrize('dataset, lists, template, classes', [
    ('activitynet', ('actnet_train_split.txt', 'actnet_val_split.txt'), 'image_{:05d}.jpg', 3),
    ('fcvid', ('fcvid_train_split.txt', 'fcvid_val_split.txt'), 'image_{:05d}.jpg', 3),
    ('mini_kinetics', ('mini_train_videofolder.txt', 'mini_val_videofolder.txt'), '{:05d}.jpg',
     200),
])
def test_original_arnet_frame_layouts(tmp_path, capsys, dataset, lists, template, classes):
  manual = tmp_path / dataset
  if classes == 3:
    h.write_text(str(manual / 'classInd.txt'), '\n'.join(h.CLASSES) + '\n')
  h.write_frames(str(manual / 'frames/x/one'), 6, template=template)
  h.write_frames(str(manual / 'frames/x/two'), 4, template=template)
  if dataset == 'mini_kinetics':  # 'path num_frames label', one label
    h.write_text(str(manual / lists[0]), 'x/one 6 2\n')
    h.write_text(str(manual / lists[1]), 'x/two 4 1\n')
  else:  # 'path,num_frames,label[,label...]'
    h.write_text(str(manual / lists[0]), 'x/one,6,2,0\n')
    h.write_text(str(manual / lists[1]), 'x/two,4,1\n')
  code, out = _run(capsys, f'--dataset={dataset}', f'--manual_dir={manual}',
                   f'--data_dir={tmp_path}/tfds', '--num_workers=1')
  assert code == 0 and out.out.strip().endswith('prepared 2, skipped 0')
  builder, train = _read(_dataset_dir(f'{tmp_path}/tfds', f'arnet_{dataset}',
                                      'frames_step1_side256'), 'train')
  assert builder.info.features['label'].num_classes == classes
  assert int(train['x/one']['num_frames']) == 6
  assert train['x/one']['labels'].tolist() == ([2] if dataset == 'mini_kinetics' else [0, 2])


def test_builders_are_registered_with_tfds(tmp_path):
  import arnet_jax.data  # pylint: disable=unused-import,g-import-not-at-top  (registers them)
  for name, expected_file in (('arnet_activitynet', 'activity_net.v1-3.min.json'),
                              ('arnet_fcvid', 'FCVID_Label.txt'),
                              ('arnet_mini_kinetics', 'mini_train_videofolder.txt'),
                              ('arnet_custom', 'train.csv')):
    builder = tfds.builder(name, data_dir=str(tmp_path))
    assert builder.builder_config.name.startswith('videos_fps')
    assert expected_file in builder.MANUAL_DOWNLOAD_INSTRUCTIONS
  assert tfds.builder('arnet_demo/tiny', data_dir=str(tmp_path)).builder_config.num_train == 24


def test_manual_dir_is_required_except_for_the_demo(tmp_path, capsys):
  code, out = _run(capsys, '--dataset=custom', f'--data_dir={tmp_path}')
  assert code == 2
  assert '--manual_dir is required for custom' in out.err and 'classInd.txt' in out.err
