"""`create_split`: prepared dataset -> per-process numpy batches."""

import os

import ml_dtypes
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import data_helpers as h
from arnet_jax import defaults
from arnet_jax.data import demo
from arnet_jax.data import demo_video
from arnet_jax.data import pipeline
from arnet_jax.data import prepare
from arnet_jax.data import transforms

NUM_CLASSES = 4  # the 'tiny' demo


@pytest.fixture(scope='module')
def demo_config(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp('tfds'))
  demo.ensure_demo_dataset(data_dir, 'tiny')
  cfg = defaults.data_config('demo')
  cfg.data_dir = data_dir
  cfg.builder_config = 'tiny'
  return cfg


def _all(iterator):
  return list(iterator)


def test_train_batches_have_the_documented_shapes_and_ranges(demo_config):
  it, n = pipeline.create_split(demo_config, 'train', batch_size=4, train=True,
                                num_classes=NUM_CLASSES)
  assert n == 24
  batch = next(it)
  assert batch['video'].shape == (4, 16, 64, 64, 3) and batch['video'].dtype == np.float32
  low = (0 - transforms.IMAGENET_MEAN) / transforms.IMAGENET_STD
  high = (1 - transforms.IMAGENET_MEAN) / transforms.IMAGENET_STD
  assert (batch['video'] >= low.min() - 1e-5).all() and (batch['video'] <= high.max() + 1e-5).all()
  assert batch['label'].dtype == np.int32 and batch['index'].dtype == np.int32
  np.testing.assert_array_equal(batch['labels'], np.eye(NUM_CLASSES)[batch['label']])
  np.testing.assert_array_equal(batch['mask'], np.ones(4, np.float32))
  assert batch['evidence'].shape == (4, 16) and batch['evidence'].dtype == bool
  # A tiny demo video has 16 frames = T, so the clip is the whole video and
  # shows its 3-6 evidence frames.
  assert ((batch['evidence'].sum(1) >= 3) & (batch['evidence'].sum(1) <= 6)).all()
  assert 'glyph_box' not in batch  # evaluation batches only


def test_train_labels_match_the_stored_examples(demo_config):
  ids = pipeline.split_video_ids(demo_config, 'train')
  it, _ = pipeline.create_split(demo_config, 'train', batch_size=4, train=True,
                                num_classes=NUM_CLASSES, num_epochs=1)
  seen = []
  for batch in it:
    for index, label in zip(batch['index'], batch['label']):
      # Demo ids end in the class name: 'train/00005_glyph_01'.
      assert ids[index].endswith(f'glyph_{label:02d}')
      seen.append(int(index))
  assert sorted(seen) == list(range(24))  # one epoch = each example once


def test_train_is_deterministic_given_the_seed(demo_config):
  def first(seed):
    it, _ = pipeline.create_split(demo_config, 'train', batch_size=4, train=True,
                                  num_classes=NUM_CLASSES, seed=seed)
    return next(it)
  a, b, c = first(0), first(0), first(1)
  np.testing.assert_array_equal(a['video'], b['video'])
  np.testing.assert_array_equal(a['index'], b['index'])
  assert not np.array_equal(a['index'], c['index'])


def test_eval_sees_every_example_once_across_processes_with_padding(demo_config):
  # 12 validation videos, 3 processes, batch 3: 4 each -> 2 batches each, 2 padding rows.
  seen = []
  for p in range(3):
    batches = _all(pipeline.create_split(demo_config, 'validation', batch_size=3, train=False,
                                         num_classes=NUM_CLASSES, process_index=p,
                                         process_count=3)[0])
    assert len(batches) == pipeline.eval_steps(12, 3, 3) == 2
    mask = np.concatenate([b['mask'] for b in batches])
    index = np.concatenate([b['index'] for b in batches])
    np.testing.assert_array_equal(mask, [1, 1, 1, 1, 0, 0])
    np.testing.assert_array_equal(index[mask == 0], [-1, -1])
    assert (np.concatenate([b['video'] for b in batches])[mask == 0] == 0).all()
    seen += index[mask == 1].tolist()
  assert sorted(seen) == list(range(12))


def test_uneven_process_shards_still_yield_equal_batch_counts(demo_config):
  # 12 examples over 5 processes: 2, 2, 3, 2, 3 (contiguous ranges); batch 2 -> 2 batches each.
  counts = []
  for p in range(5):
    batches = _all(pipeline.create_split(demo_config, 'validation', batch_size=2, train=False,
                                         num_classes=NUM_CLASSES, process_index=p,
                                         process_count=5)[0])
    assert len(batches) == 2
    counts.append(int(sum(b['mask'].sum() for b in batches)))
  assert counts == [2, 2, 3, 2, 3]


def test_eval_is_deterministic_and_uses_centre_crops(demo_config):
  first = _all(pipeline.create_split(demo_config, 'validation', batch_size=4, train=False,
                                     num_classes=NUM_CLASSES)[0])
  again = _all(pipeline.create_split(demo_config, 'validation', batch_size=4, train=False,
                                     num_classes=NUM_CLASSES)[0])
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a['video'], b['video'])
  # The demo stores 73 x 73 frames: eval is the plain centre crop of the stored pixels.
  builder = pipeline.get_builder(demo_config)
  stored = next(iter(builder.as_dataset(split='validation[0:1]').as_numpy_iterator()))
  row = list(first[0]['index']).index(0)
  expected = (stored['frames'][:, 4:68, 4:68] / 255.0 - transforms.IMAGENET_MEAN) \
      / transforms.IMAGENET_STD
  np.testing.assert_allclose(first[0]['video'][row], expected, atol=1e-5)
  np.testing.assert_array_equal(first[0]['evidence'][row], stored['evidence'])


def test_eval_glyph_boxes_frame_the_glyph_in_the_models_frames(demo_config):
  # Batches of 5: the third holds 2 videos and 3 padding rows.
  batches = _all(pipeline.create_split(demo_config, 'validation', batch_size=5, train=False,
                                       num_classes=NUM_CLASSES)[0])
  box = np.concatenate([b['glyph_box'] for b in batches])
  assert box.shape == (15, 16, 4) and box.dtype == np.float32
  mask, index = (np.concatenate([b[k] for b in batches]) for k in ('mask', 'index'))
  video, evidence = (np.concatenate([b[k] for b in batches]) for k in ('video', 'evidence'))
  assert (box[mask == 0] == 0).all()
  stored = list(pipeline.get_builder(demo_config).as_dataset(
      split='validation', shuffle_files=False).as_numpy_iterator())
  offset = 4  # the eval centre crop of the stored 73 x 73 frames at 64
  dark = lambda pixels: (pixels.max(-1) < 60).sum()
  for row in np.flatnonzero(mask):
    example = stored[index[row]]
    np.testing.assert_array_equal(box[row][~evidence[row]], 0)
    seen = transforms.denormalize(video[row]).astype(int)
    for t in np.flatnonzero(evidence[row]):
      np.testing.assert_array_equal(box[row, t], example['glyph_box'][t] - offset)
      top, left, bottom, right = box[row, t].astype(int)
      assert (bottom - top, right - left) == (16, 16)
      glyph = seen[t, top:bottom, left:right]
      np.testing.assert_allclose(
          glyph, example['frames'][t, top + offset:bottom + offset, left + offset:right + offset],
          atol=1)
      # The glyph inks half of the box and nothing of the pad's margin around it.
      assert dark(glyph) == demo_video.GLYPH_INK
      assert dark(seen[t, top - 4:bottom + 4, left - 4:right + 4]) == demo_video.GLYPH_INK


def test_train_decodes_only_the_crop_window_with_the_same_pixels(demo_config):
  builder = pipeline.get_builder(demo_config)
  example = next(builder.as_dataset(
      split='train[0:1]', decoders={'frames': tfds.decode.SkipDecoding()}).as_numpy_iterator())
  cfg = demo_config.copy_and_resolve_references()
  cfg.scales = (1.0, 0.875, 0.75, 0.66)  # the paper's, with resampling
  maker = pipeline._ClipMaker(cfg, NUM_CLASSES, True, offsets=None, train=True)
  jpegs = tf.constant(example['frames'])
  for s in range(6):
    seed = tf.constant([s, 7], tf.int64)
    out = maker.decode_train({'jpegs': jpegs, 'seed': seed})['video'].numpy()
    decoded = tf.stack([tf.io.decode_jpeg(j, channels=3) for j in example['frames']])
    expected = transforms.normalize(transforms.train_view(
        decoded, seed, 64, tuple(cfg.scales), flip=True)).numpy()
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_bfloat16_output(demo_config):
  cfg = demo_config.copy_and_resolve_references()
  cfg.dtype = 'bfloat16'
  batch = next(pipeline.create_split(cfg, 'validation', batch_size=4, train=False,
                                     num_classes=NUM_CLASSES)[0])
  assert batch['video'].dtype == ml_dtypes.bfloat16
  assert batch['labels'].dtype == np.float32


def test_multi_label_videos_give_multi_hot_rows(tmp_path):
  manual = h.custom_frames_dir(str(tmp_path / 'manual'))
  prepare.main(['--dataset=custom', f'--manual_dir={manual}', f'--data_dir={tmp_path}/tfds',
                '--num_workers=1', '--no_progress'])
  cfg = defaults.data_config('custom')
  cfg.data_dir = f'{tmp_path}/tfds'
  cfg.image_size = 32
  cfg.num_frames = 4
  batches = _all(pipeline.create_split(cfg, 'train', batch_size=3, train=False, num_classes=3)[0])
  ids = pipeline.split_video_ids(cfg, 'train')
  rows = {ids[i]: (lab, hot) for b in batches
          for i, lab, hot in zip(b['index'], b['label'], b['labels'])}
  assert rows['v_b'][0] == 1 and rows['v_b'][1].tolist() == [0, 1, 1]
  assert rows['v_a'][1].tolist() == [1, 0, 0]
  # 64 x 48 frames: eval resizes the short side to round(32 * 256 / 224) = 37, crops 32.
  assert batches[0]['video'].shape == (3, 4, 32, 32, 3)
  # v_c has 4 frames for T = 4: the clip is frames 0..3, whose grey levels differ.
  video = batches[0]['video'][list(batches[0]['index']).index(ids.index('v_c'))]
  greys = transforms.denormalize(video)[:, 16, 16, 0].astype(int)
  np.testing.assert_allclose(greys, [h.frame_value(i) for i in range(4)], atol=4)


def test_errors_are_explicit(demo_config, tmp_path):
  with pytest.raises(ValueError, match='has 4 classes but num_classes=10'):
    pipeline.create_split(demo_config, 'train', batch_size=4, train=True, num_classes=10)
  with pytest.raises(ValueError, match="no split 'test'"):
    pipeline.create_split(demo_config, 'test', batch_size=4, train=False, num_classes=4)
  with pytest.raises(ValueError, match='fewer than its batch size 32'):
    pipeline.create_split(demo_config, 'train', batch_size=32, train=True, num_classes=4)
  missing = defaults.data_config('fcvid')
  missing.data_dir = str(tmp_path)
  with pytest.raises(FileNotFoundError, match='python -m arnet_jax.data.prepare --dataset=fcvid'):
    pipeline.get_builder(missing)


def test_batch_size_must_divide_over_local_devices(demo_config, monkeypatch):
  import jax
  monkeypatch.setattr(jax, 'local_device_count', lambda: 8)
  with pytest.raises(ValueError, match='multiple of the 8 local devices'):
    pipeline.create_split(demo_config, 'train', batch_size=12, train=True, num_classes=4)
