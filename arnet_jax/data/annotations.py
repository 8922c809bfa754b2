"""Readers of each dataset's annotation files (see `sources.LAYOUTS` for the layouts).

Each reader returns a `SourceIndex`: class names, the sources of each split,
and the listed videos missing on disk. Labels are validated here: a label
outside the class list is a `LabelError` naming the file and line.
"""

from __future__ import annotations

import csv
import json
import os
import re
from typing import Iterable

from arnet_jax.data.sources import INPUT_KINDS
from arnet_jax.data.sources import LAYOUTS
from arnet_jax.data.sources import LabelError
from arnet_jax.data.sources import ManualDirError
from arnet_jax.data.sources import Source
from arnet_jax.data.sources import SourceIndex
from arnet_jax.data.sources import VIDEO_EXTENSIONS
from arnet_jax.data.sources import require_layout
from arnet_jax.data.sources import resolve


def read_class_names(path: str) -> list[str]:
  """classInd.txt: one name per line, line order = index (blank lines ignored).

  A leading index ('1 ApplyEyeMakeup', UCF style) is accepted and dropped when
  every line has one.
  """
  with open(path, encoding='utf-8') as f:
    lines = [line.strip() for line in f if line.strip()]
  split = [line.split(maxsplit=1) for line in lines]
  if lines and all(len(p) == 2 and p[0].isdigit() for p in split):
    lines = [p[1] for p in split]
  if len(set(lines)) != len(lines):
    dup = sorted({n for n in lines if lines.count(n) > 1})
    raise ManualDirError(f'{path} lists class names more than once: {dup[:5]}')
  if not lines:
    raise ManualDirError(f'{path} is empty; it must list one class name per line.')
  return lines


def _optional_class_names(manual_dir: str) -> list[str] | None:
  path = os.path.join(manual_dir, 'classInd.txt')
  return read_class_names(path) if os.path.isfile(path) else None


def _index_of(names: list[str], name: str, where: str, class_file: str) -> int:
  try:
    return names.index(name)
  except ValueError:
    raise LabelError(f'{where}: label {name!r} is not in the class list {class_file} '
                     f'({len(names)} classes). Fix the label or add the class.') from None


def index_video_files(root: str) -> dict[str, str]:
  """Maps each video file's stem (and id-like prefixes of it) to its path, under `root`."""
  found: dict[str, str] = {}
  for dirpath, _, files in os.walk(root):
    for name in files:
      stem, ext = os.path.splitext(name)
      if ext.lower() not in VIDEO_EXTENSIONS:
        continue
      path = os.path.join(dirpath, name)
      keys = [stem]
      if stem.startswith('v_'):
        keys.append(stem[2:])  # ActivityNet crawler names: v_<youtube id>
      m = re.fullmatch(r'(.+)_\d{6}_\d{6}', stem)
      if m:
        keys.append(m.group(1))  # Kinetics names: <youtube id>_<start>_<end>
      for key in keys:
        found.setdefault(key, path)
  return found


# ---------------------------------------------------------------- list files


def parse_list_file(path: str, num_classes: int, separator: str = 'auto'
                    ) -> Iterable[tuple[str, int, tuple[int, ...], str]]:
  """Reads an AR-Net list file.

  Lines are 'path,num_frames,label[,label...]' (ActivityNet/FCVID/custom) or
  'path num_frames label' (Mini-Kinetics; the path may contain spaces).

  Yields:
    (relative frame folder, num_frames, sorted unique labels, 'file:line').
  """
  with open(path, encoding='utf-8') as f:
    for number, line in enumerate(f, 1):
      line = line.strip()
      if not line:
        continue
      where = f'{path}:{number}'
      sep = separator if separator != 'auto' else (',' if ',' in line else ' ')
      if sep == ',':
        parts = [p.strip() for p in line.split(',')]
        rel, count, labels = parts[0], parts[1] if len(parts) > 1 else '', parts[2:]
      else:
        parts = line.split()
        if len(parts) < 3:
          raise ManualDirError(f'{where}: expected "path num_frames label", got {line!r}')
        rel, count, labels = ' '.join(parts[:-2]), parts[-2], parts[-1:]
      if not labels or not count.isdigit():
        raise ManualDirError(f'{where}: expected "path,num_frames,label[,label...]", '
                             f'got {line!r}')
      indices = []
      for label in labels:
        if not label.lstrip('-').isdigit() or not 0 <= int(label) < num_classes:
          raise LabelError(f'{where}: label {label!r} is not a class index in '
                           f'[0, {num_classes}) of the class list.')
        indices.append(int(label))
      yield rel, int(count), tuple(sorted(set(indices))), where


def _frames_index(manual_dir: str, lists: dict[str, str], class_names: list[str]
                  ) -> SourceIndex:
  frames_root = os.path.join(manual_dir, 'frames')
  splits: dict[str, list[Source]] = {}
  for split, name in lists.items():
    path = os.path.join(manual_dir, name)
    if not os.path.isfile(path):
      continue
    splits[split] = [
        Source(rel, os.path.join(frames_root, rel), 'frames', labels, count, where)
        for rel, count, labels, where in parse_list_file(path, len(class_names))]
  return SourceIndex(class_names, splits, [])


def _numbered_names(n: int) -> list[str]:
  return [f'class_{i:03d}' for i in range(n)]


# ------------------------------------------------------------- per dataset


def activitynet_videos(manual_dir: str) -> SourceIndex:
  """ActivityNet v1.3 JSON + videos/. 'training' -> train, 'validation' -> validation."""
  json_path = resolve(manual_dir, 'activity_net.v1-3.min.json')
  with open(json_path, encoding='utf-8') as f:
    try:
      database = json.load(f)['database']
    except (json.JSONDecodeError, KeyError) as e:
      raise ManualDirError(f'{json_path} is not an ActivityNet annotation file '
                           f'(a JSON object with a "database" key): {e}') from None
  given = _optional_class_names(manual_dir)
  subsets = {'training': 'train', 'validation': 'validation'}
  if given is None:
    names = sorted({a['label'] for v in database.values() if v.get('subset') in subsets
                    for a in v.get('annotations', [])})
  else:
    names = given
  class_file = os.path.join(manual_dir, 'classInd.txt') if given else json_path
  files = index_video_files(os.path.join(manual_dir, 'videos'))
  splits: dict[str, list[Source]] = {s: [] for s in subsets.values()}
  missing = []
  for video_id, entry in database.items():
    split = subsets.get(entry.get('subset'))
    if split is None or not entry.get('annotations'):
      continue  # the test subset has no labels
    where = f'{json_path} (video {video_id})'
    labels = tuple(sorted({_index_of(names, a['label'], where, class_file)
                           for a in entry['annotations']}))
    path = files.get(video_id) or files.get('v_' + video_id)
    if path is None:
      missing.append((split, video_id, 'missing file: listed in the annotation, '
                      'not found under videos/'))
      continue
    splits[split].append(Source(video_id, path, 'videos', labels, 0, where))
  return SourceIndex(names, splits, missing)


def fcvid_videos(manual_dir: str) -> SourceIndex:
  """FCVID split list + label matrix + videos/. 'train' -> train, 'test' -> validation."""
  split_path = os.path.join(manual_dir, 'FCVID_VideoName_TrainTestSplit.txt')
  label_path = os.path.join(manual_dir, 'FCVID_Label.txt')
  with open(split_path, encoding='utf-8') as f:
    rows = [(n, line.split()) for n, line in enumerate(f, 1) if line.strip()]
  with open(label_path, encoding='utf-8') as f:
    label_rows = [line.split() for line in f if line.strip()]
  if len(label_rows) != len(rows):
    raise ManualDirError(f'{label_path} has {len(label_rows)} rows but {split_path} lists '
                         f'{len(rows)} videos; they must correspond line by line.')
  num_classes = len(label_rows[0]) if label_rows else 0
  names = _optional_class_names(manual_dir) or _numbered_names(num_classes)
  if len(names) != num_classes:
    raise ManualDirError(f'{label_path} has {num_classes} columns but classInd.txt lists '
                         f'{len(names)} classes.')
  videos_root = os.path.join(manual_dir, 'videos')
  splits: dict[str, list[Source]] = {'train': [], 'validation': []}
  missing = []
  for (number, parts), values in zip(rows, label_rows):
    where = f'{split_path}:{number}'
    if len(parts) != 2 or parts[1] not in ('train', 'test'):
      raise ManualDirError(f'{where}: expected "<video path> <train|test>", got {parts}')
    if len(values) != num_classes or any(v not in ('0', '1', '0.0', '1.0') for v in values):
      raise LabelError(f'{label_path}:{number}: expected {num_classes} values of 0 or 1.')
    labels = tuple(i for i, v in enumerate(values) if float(v) == 1.0)
    split = 'train' if parts[1] == 'train' else 'validation'
    if not labels:
      missing.append((split, parts[0], f'no label: row {number} of FCVID_Label.txt is all 0'))
      continue
    path = os.path.join(videos_root, parts[0])
    if not os.path.isfile(path):
      missing.append((split, parts[0], 'missing file: listed, not found under videos/'))
      continue
    splits[split].append(Source(parts[0], path, 'videos', labels, 0, where))
  return SourceIndex(names, splits, missing)


def mini_kinetics_videos(manual_dir: str) -> SourceIndex:
  """Kinetics CSVs restricted to the Mini-Kinetics-200 subset, + videos/."""
  lists = {s: os.path.join(manual_dir, f'{p}_ytid_list.txt')
           for s, p in (('train', 'train'), ('validation', 'val'))}
  have_lists = all(os.path.isfile(p) for p in lists.values())
  given = _optional_class_names(manual_dir)
  if not have_lists and given is None:
    raise ManualDirError(
        f'manual_dir {manual_dir} lacks the Mini-Kinetics-200 subset: put train_ytid_list.txt '
        'and val_ytid_list.txt (github.com/s9xie/Mini-Kinetics-200) and/or a classInd.txt '
        'with the 200 class names in it.')
  wanted: dict[str, set[str]] | None = None
  if have_lists:
    wanted = {}
    for split, path in lists.items():
      with open(path, encoding='utf-8') as f:
        wanted[split] = {line.strip() for line in f if line.strip()}
  rows: dict[str, list[tuple[str, str, str]]] = {}
  for split, name in (('train', 'kinetics_train.csv'), ('validation', 'kinetics_val.csv')):
    path = resolve(manual_dir, name)
    with open(path, encoding='utf-8', newline='') as f:
      reader = csv.DictReader(f)
      needed = {'label', 'youtube_id', 'time_start', 'time_end'}
      if not reader.fieldnames or not needed <= set(reader.fieldnames):
        raise ManualDirError(f'{path}: expected a header with columns {sorted(needed)}, '
                             f'got {reader.fieldnames}')
      kept = []
      for number, row in enumerate(reader, 2):
        ytid = row['youtube_id']
        if wanted is not None and ytid not in wanted[split]:
          continue
        if wanted is None and row['label'] not in given:
          continue
        stem = f'{ytid}_{int(float(row["time_start"])):06d}_{int(float(row["time_end"])):06d}'
        kept.append((f'{path}:{number}', row['label'], ytid, stem))
      rows[split] = kept
  names = given or sorted({label for kept in rows.values() for _, label, _, _ in kept})
  class_file = os.path.join(manual_dir, 'classInd.txt') if given else 'the Kinetics CSVs'
  files = index_video_files(os.path.join(manual_dir, 'videos'))
  splits: dict[str, list[Source]] = {}
  missing = []
  for split, kept in rows.items():
    splits[split] = []
    for where, label, ytid, stem in kept:
      index = _index_of(names, label, where, class_file)
      path = files.get(stem) or files.get(ytid)
      if path is None:
        missing.append((split, stem, 'missing file: listed, not found under videos/'))
        continue
      splits[split].append(Source(stem, path, 'videos', (index,), 0, where))
  return SourceIndex(names, splits, missing)


def custom_videos(manual_dir: str) -> SourceIndex:
  """The user's own videos: classInd.txt + train.csv / val.csv [/ test.csv] with class names."""
  class_file = os.path.join(manual_dir, 'classInd.txt')
  names = read_class_names(class_file)
  splits: dict[str, list[Source]] = {}
  missing = []
  for split, name in (('train', 'train.csv'), ('validation', 'val.csv'), ('test', 'test.csv')):
    path = os.path.join(manual_dir, name)
    if not os.path.isfile(path):
      continue
    sources = []
    with open(path, encoding='utf-8', newline='') as f:
      for number, row in enumerate(csv.reader(f), 1):
        row = [c.strip() for c in row]
        if not row or not row[0]:
          continue
        where = f'{path}:{number}'
        if number == 1 and row[0].lower() in ('path', 'video', 'file', 'filename'):
          continue  # a header row
        if len(row) < 2 or not all(row[1:]):
          raise ManualDirError(f'{where}: expected "relative/path/to/video,label[,label...]", '
                               f'got {row}')
        labels = tuple(sorted({_index_of(names, label, where, class_file) for label in row[1:]}))
        full = os.path.join(manual_dir, row[0])
        if not os.path.isfile(full):
          missing.append((split, row[0], f'missing file: listed at {where}'))
          continue
        sources.append(Source(row[0], full, 'videos', labels, 0, where))
    splits[split] = sources
  return SourceIndex(names, splits, missing)


def load_sources(dataset: str, manual_dir: str, input_kind: str) -> SourceIndex:
  """Reads manual_dir for `dataset` in the given layout ('videos' or 'frames').

  Raises:
    ManualDirError: missing manual_dir or files, malformed annotation.
    LabelError: a label outside the class list (names the file and line).
  """
  if input_kind not in INPUT_KINDS:
    raise ValueError(f'input_kind must be one of {INPUT_KINDS}, got {input_kind!r}.')
  require_layout(dataset, input_kind, manual_dir)
  if input_kind == 'videos':
    index = {'activitynet': activitynet_videos, 'fcvid': fcvid_videos,
             'mini_kinetics': mini_kinetics_videos, 'custom': custom_videos}[dataset](manual_dir)
  else:
    lists = {
        'activitynet': {'train': 'actnet_train_split.txt', 'validation': 'actnet_val_split.txt'},
        'fcvid': {'train': 'fcvid_train_split.txt', 'validation': 'fcvid_val_split.txt'},
        'mini_kinetics': {'train': 'mini_train_videofolder.txt',
                          'validation': 'mini_val_videofolder.txt'},
        'custom': {'train': 'train_split.txt', 'validation': 'val_split.txt',
                   'test': 'test_split.txt'},
    }[dataset]
    names = _optional_class_names(manual_dir)
    if names is None:
      names = _numbered_names(200)  # Mini-Kinetics' lists carry indices of its 200 classes
    index = _frames_index(manual_dir, lists, names)
  total = sum(len(s) for s in index.splits.values())
  if total == 0:
    listed = len(index.missing)
    raise ManualDirError(
        f'Found none of the {listed} videos listed for {dataset} in {manual_dir}. '
        f'Expected layout (--input_kind={input_kind}):\n{LAYOUTS[(dataset, input_kind)][1]}')
  return index
