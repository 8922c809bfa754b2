"""The tf.data input pipeline: prepared TFDS video datasets -> per-process numpy batches.

Shapes: B = per-process batch size, T = data.num_frames, S = data.image_size,
C = number of classes, N = frames stored for a video.

Each process reads a disjoint contiguous range of the split (sub-split
'split[start:end]'). Frames stay JPEG bytes until TSN sampling has picked the
T frames of a clip (`tfds.decode.SkipDecoding`); training then decodes only
the multi-scale crop window of each of them.

Batches are dicts of numpy arrays:
  video    [B, T, S, S, 3] float32 or bfloat16, ImageNet-normalised
  label    [B] int32, the first label
  labels   [B, C] float32, multi-hot of all labels
  mask     [B] float32, 1 for real examples, 0 for evaluation padding
  index    [B] int32, position of the example in the split (-1 for padding);
           `split_video_ids` maps it to video ids
  evidence [B, T] bool, demo only: the sampled frame shows the class glyph
  glyph_box [B, T, 4] float32, demo evaluation only: the class glyph's box (top, left, bottom,
           right) in pixels of `video`'s frames (the stored box through the eval resize and
           centre crop, `transforms.eval_boxes`), (0, 0, 0, 0) on frames without the glyph and
           on padding. Training batches do not carry it: their crops, resizes and flips would
           have to move it too, and nothing trains on it.
"""

from __future__ import annotations

import math
import os
from typing import Iterator

import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from arnet_jax import errors
from arnet_jax.data import sampling
from arnet_jax.data import transforms

BUILDER_NAMES = {
    'activitynet': 'arnet_activitynet',
    'fcvid': 'arnet_fcvid',
    'mini_kinetics': 'arnet_mini_kinetics',
    'custom': 'arnet_custom',
    'demo': 'arnet_demo',
}

# Host-side input pipeline only: keep TensorFlow off any accelerator (JAX owns it).
try:
  tf.config.set_visible_devices([], 'GPU')
except RuntimeError:  # TensorFlow already initialised its devices; nothing to do then
  pass


def _data_root(data_config: ml_collections.ConfigDict) -> str:
  return os.path.expanduser(data_config.data_dir or tfds.core.constants.DATA_DIR)


def prepared_configs(data_config: ml_collections.ConfigDict) -> dict[str, str]:
  """{config name: dataset folder} of the prepared copies of data.name in data_dir.

  The folder is the newest version's (the one holding dataset_info.json).
  """
  name = BUILDER_NAMES.get(data_config.name)
  if name is None:
    raise errors.UserError(f'Unknown data.name {data_config.name!r}; expected one of '
                           f'{sorted(BUILDER_NAMES)}.')
  root = os.path.join(_data_root(data_config), name)
  found = {}
  if os.path.isdir(root):
    for config in sorted(os.listdir(root)):
      versions = [v for v in os.listdir(os.path.join(root, config))
                  if os.path.exists(os.path.join(root, config, v, 'dataset_info.json'))]
      if versions:
        newest = max(versions, key=lambda v: tuple(int(x) for x in v.split('.')))
        found[config] = os.path.join(root, config, newest)
  return found


def get_builder(data_config: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
  """The prepared dataset named by data.name / data.builder_config in data.data_dir.

  Read from its folder (tfds.builder_from_directory), so a copy prepared with
  any settings loads without knowing them.
  """
  found = prepared_configs(data_config)
  wanted = data_config.get('builder_config')
  command = (f'python -m arnet_jax.data.prepare --dataset={data_config.name} '
             + ('' if data_config.name == 'demo' else '--manual_dir=DIR ')
             + f'--data_dir={_data_root(data_config)}')
  if wanted:
    if wanted not in found:
      raise errors.PathNotFoundError(
          f'{BUILDER_NAMES[data_config.name]}/{wanted} is not prepared in '
          f'{_data_root(data_config)} (prepared: {sorted(found) or "none"}). Run: {command}')
    return tfds.builder_from_directory(found[wanted])
  if not found:
    raise errors.PathNotFoundError(
        f'No prepared {BUILDER_NAMES[data_config.name]} in {_data_root(data_config)}. '
        f'Run: {command}')
  if data_config.name == 'demo' and 'default' in found:
    return tfds.builder_from_directory(found['default'])
  if len(found) > 1:
    raise errors.UserError(
        f'Several prepared copies of {BUILDER_NAMES[data_config.name]} in '
        f'{_data_root(data_config)}: {sorted(found)}. Set config.data.builder_config to one.')
  return tfds.builder_from_directory(next(iter(found.values())))


def process_range(num_examples: int, process_index: int, process_count: int) -> tuple[int, int]:
  """The contiguous [start, end) of the split that `process_index` reads."""
  return (num_examples * process_index // process_count,
          num_examples * (process_index + 1) // process_count)


def steps_per_epoch(num_examples: int, global_batch_size: int) -> int:
  """Training steps that see each example about once (the last partial batch is dropped)."""
  return max(1, num_examples // global_batch_size)


def eval_steps(num_examples: int, batch_size: int, process_count: int) -> int:
  """Evaluation batches each process yields (the same on all processes)."""
  return max(1, math.ceil(math.ceil(num_examples / process_count) / batch_size))


def split_video_ids(data_config: ml_collections.ConfigDict, split: str) -> list[str]:
  """video_id of every example of `split`, in `index` order."""
  builder = get_builder(data_config)
  ds = builder.as_dataset(split=split, shuffle_files=False,
                          decoders={'frames': tfds.decode.SkipDecoding()},
                          read_config=tfds.ReadConfig(add_tfds_id=True))
  ds = ds.map(lambda ex: (ex['tfds_id'], ex['video_id']))
  offsets = _shard_offsets(builder, split)
  ids = {}
  for tfds_id, video_id in ds.as_numpy_iterator():
    ids[int(_absolute_index(tf.constant(tfds_id), offsets))] = video_id.decode()
  return [ids[i] for i in range(len(ids))]


def _shard_offsets(builder: tfds.core.DatasetBuilder, split: str) -> tf.Tensor:
  lengths = builder.info.splits[split].shard_lengths
  return tf.constant(np.concatenate([[0], np.cumsum(lengths)[:-1]]), tf.int64)


def _absolute_index(tfds_id: tf.Tensor, offsets: tf.Tensor) -> tf.Tensor:
  """'<name>-<split>.<format>-<shard>-of-<count>__<position>' -> position in the split.

  Independent of the reading order (shuffled files, interleaving), unlike a
  counter.
  """
  shard = tf.strings.to_number(
      tf.strings.regex_replace(tfds_id, r'^.*-(\d+)-of-\d+__\d+$', r'\1'), tf.int64)
  position = tf.strings.to_number(
      tf.strings.regex_replace(tfds_id, r'^.*__(\d+)$', r'\1'), tf.int64)
  return tf.cast(tf.gather(offsets, shard) + position, tf.int32)


def _check_batch_size(batch_size: int) -> None:
  from arnet_jax import parallel  # pylint: disable=g-import-not-at-top  (JAX, for the devices)
  parallel.check_process_batch_size(batch_size)


def with_dataset_classes(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`config` with `model.num_classes` read from the prepared dataset where it is unset; a
  config that sets it to another number than the dataset has is an error naming both."""
  info = get_builder(config.data).info
  classes = len(info.features['label'].names)
  given = config.model.num_classes
  if given is not None and given != classes:
    raise errors.UserError(
        f'model.num_classes={given} but the prepared dataset {info.name} '
        f'({config.data.data_dir or "the TFDS default data_dir"}) has {classes} classes: set '
        f'model.num_classes={classes} (or None, to read it from the dataset), or point '
        'data.data_dir/builder_config at the dataset you meant.')
  config = config.copy_and_resolve_references()
  config.model.num_classes = classes
  return config


def create_split(data_config: ml_collections.ConfigDict, split: str, *, batch_size: int,
                 train: bool, num_classes: int, seed: int = 0,
                 process_index: int | None = None, process_count: int | None = None,
                 num_epochs: int | None = None, start_batch: int = 0
                 ) -> tuple[Iterator[dict[str, np.ndarray]], int]:
  """Builds the input iterator of one split.

  Args:
    data_config: the `config.data` group.
    split: e.g. 'train', 'validation'.
    batch_size: B, the PER-PROCESS batch size (a multiple of the local devices).
    train: True: shuffled, repeated, augmented, full batches only. False:
      every example exactly once over all processes, in a fixed order, the
      last batch padded with mask=0 rows so all processes yield
      `eval_steps(...)` batches.
    num_classes: C; must match the dataset's class list.
    seed: shuffling, sampling and augmentation seed (deterministic given it).
    process_index, process_count: this host and the number of hosts (default:
      jax.process_index(), jax.process_count()).
    num_epochs: train: None = forever; eval: passes over the split (None = 1).
    start_batch: train: begin with this batch of the (deterministic) stream, so a resumed run
      sees exactly the batches an uninterrupted one would. The skipped clips are only read,
      not decoded.

  Returns:
    (iterator over batch dicts (see the module docstring), examples in the whole split).
  """
  if process_index is None or process_count is None:
    import jax  # pylint: disable=g-import-not-at-top
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  _check_batch_size(batch_size)
  builder = get_builder(data_config)
  info = builder.info
  if split not in info.splits:
    raise errors.UserError(f'{info.name} has no split {split!r}; it has {sorted(info.splits)}.')
  names = info.features['label'].names
  if len(names) != num_classes:
    raise errors.UserError(f'{info.name} has {len(names)} classes but num_classes={num_classes}.')
  num_examples = info.splits[split].num_examples
  start, end = process_range(num_examples, process_index, process_count)
  if train and end - start < batch_size:
    raise ValueError(f'Process {process_index} reads {end - start} training examples of '
                     f'{split!r}, fewer than its batch size {batch_size}.')
  has_evidence = 'evidence' in info.features
  has_glyph_box = 'glyph_box' in info.features and not train

  ds = builder.as_dataset(
      split=f'{split}[{start}:{end}]', shuffle_files=train,
      decoders={'frames': tfds.decode.SkipDecoding()},
      read_config=tfds.ReadConfig(add_tfds_id=True, shuffle_seed=seed + 7919 * process_index,
                                  skip_prefetch=True, try_autocache=False))
  offsets = _shard_offsets(builder, split)
  clip = _ClipMaker(data_config, num_classes, has_evidence, offsets, train,
                    has_glyph_box=has_glyph_box)
  parallel = (tf.data.AUTOTUNE if data_config.num_parallel_calls in (None, -1)
              else data_config.num_parallel_calls)
  if train:
    ds = ds.repeat(num_epochs)
    # Per-clip seeds from a counter: reproducible whatever the thread timing. Processes count
    # apart (n * process_count + process_index), so hosts do not repeat each other's draws.
    counter = tf.data.Dataset.counter(start=process_index, step=process_count)
    ds = tf.data.Dataset.zip((ds, counter)).map(
        lambda ex, n: clip.select(ex, tf.stack([tf.cast(seed, tf.int64), n])),
        num_parallel_calls=parallel)
    ds = ds.shuffle(data_config.shuffle_buffer, seed=seed + 7919 * process_index)
    ds = ds.skip(start_batch * batch_size)
    ds = ds.map(clip.decode_train, num_parallel_calls=parallel)
    ds = ds.batch(batch_size, drop_remainder=True)
  else:
    ds = ds.map(lambda ex: clip.select(ex, None), num_parallel_calls=parallel)
    ds = ds.map(clip.decode_eval, num_parallel_calls=parallel)
    pad = eval_steps(num_examples, batch_size, process_count) * batch_size - (end - start)
    ds = ds.concatenate(tf.data.Dataset.from_tensors(clip.padding()).repeat(pad))
    ds = ds.batch(batch_size, drop_remainder=True)
    ds = ds.repeat(num_epochs or 1)
  ds = ds.prefetch(data_config.prefetch)
  options = tf.data.Options()
  options.deterministic = True
  ds = ds.with_options(options)
  return ds.as_numpy_iterator(), num_examples


class _ClipMaker:
  """The per-example TF functions: pick T frames, decode, transform, build labels."""

  def __init__(self, cfg: ml_collections.ConfigDict, num_classes: int, has_evidence: bool,
               offsets: tf.Tensor, train: bool, has_glyph_box: bool = False):
    if cfg.sampling not in sampling.TRAIN_RULES:
      raise ValueError(f'data.sampling must be one of {sampling.TRAIN_RULES}, '
                       f'got {cfg.sampling!r}.')
    if cfg.dtype not in ('float32', 'bfloat16'):
      raise ValueError(f"data.dtype must be 'float32' or 'bfloat16', got {cfg.dtype!r}.")
    self.t = cfg.num_frames
    self.size = cfg.image_size
    self.scales = tuple(cfg.scales)
    self.max_distort = cfg.get('max_distort', 1)
    self.flip = cfg.flip
    self.rule = cfg.sampling
    self.dtype = tf.bfloat16 if cfg.dtype == 'bfloat16' else tf.float32
    self.num_classes = num_classes
    self.has_evidence = has_evidence
    self.has_glyph_box = has_glyph_box  # evaluation only (see the module docstring)
    self.offsets = offsets
    self.train = train

  def select(self, ex: dict, seed: tf.Tensor | None) -> dict:
    """Example -> the clip's T JPEG strings, labels and index (seed None = eval)."""
    n = tf.shape(ex['frames'])[0]
    if seed is None:
      idx = sampling.eval_indices_tf(n, self.t)
    else:
      u = tf.random.stateless_uniform([self.t], seed, dtype=tf.float64)
      idx = sampling.train_indices_tf(n, self.t, u, self.rule)
    out = {
        'jpegs': tf.gather(ex['frames'], idx),
        'label': tf.cast(ex['label'], tf.int32),
        'labels': tf.reduce_max(tf.one_hot(ex['labels'], self.num_classes), axis=0),
        'mask': tf.constant(1.0, tf.float32),
        'index': _absolute_index(ex['tfds_id'], self.offsets),
    }
    if seed is not None:
      out['seed'] = tf.random.experimental.stateless_fold_in(seed, 1)
    if self.has_evidence:
      out['evidence'] = tf.gather(ex['evidence'], idx)
    if self.has_glyph_box:
      out['glyph_box'] = tf.gather(ex['glyph_box'], idx)  # stored-frame pixels until decoded
    return out

  def _finish(self, clip: dict, video: tf.Tensor) -> dict:
    out = {k: v for k, v in clip.items() if k not in ('jpegs', 'seed')}
    video = tf.ensure_shape(video, [self.t, self.size, self.size, 3])
    out['video'] = tf.cast(transforms.normalize(video), self.dtype)
    return out

  def decode_train(self, clip: dict) -> dict:
    jpegs, seed = clip['jpegs'], clip['seed']
    shape = tf.io.extract_jpeg_shape(jpegs[0])
    top, left, crop_h, crop_w = transforms.multi_scale_crop_box(
        shape[0], shape[1], self.size, self.scales, transforms.train_draws(seed)[:2],
        self.max_distort)
    window = tf.stack([top, left, crop_h, crop_w])
    # All frames of a video share one size, so one window fits all of them.
    crop = tf.map_fn(lambda b: tf.io.decode_and_crop_jpeg(b, window, channels=3), jpegs,
                     fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))
    return self._finish(clip, transforms.finish_train_view(crop, seed, self.size, self.flip))

  def decode_eval(self, clip: dict) -> dict:
    frames = tf.map_fn(lambda b: tf.io.decode_jpeg(b, channels=3), clip['jpegs'],
                       fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))
    if self.has_glyph_box:
      shape = tf.shape(frames)
      clip = dict(clip, glyph_box=tf.ensure_shape(
          transforms.eval_boxes(clip['glyph_box'], shape[1], shape[2], self.size), [self.t, 4]))
    return self._finish(clip, transforms.eval_view(frames, self.size))

  def padding(self) -> dict:
    """A mask=0 example with the shapes and dtypes of a real one."""
    out = {
        'label': tf.constant(0, tf.int32),
        'labels': tf.zeros([self.num_classes], tf.float32),
        'mask': tf.constant(0.0, tf.float32),
        'index': tf.constant(-1, tf.int32),
        'video': tf.zeros([self.t, self.size, self.size, 3], self.dtype),
    }
    if self.has_evidence:
      out['evidence'] = tf.zeros([self.t], tf.bool)
    if self.has_glyph_box:
      out['glyph_box'] = tf.zeros([self.t, 4], tf.float32)
    return out
