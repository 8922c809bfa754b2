"""The built-in demo dataset (TFDS builder `arnet_demo`): no download, generated from a seed.

Videos of 16 frames (73 x 73) where the class is a small glyph shown in 3-6
frames, readable at 64 pixels but not at 32 or 24, while its pad (whose shape
tells the class parity) is visible at 24 (see `demo_video` for the design,
`demo_properties` for the measured consequences). Frames are JPEG quality 95
without chroma subsampling, which keeps the glyphs' 1-pixel textures intact. The
demo's data config crops at scale 0.875 only (a 64 x 64 crop, never resampled;
see `arnet_jax.defaults.data_config('demo')`).

Configs: 'default' (10 classes, 600 train / 200 validation videos) and 'tiny'
(4 classes, 24 / 12, for tests and smoke runs).

Features: those of the other builders (frames, label, labels, num_frames,
video_id) plus `evidence`, bool [N]: which frames show the class glyph, and
`glyph_box`, int32 [N, 4]: the class glyph's 16 x 16 box (top, left, bottom,
right; stored-frame pixels, bottom and right exclusive) on those frames,
(0, 0, 0, 0) on the others.
"""

from __future__ import annotations

import dataclasses
import io
import os

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from arnet_jax.data import demo_video
from arnet_jax.data import report as report_lib


@dataclasses.dataclass(eq=False)
class DemoConfig(tfds.core.BuilderConfig):
  """Size and seed of a generated demo dataset."""

  seed: int = 0
  num_classes: int = 10
  num_train: int = 600
  num_validation: int = 200
  jpeg_quality: int = 95


class_names = demo_video.class_names


def encode_frame(frame: np.ndarray, quality: int) -> bytes:
  """uint8 [H, W, 3] -> JPEG without chroma subsampling (keeps 1-pixel detail)."""
  buf = io.BytesIO()
  Image.fromarray(frame).save(buf, format='JPEG', quality=quality, subsampling=0)
  return buf.getvalue()


class ArnetDemo(tfds.core.GeneratorBasedBuilder):
  """Synthetic videos whose class evidence is small, sparse in time and fine-grained."""

  VERSION = tfds.core.Version('1.3.0')
  RELEASE_NOTES = {'1.0.0': 'First release.',
                   '1.1.0': 'Glyphs of 1-pixel textures in four quadrants (learned faster).',
                   '1.2.0': 'Glyph quadrants of 8 pixels, not 4 (learned faster still); the '
                            'pad shape (square or wide) tells the class parity at any '
                            'resolution.',
                   '1.3.0': 'The feature glyph_box: where the class glyph is on each frame '
                            '(frames, labels and evidence are those of 1.2.0).'}
  BUILDER_CONFIGS = [
      DemoConfig(name='default', description='10 classes, 600 train / 200 validation videos'),
      DemoConfig(name='tiny', num_classes=4, num_train=24, num_validation=12,
                 description='4 classes, 24 train / 12 validation videos (tests)'),
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    config: DemoConfig = self.builder_config
    names = class_names(config.num_classes)
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            'frames': tfds.features.Sequence(
                tfds.features.Image(shape=(None, None, 3), encoding_format='jpeg')),
            'label': tfds.features.ClassLabel(names=names),
            'labels': tfds.features.Sequence(tfds.features.ClassLabel(names=names)),
            'num_frames': tfds.features.Scalar(dtype=np.int32),
            'video_id': tfds.features.Text(),
            'evidence': tfds.features.Sequence(tfds.features.Scalar(dtype=np.bool_)),
            'glyph_box': tfds.features.Tensor(shape=(None, 4), dtype=np.int32),
        }),
        supervised_keys=None,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    config: DemoConfig = self.builder_config
    return {
        'train': self._generate_examples(0, config.num_train),
        'validation': self._generate_examples(1, config.num_validation),
    }

  def _generate_examples(self, split_id: int, count: int):
    config: DemoConfig = self.builder_config
    class_glyphs, decoys = demo_video.glyph_bank(config.num_classes)
    names = class_names(config.num_classes)
    for i in range(count):
      label = i % config.num_classes  # balanced classes
      rng = np.random.default_rng([config.seed, split_id, i])
      frames, evidence, glyph_box = demo_video.render_video(rng, label, class_glyphs, decoys)
      video_id = f'{("train", "validation")[split_id]}/{i:05d}_{names[label]}'
      yield video_id, {
          'frames': [encode_frame(f, config.jpeg_quality) for f in frames],
          'label': label,
          'labels': [label],
          'num_frames': len(frames),
          'video_id': video_id,
          'evidence': evidence.tolist(),
          'glyph_box': glyph_box,
      }

  def download_and_prepare(self, *args, **kwargs):
    """TFDS download_and_prepare, then the (trivial) report next to the dataset."""
    existed = self.is_prepared()
    super().download_and_prepare(*args, **kwargs)
    if not existed:
      config: DemoConfig = self.builder_config
      report = report_lib.PrepareReport(self.name, config.name, f'generated (seed {config.seed})',
                                        {'train': config.num_train,
                                         'validation': config.num_validation})
      report.write(self.data_path)

  def is_prepared(self) -> bool:
    return os.path.exists(os.path.join(self.data_path, 'dataset_info.json'))


def ensure_demo_dataset(data_dir: str | None, config: str = 'default') -> ArnetDemo:
  """Builds the demo dataset in `data_dir` unless it is there already; returns its builder.

  On several hosts sharing data_dir, call it on one process first (the others
  then only read): concurrent builds of the same directory race.
  """
  builder = ArnetDemo(data_dir=data_dir, config=config)
  if not builder.is_prepared():
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    print(report_lib.read_report(builder.data_path)['summary'])
  return builder


def ensure_demo_dataset_on_all_processes(data_dir: str | None, config: str = 'default') -> None:
  """`ensure_demo_dataset` in a multi-process (multi-host) job.

  Process 0 builds first while the others wait; a shared `data_dir` is then ready for all.
  Where `data_dir` is local to each host, the first process of each host to take a file lock in
  it builds its copy and the host's other processes then find it built.
  """
  import fcntl  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top  (only in training and evaluation)
  from arnet_jax import parallel  # pylint: disable=g-import-not-at-top
  if jax.process_index() == 0:
    ensure_demo_dataset(data_dir, config)
  parallel.barrier('demo_dataset_built_by_process_0')
  if jax.process_index() > 0 and not ArnetDemo(data_dir=data_dir, config=config).is_prepared():
    root = os.path.expanduser(data_dir or tfds.core.constants.DATA_DIR)
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, '.arnet_demo.lock'), 'w') as lock:
      fcntl.flock(lock, fcntl.LOCK_EX)
      ensure_demo_dataset(data_dir, config)
  parallel.barrier('demo_dataset_ready')
