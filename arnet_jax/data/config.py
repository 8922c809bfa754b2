"""The `config.data` group of every experiment config."""

from __future__ import annotations

import ml_collections

DATASET_NAMES = ('activitynet', 'fcvid', 'mini_kinetics', 'custom', 'demo')


def get_config(name: str = 'activitynet') -> ml_collections.ConfigDict:
  """Data settings with the paper's values; the demo's differ where noted."""
  c = ml_collections.ConfigDict()
  c.name = name  # activitynet | fcvid | mini_kinetics | custom | demo
  c.data_dir = None  # TFDS data_dir (None = TFDS default, ~/tensorflow_datasets)
  # Which prepared copy (e.g. 'videos_fps2_side256'); None = the only one in data_dir.
  c.builder_config = ml_collections.config_dict.placeholder(str)
  c.train_split = 'train'
  c.eval_split = 'validation'
  c.num_frames = 16  # T
  # Top-resolution crop side; eval resizes the short side to round(image_size*256/224).
  c.image_size = 64 if name == 'demo' else 224
  # Multi-scale crop, relative to the short side. The demo's evidence is 1-pixel
  # detail that resampling blurs: it crops 64 x 64 out of its 73 x 73 frames
  # (int(73 * .875) = 63 snaps to 64), at the 13 TSM positions, unresampled.
  c.scales = (0.875,) if name == 'demo' else (1.0, 0.875, 0.75, 0.66)
  c.max_distort = 1  # crop width/height scale indices differ by at most this (TSM)
  c.flip = True  # random horizontal flip (train)
  c.sampling = 'segment'  # train TSN rule: 'segment' or 'original' (see data/sampling.py)
  c.dtype = 'float32'  # or 'bfloat16' for `video`
  c.shuffle_buffer = 1024  # clips (T JPEGs each, not whole videos)
  c.prefetch = 2  # batches prepared ahead
  c.num_parallel_calls = -1  # decode/augment threads; -1 = tf.data AUTOTUNE
  return c
