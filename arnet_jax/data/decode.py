"""Turning one source video (a video file or a folder of frames) into JPEG frames.

PyAV decodes videos with its own bundled ffmpeg libraries, so no system ffmpeg
is needed. This module imports no TensorFlow: it runs in the worker processes
of `prepare`.

Every problem with a source is raised as `BadSourceError(reason)`; the caller
records the reason in the preparation report and moves on.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os

import av
import numpy as np
from PIL import Image

MIN_FRAMES = 3  # shorter videos are dropped, as in the original AR-Net code
FRAME_TEMPLATES = ('image_{:05d}.jpg', '{:05d}.jpg', 'img_{:05d}.jpg')


class BadSourceError(Exception):
  """A source that cannot be used.

  `category` is a short fixed phrase the report counts by ('empty file',
  'too short', ...); str(error) is 'category: detail' for the per-file list.
  """

  def __init__(self, category: str, detail: str = ''):
    super().__init__(f'{category}: {detail}' if detail else category)
    self.category = category


@dataclasses.dataclass(frozen=True)
class FrameOptions:
  """How frames are stored.

  fps: frames per second taken from videos (None keeps every decoded frame).
  short_side: frames larger than this are resized so their short side equals
    it (never upscaled); None keeps the size.
  frame_step: for frame folders, keep every frame_step-th frame (1 = all).
  jpeg_quality: quality of re-encoded JPEGs (frames already small enough in a
    frame folder are stored byte for byte).
  """

  fps: float | None = 4.0
  short_side: int | None = 256
  frame_step: int = 1
  jpeg_quality: int = 90

  def __post_init__(self):
    if self.fps is not None and self.fps <= 0:
      raise ValueError(f'fps must be > 0 (or None for every frame), got {self.fps}.')
    if self.short_side is not None and self.short_side < 8:
      raise ValueError(f'short_side must be >= 8 (or None), got {self.short_side}.')
    if self.frame_step < 1:
      raise ValueError(f'frame_step must be >= 1, got {self.frame_step}.')
    if not 1 <= self.jpeg_quality <= 100:
      raise ValueError(f'jpeg_quality must be in [1, 100], got {self.jpeg_quality}.')


def target_size(width: int, height: int, short_side: int | None) -> tuple[int, int]:
  """(width, height) after shrinking the short side to `short_side` (never enlarging)."""
  short = min(width, height)
  if short_side is None or short <= short_side:
    return width, height
  scale = short_side / short
  if width <= height:
    return short_side, max(1, int(round(height * scale)))
  return max(1, int(round(width * scale))), short_side


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
  """uint8 [H, W, 3] -> JPEG bytes."""
  buf = io.BytesIO()
  Image.fromarray(rgb).save(buf, format='JPEG', quality=quality)
  return buf.getvalue()


def decode_video(path: str, options: FrameOptions) -> list[bytes]:
  """Decodes a video file into JPEG frames at `options.fps` and `options.short_side`.

  Frames are chosen by presentation time: the first frame of each 1/fps
  interval since the first frame, so variable frame rates are handled.

  Raises:
    BadSourceError: missing, empty, corrupt, truncated or non-video file, or
      fewer than MIN_FRAMES frames.
  """
  if not os.path.exists(path):
    raise BadSourceError('missing file', path)
  if os.path.getsize(path) == 0:
    raise BadSourceError('empty file', '0 bytes')
  try:
    container = av.open(path)
  except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
    raise BadSourceError('unreadable', f'corrupt, truncated or not a video ({_short(e)})') from None
  frames: list[bytes] = []
  with container:
    if not container.streams.video:
      raise BadSourceError('not a video', 'no video stream')
    stream = container.streams.video[0]
    stream.thread_type = 'AUTO'
    rate = float(stream.average_rate) if stream.average_rate else 25.0
    first_time = None
    last_bucket = -1
    count = 0
    try:
      for frame in container.decode(stream):
        t = frame.time if frame.time is not None else count / rate
        count += 1
        if first_time is None:
          first_time = t
        if options.fps is not None:
          # 1e-6: timestamps like 0.9999999 must fall in bucket 1, not 0.
          bucket = math.floor((t - first_time) * options.fps + 1e-6)
          if bucket <= last_bucket:
            continue
          last_bucket = bucket
        width, height = target_size(frame.width, frame.height, options.short_side)
        rgb = frame.to_ndarray(width=width, height=height, format='rgb24',
                               interpolation='AREA')
        frames.append(encode_jpeg(rgb, options.jpeg_quality))
    except (av.error.FFmpegError, OSError, ValueError) as e:
      raise BadSourceError('corrupt or truncated',
                           f'decoding failed after {count} frames ({_short(e)})') from None
  if len(frames) < MIN_FRAMES:
    raise BadSourceError(
        'too short', f'{len(frames)} frame(s) at fps={options.fps}, fewer than {MIN_FRAMES}')
  return frames


def find_frame_template(folder: str) -> str:
  """The name pattern of a frame folder's frames (frame 1 must exist)."""
  for template in FRAME_TEMPLATES:
    if os.path.exists(os.path.join(folder, template.format(1))):
      return template
  if not os.path.isdir(folder):
    raise BadSourceError('missing frame folder', folder)
  raise BadSourceError(
      'no frames', f'no {" or ".join(t.format(1) for t in FRAME_TEMPLATES)} in {folder}')


def read_frame_folder(folder: str, listed_frames: int,
                      options: FrameOptions) -> tuple[list[bytes], list[str]]:
  """Reads frames 1..listed_frames (every frame_step-th) of an extracted-frames folder.

  Frames whose short side exceeds options.short_side are resized and
  re-encoded; the others are kept byte for byte. Every frame is decoded once
  so that a corrupt JPEG is caught here rather than during training.

  Returns:
    (frames, warnings): JPEG bytes, and notes for the report (e.g. fewer frames
    on disk than the list file says).

  Raises:
    BadSourceError: folder or first frame missing, or fewer than MIN_FRAMES
      readable frames.
  """
  template = find_frame_template(folder)
  frames: list[bytes] = []
  warnings: list[str] = []
  for number in range(1, listed_frames + 1, options.frame_step):
    path = os.path.join(folder, template.format(number))
    if not os.path.exists(path):
      warnings.append(f'list says {listed_frames} frames, frame {number} is missing: '
                      f'kept the {len(frames)} before it')
      break
    with open(path, 'rb') as f:
      data = f.read()
    try:
      with Image.open(io.BytesIO(data)) as image:
        image.load()
        rgb = image.convert('RGB')
    except (OSError, ValueError, Image.DecompressionBombError) as e:
      warnings.append(f'frame {number} unreadable ({_short(e)}), left out')
      continue
    width, height = target_size(rgb.width, rgb.height, options.short_side)
    if (width, height) != rgb.size or image.format != 'JPEG':
      rgb = rgb.resize((width, height), Image.BILINEAR)
      data = encode_jpeg(np.asarray(rgb), options.jpeg_quality)
    frames.append(data)
  if len(frames) < MIN_FRAMES:
    raise BadSourceError('too short', f'{len(frames)} readable frame(s), fewer than {MIN_FRAMES}')
  return frames, warnings


def _short(error: Exception, limit: int = 160) -> str:
  text = f'{type(error).__name__}: {error}'
  return text if len(text) <= limit else text[:limit - 3] + '...'
