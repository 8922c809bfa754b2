"""One command from files on disk to a ready TFDS dataset.

  python -m arnet_jax.data.prepare --dataset=fcvid --manual_dir=DIR --data_dir=DIR
  python -m arnet_jax.data.prepare --dataset=demo --data_dir=/data/tfds

Decodes in parallel over all cores with a progress bar. Interrupted? Run the
same command again: videos decoded before the interruption are reused. At the
end it prints `prepared N, skipped M (reasons...)`; the full report lies next
to the dataset (prepare_report.json / .txt).
"""

from __future__ import annotations

import argparse
import sys

import tensorflow_datasets as tfds

from arnet_jax import errors
from arnet_jax.data import builders
from arnet_jax.data import demo
from arnet_jax.data import parallel_decode
from arnet_jax.data import report as report_lib
from arnet_jax.data import sources

DATASETS = ('activitynet', 'fcvid', 'mini_kinetics', 'custom', 'demo')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(
      prog='python -m arnet_jax.data.prepare', description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--dataset', required=True, choices=DATASETS)
  p.add_argument('--manual_dir', help='folder with the videos/frames and annotation '
                 '(not for demo); run without it to see the expected layout')
  p.add_argument('--data_dir', default=None, help='TFDS data_dir (default: TFDS default)')
  p.add_argument('--input_kind', choices=('videos', 'frames'), default=None,
                 help='default: detected from the files in manual_dir')
  p.add_argument('--fps', type=float, default=None,
                 help='frames kept per second of video (default: activitynet 2, fcvid 1, '
                 'mini_kinetics 8, custom 4); 0 keeps every frame')
  p.add_argument('--short_side', type=int, default=256,
                 help='shrink frames to this short side (0 keeps the size)')
  p.add_argument('--frame_step', type=int, default=1,
                 help='frames input: keep every n-th frame (e.g. 15 turns 30 fps into 2)')
  p.add_argument('--jpeg_quality', type=int, default=90)
  p.add_argument('--num_workers', type=int, default=None,
                 help='decoding processes (default: all cores)')
  p.add_argument('--demo_config', default='default', choices=('default', 'tiny'))
  p.add_argument('--keep_work_dir', action='store_true',
                 help='keep the per-video frame cache after a successful build')
  p.add_argument('--no_progress', action='store_true')
  return p.parse_args(argv)


def prepare(args: argparse.Namespace) -> report_lib.PrepareReport | dict:
  """Prepares the dataset named by `args`; returns its report."""
  if args.dataset == 'demo':
    builder = demo.ensure_demo_dataset(args.data_dir, args.demo_config)
    return report_lib.read_report(builder.data_path)
  if not args.manual_dir:
    raise sources.ManualDirError(
        f'--manual_dir is required for {args.dataset}. It must hold:\n'
        + sources.layout_text(args.dataset))
  kind = args.input_kind or sources.detect_input_kind(args.dataset, args.manual_dir)
  cls = builders.BUILDERS[args.dataset]
  config = cls.make_config(
      input_kind=kind,
      fps='default' if args.fps is None else (args.fps or None),
      short_side=args.short_side or None, frame_step=args.frame_step,
      jpeg_quality=args.jpeg_quality)
  builder = cls(data_dir=args.data_dir, config=config)
  builder.num_workers = args.num_workers or parallel_decode.default_num_workers()
  builder.show_progress = not args.no_progress
  builder.keep_work_dir = args.keep_work_dir
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=args.manual_dir, try_download_gcs=False))
  if builder.last_report is None:
    print(f'{builder.data_path} was already prepared; its report:')
    return report_lib.read_report(builder.data_path)
  return builder.last_report


def main(argv: list[str] | None = None) -> int:
  args = parse_args(argv)
  try:
    result = prepare(args)
  except errors.UserError as e:  # manual_dir, annotations, labels: one message, exit status 2
    return errors.show(e)
  summary = result.summary() if isinstance(result, report_lib.PrepareReport) else result['summary']
  if isinstance(result, report_lib.PrepareReport) and result.skipped:
    print(result.to_text(), end='')
  print(summary)
  return 0


if __name__ == '__main__':
  sys.exit(main())
