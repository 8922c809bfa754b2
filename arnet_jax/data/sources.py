"""What `prepare` reads from manual_dir: the accepted layouts and the resulting sources.

A *source* is one video to prepare: a video file or a folder of extracted
frames, with its labels as class indices. Each dataset accepts two layouts
(raw videos with the dataset's own annotation, or frames with the original
AR-Net list files); `LAYOUTS` spells out every file each one expects, and the
same text is the builders' MANUAL_DOWNLOAD_INSTRUCTIONS. The readers of each
layout are in `annotations`.

Configuration errors stop the run (`ManualDirError`, `LabelError`); a listed
video that is absent on disk is not an error: it is returned in
`SourceIndex.missing` and ends up in the preparation report.
"""

from __future__ import annotations

import dataclasses
import os

from arnet_jax import errors

VIDEO_EXTENSIONS = ('.mp4', '.mkv', '.webm', '.avi', '.mov', '.m4v', '.flv', '.mpg',
                    '.mpeg', '.wmv', '.3gp', '.ogv', '.ts')
DATASETS = ('activitynet', 'fcvid', 'mini_kinetics', 'custom')
INPUT_KINDS = ('videos', 'frames')


class ManualDirError(errors.UserError):
  """manual_dir is missing, or lacks files the chosen layout needs."""


class LabelError(errors.UserError):
  """An annotation names a class that is not in the class list."""


@dataclasses.dataclass(frozen=True)
class Source:
  """One video to prepare.

  video_id: stored as the example's `video_id` (relative path or dataset id).
  path: absolute path of the video file or the frame folder.
  kind: 'videos' or 'frames'.
  labels: sorted, unique class indices (the first is the example's `label`).
  listed_frames: for frame folders, num_frames from the list file.
  origin: 'file:line' where the source was listed, for messages.
  """

  video_id: str
  path: str
  kind: str
  labels: tuple[int, ...]
  listed_frames: int = 0
  origin: str = ''


@dataclasses.dataclass
class SourceIndex:
  """Everything `prepare` needs from manual_dir."""

  class_names: list[str]
  splits: dict[str, list[Source]]
  missing: list[tuple[str, str, str]]  # (split, video_id, reason): listed, not on disk


# Each layout: the files that must exist (relative to manual_dir) and a description.
LAYOUTS: dict[tuple[str, str], tuple[tuple[str, ...], str]] = {
    ('activitynet', 'videos'): (('activity_net.v1-3.min.json', 'videos/'), """\
  activity_net.v1-3.min.json   the official ActivityNet v1.3 annotation
                               (activity_net.v1-3.json is accepted too)
  videos/                      the videos, named v_<youtube id>.<ext> or <youtube id>.<ext>
                               (mp4, mkv, webm, ...), sub-folders allowed
  classInd.txt                 optional: class order, one name per line (e.g. the
                               original AR-Net file); default: sorted class names"""),
    ('activitynet', 'frames'): (('classInd.txt', 'actnet_train_split.txt', 'actnet_val_split.txt',
                                 'frames/'), """\
  classInd.txt                 one class name per line (line order = class index)
  actnet_train_split.txt       AR-Net list: path,num_frames,label[,label...]
  actnet_val_split.txt         same, validation
  frames/<path>/image_00001.jpg ...   frames extracted by the original scripts"""),
    ('fcvid', 'videos'): (('FCVID_VideoName_TrainTestSplit.txt', 'FCVID_Label.txt', 'videos/'), """\
  FCVID_VideoName_TrainTestSplit.txt   lines '<relative video path> <train|test>'
  FCVID_Label.txt              one row of 0/1 values per line of the split file
                               (one column per class)
  videos/<relative video path> the videos
  classInd.txt                 optional: class names, one per line (default class_000, ...)"""),
    ('fcvid', 'frames'): (('classInd.txt', 'fcvid_train_split.txt', 'fcvid_val_split.txt',
                           'frames/'), """\
  classInd.txt                 one class name per line
  fcvid_train_split.txt        AR-Net list: path,num_frames,label[,label...]
  fcvid_val_split.txt          same, validation (FCVID's test split)
  frames/<path>/image_00001.jpg ..."""),
    ('mini_kinetics', 'videos'): (('kinetics_train.csv', 'kinetics_val.csv', 'videos/'), """\
  kinetics_train.csv           Kinetics-400 CSV with header
                               label,youtube_id,time_start,time_end,split[,is_cc]
                               (train.csv is accepted too)
  kinetics_val.csv             same for validation (validate.csv accepted too)
  train_ytid_list.txt, val_ytid_list.txt   the Mini-Kinetics-200 video lists
                               (github.com/s9xie/Mini-Kinetics-200), and/or
  classInd.txt                 the 200 class names (restricts to those classes and
                               sets the class order; default: sorted names)
  videos/                      <youtube id>_<start:06d>_<end:06d>.<ext> or
                               <youtube id>.<ext>, sub-folders allowed"""),
    ('mini_kinetics', 'frames'): (('mini_train_videofolder.txt', 'mini_val_videofolder.txt',
                                   'frames/'), """\
  mini_train_videofolder.txt   AR-Net list: 'path num_frames label'
  mini_val_videofolder.txt     same, validation
  frames/<path>/00001.jpg ...
  classInd.txt                 optional: the 200 class names (default class_000, ...)"""),
    ('custom', 'videos'): (('classInd.txt', 'train.csv', 'val.csv'), """\
  classInd.txt                 one class name per line (line order = class index)
  train.csv                    rows 'relative/path/to/video,label[,label...]' with
                               class names; paths relative to manual_dir
  val.csv                      same, validation
  test.csv                     optional, same, a 'test' split"""),
    ('custom', 'frames'): (('classInd.txt', 'train_split.txt', 'val_split.txt', 'frames/'), """\
  classInd.txt                 one class name per line
  train_split.txt              AR-Net list: path,num_frames,label[,label...] (indices)
  val_split.txt                same, validation
  test_split.txt               optional, same, a 'test' split
  frames/<path>/image_00001.jpg ...  (or 00001.jpg)"""),
}

_ALTERNATIVES = {
    'activity_net.v1-3.min.json': ('activity_net.v1-3.json',),
    'kinetics_train.csv': ('train.csv',),
    'kinetics_val.csv': ('validate.csv', 'val.csv'),
}


def layout_text(dataset: str) -> str:
  """Human-readable description of the accepted manual_dir layouts of `dataset`."""
  parts = []
  for kind in INPUT_KINDS:
    parts.append(f'--input_kind={kind}:\n{LAYOUTS[(dataset, kind)][1]}')
  return '\n'.join(parts)


def resolve(manual_dir: str, name: str) -> str | None:
  for candidate in (name,) + _ALTERNATIVES.get(name, ()):
    path = os.path.join(manual_dir, candidate)
    if (candidate.endswith('/') and os.path.isdir(path)) or os.path.isfile(path):
      return path
  return None


def _missing_files(dataset: str, kind: str, manual_dir: str) -> list[str]:
  return [n for n in LAYOUTS[(dataset, kind)][0] if resolve(manual_dir, n) is None]


def detect_input_kind(dataset: str, manual_dir: str) -> str:
  """'videos' or 'frames', whichever layout manual_dir holds completely."""
  if dataset not in DATASETS:
    raise ValueError(f'Unknown dataset {dataset!r}; expected one of {DATASETS}.')
  if not os.path.isdir(manual_dir):
    raise ManualDirError(
        f'manual_dir {manual_dir} does not exist. For {dataset} it must hold:\n'
        f'{layout_text(dataset)}')
  complete = [k for k in INPUT_KINDS if not _missing_files(dataset, k, manual_dir)]
  if len(complete) == 1:
    return complete[0]
  if len(complete) == 2:
    raise ManualDirError(
        f'{manual_dir} holds both the videos and the frames layout of {dataset}; '
        'choose one with --input_kind=videos or --input_kind=frames.')
  lines = [f'manual_dir {manual_dir} is incomplete for {dataset}.']
  for kind in INPUT_KINDS:
    missing = _missing_files(dataset, kind, manual_dir)
    lines.append(f'For --input_kind={kind} it lacks: {", ".join(missing)}. Expected:\n'
                 f'{LAYOUTS[(dataset, kind)][1]}')
  raise ManualDirError('\n'.join(lines))


def require_layout(dataset: str, kind: str, manual_dir: str) -> None:
  if not os.path.isdir(manual_dir):
    raise ManualDirError(f'manual_dir {manual_dir} does not exist. For {dataset} '
                         f'(--input_kind={kind}) it must hold:\n{LAYOUTS[(dataset, kind)][1]}')
  missing = _missing_files(dataset, kind, manual_dir)
  if missing:
    raise ManualDirError(
        f'manual_dir {manual_dir} is incomplete for {dataset} (--input_kind={kind}): '
        f'missing {", ".join(missing)}. Expected:\n{LAYOUTS[(dataset, kind)][1]}')
