"""Input pipeline throughput: clips/s per CPU core for decode + augment.

  python -m arnet_jax.bench.input [--json]

Two workloads, both built in a temporary folder (nothing downloaded):
  demo  the demo dataset (73 x 97 JPEG frames), T=16 clips at 64 px;
  mp4   generated 320 x 240 mp4s (moving noise, 25 fps), prepared with
        `prepare` (timed too: video decode + JPEG encode per core), then
        T=16 clips at 224 px (short side 240: multi-scale crop, resize, flip).
For each: training clips (random TSN sampling, multi-scale crop + flip) and
evaluation clips (centre sampling, resize + centre crop), ImageNet-normalised
float32, batched as the training code receives them.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time

import av
import numpy as np

from arnet_jax import defaults
from arnet_jax.data import demo
from arnet_jax.data import parallel_decode
from arnet_jax.data import pipeline
from arnet_jax.data import prepare


def write_noise_videos(root: str, count: int, seconds: float, fps: int = 25,
                       width: int = 320, height: int = 240) -> None:
  """`count` h264 mp4s of drifting noise, listed in a custom-dataset manual_dir."""
  rng = np.random.default_rng(0)
  os.makedirs(os.path.join(root, 'videos'), exist_ok=True)
  rows = []
  for i in range(count):
    name = f'videos/clip{i:03d}.mp4'
    base = rng.integers(0, 256, (height, width * 2, 3), dtype=np.uint8)
    with av.open(os.path.join(root, name), 'w') as container:
      stream = container.add_stream('libx264', rate=fps)
      stream.width, stream.height, stream.pix_fmt = width, height, 'yuv420p'
      for t in range(int(seconds * fps)):
        shift = (2 * t) % width
        frame = av.VideoFrame.from_ndarray(base[:, shift:shift + width], format='rgb24')
        for packet in stream.encode(frame):
          container.mux(packet)
      for packet in stream.encode():
        container.mux(packet)
    rows.append(f'{name},class{i % 2}')
  with open(os.path.join(root, 'classInd.txt'), 'w') as f:
    f.write('class0\nclass1\n')
  with open(os.path.join(root, 'train.csv'), 'w') as f:
    f.write('\n'.join(rows) + '\n')
  with open(os.path.join(root, 'val.csv'), 'w') as f:
    f.write('\n'.join(rows[:max(1, count // 4)]) + '\n')


def clips_per_second(cfg, split: str, train: bool, num_classes: int, batch_size: int,
                     num_batches: int) -> float:
  """Clips/s of the pipeline after a warm-up batch (the batch is materialised as numpy)."""
  it, _ = pipeline.create_split(cfg, split, batch_size=batch_size, train=train,
                                num_classes=num_classes, num_epochs=None if train else 1000)
  next(it)  # warm-up: graph tracing, file opening
  start = time.perf_counter()
  for _ in range(num_batches):
    batch = next(it)
  elapsed = time.perf_counter() - start
  assert np.isfinite(batch['video']).all()
  return num_batches * batch_size / elapsed


def run(args: argparse.Namespace) -> dict:
  cores = parallel_decode.default_num_workers()
  result = {'cores': cores, 'batch_size': args.batch_size, 'num_frames': 16}
  with tempfile.TemporaryDirectory() as tmp:
    # Demo: 64 px, frames stored at 73 x 97.
    with contextlib.redirect_stdout(io.StringIO()):
      demo.ensure_demo_dataset(tmp, 'default')
    cfg = defaults.data_config('demo')
    cfg.data_dir = tmp
    for name, split, train in (('demo_train', 'train', True), ('demo_eval', 'validation', False)):
      rate = clips_per_second(cfg, split, train, 10, args.batch_size, args.num_batches)
      result[f'{name}_clips_per_s'] = round(rate, 1)
      result[f'{name}_clips_per_s_per_core'] = round(rate / cores, 1)

    # Generated mp4s: prepare, then 224 px clips.
    manual = os.path.join(tmp, 'manual')
    write_noise_videos(manual, args.videos, args.seconds)
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
      prepare.main(['--dataset=custom', f'--manual_dir={manual}', f'--data_dir={tmp}',
                    '--fps=25', '--no_progress', f'--num_workers={cores}'])
    elapsed = time.perf_counter() - start
    frames = args.videos * int(args.seconds * 25)
    result['mp4_prepare_videos_per_s_per_core'] = round(args.videos / elapsed / cores, 2)
    result['mp4_prepare_frames_per_s_per_core'] = round(frames / elapsed / cores, 1)
    cfg = defaults.data_config('custom')
    cfg.data_dir = tmp
    for name, split, train in (('mp4_train', 'train', True), ('mp4_eval', 'validation', False)):
      rate = clips_per_second(cfg, split, train, 2, args.batch_size, args.num_batches)
      result[f'{name}_clips_per_s'] = round(rate, 1)
      result[f'{name}_clips_per_s_per_core'] = round(rate / cores, 1)
  return result


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(prog='python -m arnet_jax.bench.input', description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--batch_size', type=int, default=8)
  p.add_argument('--num_batches', type=int, default=20)
  p.add_argument('--videos', type=int, default=16, help='generated mp4s')
  p.add_argument('--seconds', type=float, default=4.0, help='length of each mp4')
  p.add_argument('--json', action='store_true', help='end with one JSON line')
  args = p.parse_args(argv)
  r = run(args)
  print(f'input pipeline on {r["cores"]} core(s), T=16, batch {r["batch_size"]} '
        '(clips/s per core; total in brackets):')
  for name, label in (('demo_train', 'demo 64 px, train (crop+flip)'),
                      ('demo_eval', 'demo 64 px, eval (centre crop)'),
                      ('mp4_train', 'mp4 224 px, train (crop+flip)'),
                      ('mp4_eval', 'mp4 224 px, eval (resize+crop)')):
    print(f'  {label:32s} {r[f"{name}_clips_per_s_per_core"]:7.1f}  '
          f'({r[f"{name}_clips_per_s"]:.1f})')
  print(f'  prepare mp4 (decode + JPEG)      {r["mp4_prepare_frames_per_s_per_core"]:7.1f} '
        'frames/s per core')
  if args.json:
    print(json.dumps(r))
  return 0


if __name__ == '__main__':
  sys.exit(main())
