"""TFDS builders of the video datasets read from manual_dir: ActivityNet v1.3, FCVID,
Mini-Kinetics and the user's own ('custom').

Registered as arnet_activitynet, arnet_fcvid, arnet_mini_kinetics, arnet_custom
when `arnet_jax.data` is imported. Preparation = read the annotation
(`annotations`), decode every video into the per-video frame cache in parallel
(`parallel_decode`, resumable), then write the TFDS shards from the cache and
the report (`report`) next to them.

A builder config fixes what is stored (input kind, fps, short side, ...), and
its name spells that out, e.g. 'videos_fps2_side256' or 'frames_step1_side256',
so differently prepared copies live side by side in one data_dir.

Features of every example:
  frames      Sequence(Image jpeg)   [N, H, W, 3], N = stored frames (>= 3)
  label       ClassLabel             the first (smallest) class index, as the
                                     original's VideoRecord sorts its labels
  labels      Sequence(ClassLabel)   [K], all labels, sorted, unique
  num_frames  int32                  N
  video_id    Text                   relative path or dataset id
"""

from __future__ import annotations

import dataclasses
import os
import shutil

import numpy as np
import tensorflow_datasets as tfds

from arnet_jax.data import annotations
from arnet_jax.data import decode
from arnet_jax.data import frame_cache
from arnet_jax.data import parallel_decode
from arnet_jax.data import report as report_lib
from arnet_jax.data import sources as sources_lib

WORK_DIR_PREFIX = '_prepare_work-'  # never a valid version name, so TFDS ignores it


@dataclasses.dataclass(eq=False)
class VideoConfig(tfds.core.BuilderConfig):
  """What a prepared copy of a video dataset stores."""

  input_kind: str = 'videos'  # 'videos' (decode files) or 'frames' (AR-Net frame folders)
  fps: float | None = 4.0  # videos: frames kept per second (None = all)
  short_side: int | None = 256  # frames are shrunk to this short side (None = as is)
  frame_step: int = 1  # frames: keep every frame_step-th frame
  jpeg_quality: int = 90

  def frame_options(self) -> decode.FrameOptions:
    return decode.FrameOptions(fps=self.fps if self.input_kind == 'videos' else None,
                               short_side=self.short_side, frame_step=self.frame_step,
                               jpeg_quality=self.jpeg_quality)


def _number(x: float | None, none: str) -> str:
  if x is None:
    return none
  return (f'{x:g}').replace('.', 'p')


def config_name(input_kind: str, fps: float | None, short_side: int | None,
                frame_step: int = 1, jpeg_quality: int = 90) -> str:
  """E.g. 'videos_fps2_side256', 'frames_step1_side256', 'videos_fps0p5_sidefull_q95'."""
  if input_kind == 'videos':
    name = f'videos_fps{_number(fps, "all")}'
  elif input_kind == 'frames':
    name = f'frames_step{frame_step}'
  else:
    raise ValueError(f'input_kind must be videos or frames, got {input_kind!r}.')
  name += f'_side{_number(short_side, "full")}'
  if jpeg_quality != 90:
    name += f'_q{jpeg_quality}'
  return name


def _video_config(input_kind: str, fps: float | None, short_side: int | None = 256,
                  frame_step: int = 1, jpeg_quality: int = 90) -> VideoConfig:
  return VideoConfig(
      name=config_name(input_kind, fps, short_side, frame_step, jpeg_quality),
      description=(f'{input_kind}; ' + (f'{fps} fps; ' if input_kind == 'videos' else
                                        f'every {frame_step} frame(s); ')
                   + f'short side {short_side}; JPEG quality {jpeg_quality}'),
      input_kind=input_kind, fps=fps, short_side=short_side, frame_step=frame_step,
      jpeg_quality=jpeg_quality)


class ManualVideoBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Shared logic of the manual_dir video builders (one subclass per dataset).

  Instance attributes a caller may set before download_and_prepare:
    num_workers: decoding processes (None = all cores, 1 = in-process).
    show_progress: tqdm bar while decoding.
    keep_work_dir: keep the per-video frame cache after a successful build.
  """

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}
  DATASET = ''  # key into sources.LAYOUTS
  DEFAULT_FPS = 4.0

  def __init__(self, **kwargs):
    super().__init__(**kwargs)
    self.num_workers: int | None = None
    self.show_progress = True
    self.keep_work_dir = False
    self.last_report: report_lib.PrepareReport | None = None

  @classmethod
  def make_config(cls, input_kind: str = 'videos', fps: float | None | str = 'default',
                  short_side: int | None = 256, frame_step: int = 1,
                  jpeg_quality: int = 90) -> VideoConfig:
    """The config for these settings (a predefined one when it exists).

    fps: 'default' = the dataset's DEFAULT_FPS; None = every decoded frame.
    """
    fps = cls.DEFAULT_FPS if fps == 'default' else fps
    name = config_name(input_kind, fps, short_side, frame_step, jpeg_quality)
    return cls.builder_configs.get(name) or _video_config(
        input_kind, fps, short_side, frame_step, jpeg_quality)

  def _info(self) -> tfds.core.DatasetInfo:
    # Class names come from manual_dir, so they are set in _split_generators.
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            'frames': tfds.features.Sequence(
                tfds.features.Image(shape=(None, None, 3), encoding_format='jpeg')),
            'label': tfds.features.ClassLabel(),
            'labels': tfds.features.Sequence(tfds.features.ClassLabel()),
            'num_frames': tfds.features.Scalar(dtype=np.int32),
            'video_id': tfds.features.Text(),
        }),
        supervised_keys=None,
    )

  @property
  def work_dir(self) -> str:
    """The per-video frame cache: <data_dir>/<name>/<config>/_prepare_work-<version>."""
    return os.path.join(os.path.dirname(self.data_path), f'{WORK_DIR_PREFIX}{self.version}')

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    manual_dir = os.fspath(dl_manager.manual_dir)
    config: VideoConfig = self.builder_config
    index = annotations.load_sources(self.DATASET, manual_dir, config.input_kind)
    self.info.features['label'].names = index.class_names
    self.info.features['labels'].feature.names = index.class_names

    report = report_lib.PrepareReport(self.name, config.name, manual_dir)
    for split, video_id, reason in index.missing:
      report.add_skipped(split, video_id, video_id, reason)
    cache = frame_cache.FrameCache(self.work_dir)
    options = config.frame_options()
    every = [s for split in index.splits.values() for s in split]
    outcomes = parallel_decode.decode_all(every, options, cache, self.num_workers,
                                          self.show_progress)
    ready: dict[str, list[tuple[sources_lib.Source, str]]] = {}
    for split, split_sources in index.splits.items():
      ready[split] = []
      first_listed: dict[str, str] = {}
      for source in split_sources:
        if source.video_id in first_listed:  # TFDS keys must be unique within a split
          report.add_skipped(split, source.video_id, source.path,
                             f'duplicate: already listed at {first_listed[source.video_id]}')
          continue
        first_listed[source.video_id] = source.origin
        outcome = outcomes[cache.key(source.path, options)]
        for warning in outcome.warnings:
          report.add_warning(split, source.video_id, warning)
        if outcome.ok:
          report.add_prepared(split)
          ready[split].append((source, outcome.key))
        else:
          report.add_skipped(split, source.video_id, source.path, outcome.reason)
    self.last_report = report
    report.write(self.work_dir)  # visible even if writing the shards fails
    return {split: self._generate_examples(items, cache)
            for split, items in ready.items() if items}

  def _generate_examples(self, items, cache: frame_cache.FrameCache):
    for source, key in items:
      frames = cache.load_frames(key)
      yield source.video_id, {
          'frames': frames,
          'label': source.labels[0],
          'labels': list(source.labels),
          'num_frames': len(frames),
          'video_id': source.video_id,
      }

  def download_and_prepare(self, *args, **kwargs):
    """TFDS download_and_prepare, then the report next to the dataset."""
    super().download_and_prepare(*args, **kwargs)
    if self.last_report is not None:  # None: the dataset existed already
      self.last_report.write(self.data_path)
      if not self.keep_work_dir:
        shutil.rmtree(self.work_dir, ignore_errors=True)


def _instructions(dataset: str) -> str:
  return (f'Put the {dataset} files in manual_dir in one of these layouts '
          f'(then: python -m arnet_jax.data.prepare --dataset={dataset} '
          f'--manual_dir=DIR --data_dir=DIR):\n' + sources_lib.layout_text(dataset))


def _configs(default_fps: float) -> list[VideoConfig]:
  return [_video_config('videos', default_fps), _video_config('frames', None)]


class ArnetActivitynet(ManualVideoBuilder):
  """ActivityNet v1.3 (200 classes) from local videos or AR-Net frame folders."""

  DATASET = 'activitynet'
  DEFAULT_FPS = 2.0  # videos are ~2 minutes; 16 segments of ~7 s each still get many frames
  BUILDER_CONFIGS = _configs(DEFAULT_FPS)
  MANUAL_DOWNLOAD_INSTRUCTIONS = _instructions(DATASET)


class ArnetFcvid(ManualVideoBuilder):
  """FCVID (239 classes) from local videos or AR-Net frame folders."""

  DATASET = 'fcvid'
  DEFAULT_FPS = 1.0  # the original extracted FCVID at 1 fps
  BUILDER_CONFIGS = _configs(DEFAULT_FPS)
  MANUAL_DOWNLOAD_INSTRUCTIONS = _instructions(DATASET)


class ArnetMiniKinetics(ManualVideoBuilder):
  """Mini-Kinetics-200 from local Kinetics videos or AR-Net frame folders."""

  DATASET = 'mini_kinetics'
  DEFAULT_FPS = 8.0  # 10-second clips: 80 frames, 5 per segment
  BUILDER_CONFIGS = _configs(DEFAULT_FPS)
  MANUAL_DOWNLOAD_INSTRUCTIONS = _instructions(DATASET)


class ArnetCustom(ManualVideoBuilder):
  """The user's own videos (classInd.txt + train.csv/val.csv) or frame folders."""

  DATASET = 'custom'
  DEFAULT_FPS = 4.0
  BUILDER_CONFIGS = _configs(DEFAULT_FPS)
  MANUAL_DOWNLOAD_INSTRUCTIONS = _instructions(DATASET)


BUILDERS = {
    'activitynet': ArnetActivitynet,
    'fcvid': ArnetFcvid,
    'mini_kinetics': ArnetMiniKinetics,
    'custom': ArnetCustom,
}
