"""The demo's synthetic videos as a folder of mp4 files in the custom layout: own data to try.

  python -m arnet_jax.data.demo_videos --out=/tmp/my_videos [--classes=6 --train=120 --val=48]

writes OUT/classInd.txt, OUT/train.csv, OUT/val.csv and OUT/<split>/<id>.mp4: the demo's glyph
videos (`arnet_jax.data.demo_video`, 73 x 73) enlarged 2, 3 or 4 times (146 to 292 pixels) at
4 fps (prepare's default rate for custom data keeps all 16 frames), and `--broken` unreadable
files listed in train.csv (an empty file, a text file, a truncated mp4, a missing file). At any
size the glyph fills the same share of the frame, so in a 112 px crop its textures are about
1.75 pixels wide: readable at the top resolution, not at half of it, as the demo's at 64 px.
It is what `python -m arnet_jax.data.prepare --dataset=custom --manual_dir=OUT` expects, so the
README's own-data commands can be tried on any machine. Nothing is downloaded.

Videos: L = 16 frames, H = W in (146, 220, 292), uint8 RGB, mpeg4 at a high bit rate (the
glyphs' 1-pixel textures are what the top resolution reads).
"""
from __future__ import annotations

import argparse
import os
import sys

import av
import numpy as np

from arnet_jax.data import demo_video

SCALES = (2, 3, 4)  # enlargements of the demo's 73 x 73 frames (nearest neighbour)
FPS = 4
BROKEN = ('empty', 'text', 'truncated', 'missing')


def write_mp4(path: str, frames: np.ndarray, fps: int) -> None:
  """uint8 `[L, H, W, 3]` (H, W even) -> an mpeg4 mp4 at a bit rate that keeps 1-pixel detail."""
  with av.open(path, 'w') as container:
    stream = container.add_stream('mpeg4', rate=fps)
    stream.height, stream.width = frames.shape[1:3]
    stream.pix_fmt, stream.bit_rate = 'yuv420p', 8_000_000
    for frame in frames:
      container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format='rgb24')))
    container.mux(stream.encode())


def enlarge(frames: np.ndarray, scale: int) -> np.ndarray:
  """`[L, H, W, 3]` -> `[L, sH', sW', 3]`, each pixel a s x s block; an odd side gets one more
  column or row (mpeg4's 4:2:0 needs even sides)."""
  big = frames.repeat(scale, axis=1).repeat(scale, axis=2)
  pad = ((0, 0), (0, big.shape[1] % 2), (0, big.shape[2] % 2), (0, 0))
  return np.pad(big, pad, mode='edge')


def write_dataset(out: str, num_classes: int = 6, num_train: int = 120, num_val: int = 48,
                  broken: int = 4, seed: int = 0) -> dict[str, int]:
  """Writes the folder (see the module docstring); returns {split: videos written}."""
  names = demo_video.class_names(num_classes)
  class_glyphs, decoys = demo_video.glyph_bank(num_classes)
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, 'classInd.txt'), 'w', encoding='utf-8') as f:
    f.write('\n'.join(names) + '\n')
  for split_id, (split, count, listing) in enumerate(
      (('train', num_train, 'train.csv'), ('val', num_val, 'val.csv'))):
    os.makedirs(os.path.join(out, split), exist_ok=True)
    lines = []
    for i in range(count):
      label = i % num_classes
      rng = np.random.default_rng([seed, split_id, i])
      frames, _, _ = demo_video.render_video(rng, label, class_glyphs, decoys)
      name = f'{split}/{i:04d}.mp4'
      write_mp4(os.path.join(out, name), enlarge(frames, SCALES[i % len(SCALES)]), FPS)
      lines.append(f'{name},{names[label]}')
    if split == 'train':
      lines += _write_broken(out, broken, names)
    with open(os.path.join(out, listing), 'w', encoding='utf-8') as f:
      f.write('\n'.join(lines) + '\n')
  return {'train': num_train, 'validation': num_val, 'broken': broken}


def _write_broken(out: str, count: int, names: list[str]) -> list[str]:
  lines = []
  for i in range(count):
    kind = BROKEN[i % len(BROKEN)]
    name = f'broken/{i:02d}_{kind}.mp4'
    path = os.path.join(out, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if kind == 'empty':
      open(path, 'wb').close()
    elif kind == 'text':
      with open(path, 'w', encoding='utf-8') as f:
        f.write('not a video\n' * 50)
    elif kind == 'truncated':
      frames = np.zeros((16, 64, 64, 3), np.uint8)
      write_mp4(path, frames, FPS)
      with open(path, 'rb') as f:
        data = f.read()
      with open(path, 'wb') as f:
        f.write(data[:len(data) // 3])
    lines.append(f'{name},{names[i % len(names)]}')  # 'missing': listed, never written
  return lines


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  p.add_argument('--out', required=True, help='the folder to write (a manual_dir)')
  p.add_argument('--classes', type=int, default=6)
  p.add_argument('--train', type=int, default=120)
  p.add_argument('--val', type=int, default=48)
  p.add_argument('--broken', type=int, default=4, help='unreadable files listed in train.csv')
  p.add_argument('--seed', type=int, default=0)
  args = p.parse_args(argv)
  if not 2 <= args.classes <= 10:
    p.error(f'--classes must be between 2 and 10 (the demo glyphs), got {args.classes}')
  counts = write_dataset(args.out, args.classes, args.train, args.val, args.broken, args.seed)
  print(f'Wrote {counts["train"]} train and {counts["validation"]} validation videos '
        f'({args.classes} classes) and {counts["broken"]} broken files to {args.out}.')
  return 0


if __name__ == '__main__':
  sys.exit(main())
