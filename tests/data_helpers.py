"""Small synthetic inputs for the data tests: mp4s, frame folders, manual_dir layouts.

Frame i of every generated video or folder is a flat grey of value
`frame_value(i)`, so a test can tell which source frames were kept.
"""

from __future__ import annotations

import os

import av
import numpy as np
from PIL import Image

WIDTH, HEIGHT = 64, 48


def frame_value(i: int) -> int:
  return (20 + 12 * i) % 240


def write_video(path: str, num_frames: int, fps: int = 10, width: int = WIDTH,
                height: int = HEIGHT) -> str:
  """An mpeg4 .mp4 of `num_frames` flat grey frames (frame i has value frame_value(i))."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with av.open(path, 'w') as container:
    stream = container.add_stream('mpeg4', rate=fps)
    stream.width, stream.height, stream.pix_fmt = width, height, 'yuv420p'
    for i in range(num_frames):
      rgb = np.full((height, width, 3), frame_value(i), np.uint8)
      for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format='rgb24')):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
  return path


def write_frames(folder: str, num_frames: int, template: str = 'image_{:05d}.jpg',
                 width: int = WIDTH, height: int = HEIGHT) -> str:
  """A folder of JPEG frames numbered from 1, as the AR-Net extraction scripts write them."""
  os.makedirs(folder, exist_ok=True)
  for i in range(num_frames):
    rgb = np.full((height, width, 3), frame_value(i), np.uint8)
    Image.fromarray(rgb).save(os.path.join(folder, template.format(i + 1)), quality=95)
  return folder


def write_text(path: str, text: str) -> str:
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  with open(path, 'w', encoding='utf-8') as f:
    f.write(text)
  return path


def write_bytes(path: str, data: bytes) -> str:
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  with open(path, 'wb') as f:
    f.write(data)
  return path


def truncate(path: str, keep_fraction: float = 0.5) -> str:
  with open(path, 'rb') as f:
    data = f.read()
  return write_bytes(path, data[:int(len(data) * keep_fraction)])


CLASSES = ('archery', 'bowling', 'cooking')


def custom_videos_dir(root: str, bad: bool = False) -> str:
  """A --dataset=custom manual_dir of videos: 4 train (one multi-label), 2 val.

  With bad=True, train.csv also lists an empty file, a text file named .mp4,
  a truncated mp4, a 2-frame video and a file that does not exist.
  """
  write_text(os.path.join(root, 'classInd.txt'), '\n'.join(CLASSES) + '\n')
  write_video(os.path.join(root, 'clips/a0.mp4'), 12)
  write_video(os.path.join(root, 'clips/a1.mp4'), 20)
  write_video(os.path.join(root, 'clips/b0.mp4'), 15)
  write_video(os.path.join(root, 'clips/c0.mp4'), 10)
  write_video(os.path.join(root, 'val/b1.mp4'), 16)
  write_video(os.path.join(root, 'val/c1.mp4'), 11)
  train = ['clips/a0.mp4,archery', 'clips/a1.mp4,archery,cooking', 'clips/b0.mp4,bowling',
           'clips/c0.mp4,cooking']
  if bad:
    write_bytes(os.path.join(root, 'bad/empty.mp4'), b'')
    write_text(os.path.join(root, 'bad/notes.mp4'), 'this is not a video\n' * 20)
    truncate(write_video(os.path.join(root, 'bad/cut.mp4'), 20))
    write_video(os.path.join(root, 'bad/short.mp4'), 2)
    train += ['bad/empty.mp4,archery', 'bad/notes.mp4,bowling', 'bad/cut.mp4,cooking',
              'bad/short.mp4,archery', 'bad/gone.mp4,bowling']
  write_text(os.path.join(root, 'train.csv'), '\n'.join(train) + '\n')
  write_text(os.path.join(root, 'val.csv'), 'val/b1.mp4,bowling\nval/c1.mp4,cooking\n')
  return root


def custom_frames_dir(root: str) -> str:
  """A --dataset=custom manual_dir of frame folders with AR-Net lists (label indices)."""
  write_text(os.path.join(root, 'classInd.txt'), '\n'.join(CLASSES) + '\n')
  write_frames(os.path.join(root, 'frames/v_a'), 7)
  write_frames(os.path.join(root, 'frames/v_b'), 5, template='{:05d}.jpg')
  write_frames(os.path.join(root, 'frames/v_c'), 4)  # the list claims 6: 2 are missing
  write_frames(os.path.join(root, 'frames/v_d'), 6)
  write_frames(os.path.join(root, 'frames/v_e'), 2)  # too short
  write_text(os.path.join(root, 'train_split.txt'),
             'v_a,7,0\nv_b,5,1,2\nv_c,6,2\nv_e,2,0\n')
  write_text(os.path.join(root, 'val_split.txt'), 'v_d,6,1\n')
  return root


def process_or_crash(cache_root, key, path, kind, listed_frames, options):
  """frame_cache.process_source, except that a path containing 'crash' kills the worker."""
  from arnet_jax.data import frame_cache  # pylint: disable=g-import-not-at-top
  if 'crash' in os.path.basename(path):
    frame_cache.FrameCache(cache_root).mark_attempt(key)
    os._exit(3)  # like a segfault in the decoder: no exception, the process is gone
  return frame_cache.process_source(cache_root, key, path, kind, listed_frames, options)
