r"""Classifies video files with a trained checkpoint: `python -m arnet_jax.predict`.

  python -m arnet_jax.predict --checkpoint=runs/my/finetune clip.mp4 more_videos/ \
      [--top_k=5] [--json] [--strips=DIR] [--data_dir=DIR] [--config=FILE [--config.x=y]]

Each video goes through evaluation's own steps, so a video of the evaluation split gets the
scores evaluation gives it: decoded into JPEG frames as `prepare` stored the model's dataset
(the fps, short side and JPEG quality of its prepared copy, read from the copy's name), TSN's
evaluation sampling (segment centres), the evaluation resize and centre crop, ImageNet
normalisation (`data.sampling`, `data.transforms`), then the method's evaluation forward
(`evaluate.Evaluator.predict`: the registry entry's inference). The config is the one saved in
the checkpoint (`--config` replaces it); the class names are the prepared dataset's.

Per video: the top-k classes with their softmax probabilities (of the video logits, as
evaluation scores mAP), the action in effect on each frame (the method's `action_names`, as
`tools.policy_strips.frame_labels` captions them), its GFLOPs (`flops.decision_gflops`, as
evaluation counts them) and the seconds it took (decoding and the model; XLA compiles once,
before the first video). A video that cannot be read (missing, empty, corrupt, too few frames)
is reported on one line and the others are predicted.

Exit status: 0 when at least one video was predicted, 1 when none could be, 2 for a user error
(a missing checkpoint, one of another model than the config, no videos found).

Shape letters: N frames decoded from a video, T frames per clip (data.num_frames), S the crop
side (data.image_size), A actions, C classes.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
import time
from typing import Sequence, TextIO

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags, logging

from arnet_jax import checkpoint as ckpt_lib
from arnet_jax import errors, evaluate, flops, metrics, models, parallel, registry
from arnet_jax.data import decode, sources
from arnet_jax.models import kernels

SCORE = 'softmax probability of the video logits'
NOTHING_PREDICTED = 1  # the exit status when no video could be predicted (2: a user error)
DEFAULT_FRAME_OPTIONS = decode.FrameOptions(fps=None, short_side=256, jpeg_quality=90)
# builders.config_name of a copy prepared from videos, e.g. 'videos_fps0p5_sidefull_q95'.
_VIDEO_COPY = re.compile(r'videos_fps(?P<fps>all|[0-9p]+)_side(?P<side>full|\d+)(?:_q(?P<q>\d+))?')


@dataclasses.dataclass(frozen=True)
class DatasetFacts:
  """What predicting takes from the model's prepared dataset."""
  class_names: tuple[str, ...]          # [C]
  frame_options: decode.FrameOptions    # how its videos were decoded into stored frames
  source: str                           # where both came from, in words


@dataclasses.dataclass(frozen=True)
class Clip:
  """One video's evaluation clip."""
  video: np.ndarray    # [T, S, S, 3] data.dtype, ImageNet-normalised: what the model reads
  frames: np.ndarray   # uint8 [T, S, S, 3], the same before normalisation (for strips)
  decoded: int         # N


# --- The checkpoint and its config. ---------------------------------------------------------

def restore(model, config: ml_collections.ConfigDict, checkpoint: str, config_given: bool
            ) -> dict:
  """Evaluation's `restore_for`. A checkpoint that does not fit `--config` is named with how
  its saved config differs (without a saved config: with every entry that does not fit)."""
  try:
    return evaluate.restore_for(model, config, checkpoint)
  except ckpt_lib.DamagedCheckpointError:
    raise
  except errors.UserError as e:
    if not config_given:
      raise
    changes = model_changes(checkpoint, config)
    if not changes:
      raise errors.UserError(f'{e}\nThe checkpoint holds another model than --config '
                             'describes.') from None
    shown = '; '.join(changes[:8]) + (f'; and {len(changes) - 8} more' if len(changes) > 8 else '')
    raise errors.UserError(
        f'Checkpoint {checkpoint} holds another model than --config describes: it was trained '
        f'with {shown}. Pass the config it was trained with, or drop --config to use the config '
        'saved with it.') from None


def model_changes(checkpoint: str, config: ml_collections.ConfigDict) -> list[str]:
  """'model.x=1 (this run: 2)' for each model setting where the checkpoint's saved config
  differs from `config`, the variant first; [] when it has no saved config."""
  try:
    saved = json.loads(json.dumps(ckpt_lib.saved_config(checkpoint).to_dict()))
  except errors.UserError:
    return []
  changes = ckpt_lib.config_changes(saved, config.to_dict(), fields=('model',))
  return sorted(changes, key=lambda change: not change.startswith('model.variant='))


# --- The prepared dataset: class names and how its videos became frames. --------------------

def stored_frame_options(config_name: str) -> decode.FrameOptions | None:
  """How `prepare` decoded a prepared copy's videos, from the copy's name
  (`builders.config_name`): 'videos_fps4_side256' -> 4 fps, short side 256, JPEG quality 90.
  None for a copy of frame folders or a generated one (the demo)."""
  m = _VIDEO_COPY.fullmatch(config_name)
  if not m:
    return None
  return decode.FrameOptions(
      fps=None if m['fps'] == 'all' else float(m['fps'].replace('p', '.')),
      short_side=None if m['side'] == 'full' else int(m['side']),
      jpeg_quality=int(m['q'] or 90))


def fallback_frame_options(dataset: str) -> decode.FrameOptions:
  """`prepare`'s defaults for `dataset` (its builder's fps; every frame for the demo)."""
  from arnet_jax.data import builders  # pylint: disable=g-import-not-at-top (TensorFlow)
  builder = builders.BUILDERS.get(dataset)
  return dataclasses.replace(DEFAULT_FRAME_OPTIONS,
                             fps=builder.DEFAULT_FPS if builder else None)


def describe_options(options: decode.FrameOptions) -> str:
  fps = 'every frame' if options.fps is None else f'{options.fps:g} fps'
  side = 'full size' if options.short_side is None else f'short side {options.short_side}'
  return f'{fps}, {side}, JPEG quality {options.jpeg_quality}'


def dataset_facts(config: ml_collections.ConfigDict, err: TextIO = sys.stderr) -> DatasetFacts:
  """The class names and frame options of the model's prepared dataset (`config.data`).

  A dataset that is not at hand gives 'class <i>' names and `prepare`'s default options, with
  a warning on `err`; one with another number of classes than the model is a UserError.
  """
  from arnet_jax import data as data_lib  # pylint: disable=g-import-not-at-top (TensorFlow)
  num_classes = config.model.num_classes
  try:
    info = data_lib.get_builder(config.data).info
  except errors.UserError as e:
    options = fallback_frame_options(config.data.name)
    reason = str(e).split('. Run:')[0]  # predicting needs no dataset: no advice to prepare one
    print(f'warning: the prepared dataset is not at hand ({reason}): classes '
          f'are named "class <i>" and videos decoded at {describe_options(options)}. Pass '
          '--data_dir=DIR (where it was prepared) for its class names and frame rate.',
          file=err)
    return DatasetFacts(tuple(f'class {i}' for i in range(num_classes)), options,
                        f"prepare's defaults for {config.data.name}: the dataset was not found")
  names = tuple(info.features['label'].names)
  if len(names) != num_classes:
    raise errors.UserError(
        f'The prepared dataset {info.name}/{info.config_name} in {config.data.data_dir} has '
        f'{len(names)} classes but the model {num_classes}: pass --data_dir=DIR, the data_dir '
        'the model was trained on.')
  copy = f'{info.name}/{info.config_name}'
  options = stored_frame_options(info.config_name)
  if options is None:  # frames or generated: no record of a frame rate
    options = fallback_frame_options(config.data.name)
    return DatasetFacts(names, options, f"prepare's defaults: {copy} was not made from videos")
  return DatasetFacts(names, options, f'as {copy} was prepared')


# --- Videos. ---------------------------------------------------------------------------------

def find_videos(paths: Sequence[str]) -> list[str]:
  """The videos to predict: each file named (as given; a missing one is reported when read)
  and, under each folder, the files with a video extension (`sources.VIDEO_EXTENSIONS`)."""
  if not paths:
    raise errors.UserError('No videos given: name video files or folders after the flags, e.g. '
                           'python -m arnet_jax.predict --checkpoint=DIR clip.mp4 videos/')
  found = []
  for path in paths:
    if not os.path.isdir(path):
      found.append(path)
      continue
    for folder, _, files in sorted(os.walk(path)):
      found += [os.path.join(folder, f) for f in sorted(files)
                if os.path.splitext(f)[1].lower() in sources.VIDEO_EXTENSIONS]
  if not found:
    raise errors.UserError(
        f'No videos found in {", ".join(paths)}: no file ending in '
        f'{" ".join(sources.VIDEO_EXTENSIONS)}. Name video files or folders holding them.')
  return found


def read_clip(path: str, options: decode.FrameOptions,
              data_config: ml_collections.ConfigDict) -> Clip:
  """A video file -> its evaluation clip, as `data.create_split(train=False)` makes one from the
  frames `prepare` stores: decoded to JPEG frames (`decode.decode_video`), T segment centres,
  the eval resize and centre crop, ImageNet normalisation.

  Raises:
    decode.BadSourceError: missing, empty, corrupt file, or fewer than 3 frames.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from arnet_jax.data import sampling, transforms  # pylint: disable=g-import-not-at-top
  jpegs = decode.decode_video(path, options)
  idx = sampling.eval_indices_np(len(jpegs), data_config.num_frames)
  frames = tf.stack([tf.io.decode_jpeg(jpegs[i], channels=3) for i in idx])
  view = transforms.eval_view(frames, data_config.image_size)
  dtype = tf.bfloat16 if data_config.dtype == 'bfloat16' else tf.float32
  video = tf.cast(transforms.normalize(view), dtype).numpy()
  return Clip(video, np.rint(view.numpy() * 255.0).astype(np.uint8), len(jpegs))


# --- The model. ------------------------------------------------------------------------------

class Predictor:
  """A checkpoint ready to classify videos: `predictor(path, index)` -> one video's result.

  Args:
    checkpoint: a training workdir, its best/ or checkpoints/ folder, or one step folder.
    config: the model's config (None: the one saved in the checkpoint).
    data_dir: where the prepared dataset lies (None: the config's data.data_dir).
    err: where warnings go.
  """

  def __init__(self, checkpoint: str, config: ml_collections.ConfigDict | None = None,
               data_dir: str | None = None, err: TextIO = sys.stderr):
    start = time.perf_counter()
    ckpt_lib.resolve(checkpoint)  # a wrong path fails before anything is built
    self.checkpoint = os.path.abspath(checkpoint)
    given = config is not None
    config = ckpt_lib.job_config(checkpoint, config, data_dir)
    kernels.select(config.model.kernels)  # once per job, before anything is traced
    if config.model.num_classes is None:
      from arnet_jax import data as data_lib  # pylint: disable=g-import-not-at-top
      config = data_lib.with_dataset_classes(config)
    self.config, self.method = config, registry.of(config)
    self.model = models.create_model(config.model)
    self.variables = restore(self.model, config, checkpoint, config_given=given)
    self.facts = dataset_facts(config, err)
    self.evaluator = evaluate.Evaluator(self.model, config, parallel.make_mesh())
    size, t = config.data.image_size, config.data.num_frames
    warm_up = np.zeros((t, size, size, 3), jnp.dtype(config.data.dtype))
    self.forward(warm_up, 0)  # compiles now, so that no video's time includes it
    self.setup_seconds = time.perf_counter() - start

  def forward(self, video: np.ndarray, index: int) -> dict:
    """One clip `[T, S, S, 3]` -> evaluation's prediction of it (logits `[C]`, actions
    `[T, A]`, decided `[T]`, ...), on the host. `index` seeds a random policy's draws."""
    out = self.evaluator.predict(self.variables, video[None], index, np.ones(1, np.float32))
    return {k: np.asarray(v)[0] for k, v in jax.device_get(out).items()}

  def __call__(self, path: str, index: int = 0, top_k: int = 5) -> dict:
    """{'path', 'decoded_frames', 'top_k': [{'class', 'name', 'score'}], 'actions' [T],
    'gflops', 'seconds'} of the video at `path`, or {'path', 'error'} when it cannot be read;
    `out` (the forward's arrays) and `clip` are kept for drawing it."""
    start = time.perf_counter()
    try:
      clip = read_clip(path, self.facts.frame_options, self.config.data)
    except decode.BadSourceError as e:
      return {'path': path, 'error': str(e)}
    out = self.forward(clip.video, index)
    seconds = time.perf_counter() - start
    return {'path': path, 'decoded_frames': clip.decoded,
            'top_k': self.top_classes(out['logits'], top_k),
            'actions': self.frame_actions(out), 'gflops': self.gflops(out['actions']),
            'seconds': seconds, 'out': out, 'clip': clip}

  def top_classes(self, logits: np.ndarray, k: int) -> list[dict]:
    """The k best classes of video logits `[C]`, with their softmax probabilities."""
    scores = metrics.softmax(np.asarray(logits, np.float64)[None])[0]
    best = np.argsort(-scores, kind='stable')[:k]
    return [{'class': int(c), 'name': self.facts.class_names[c], 'score': float(scores[c])}
            for c in best]

  def frame_actions(self, out: dict) -> list[str]:
    from arnet_jax.tools import policy_strips  # pylint: disable=g-import-not-at-top (matplotlib)
    return policy_strips.frame_labels(out['actions'], out['decided'], self.evaluator.names)

  def gflops(self, actions: np.ndarray) -> float:
    """GFLOPs of one video's actions `[T, A]`, as evaluation counts them."""
    return float(flops.decision_gflops(actions[None], self.evaluator.table)['per_video'][0])

  def write_strip(self, result: dict, path: str) -> None:
    """The video's policy strip (`tools.policy_strips`) as the PNG `path`."""
    from arnet_jax.tools import policy_strips  # pylint: disable=g-import-not-at-top (matplotlib)
    out, best = result['out'], result['top_k'][0]
    clip = policy_strips.Clip(0, os.path.basename(result['path']), None, result['clip'].frames,
                              None)
    policy_strips.plot_policy_strips(
        [clip], out['actions'][None], out['decided'][None], np.array([best['class']]),
        self.evaluator.names, self.facts.class_names, path,
        resize_method=self.config.model.resize,
        title=(f'{self.config.model.variant}: {result["path"]} ({best["name"]} '
               f'{best["score"]:.3f}, {result["gflops"]:.4g} GFLOPs)'),
        patch_boxes=out['patch_boxes'][None] if 'patch_boxes' in out else None)

  def header(self) -> dict:
    c = self.config
    return {'checkpoint': self.checkpoint, 'variant': c.model.variant,
            'method': self.method.summary, 'frames_per_clip': c.data.num_frames,
            'image_size': c.data.image_size, 'score': SCORE,
            'decoding': describe_options(self.facts.frame_options),
            'decoding_from': self.facts.source, 'setup_seconds': self.setup_seconds}


# --- Output. ---------------------------------------------------------------------------------

def public(result: dict) -> dict:
  """A video's result without its arrays (what --json prints)."""
  return {k: v for k, v in result.items() if k not in ('out', 'clip')}


def text_lines(result: dict) -> list[str]:
  """A predicted video as text: its path and cost, the top-k classes, the per-frame actions."""
  lines = [f'{result["path"]}  ({result["decoded_frames"]} frames decoded, '
           f'{result["gflops"]:.4g} GFLOPs, {result["seconds"]:.3f} s)']
  width = max(len(c['name']) for c in result['top_k'])
  lines += [f'  {i + 1}. {c["name"]:<{width}}  {c["score"]:.4f}'
            for i, c in enumerate(result['top_k'])]
  lines.append('  actions: ' + ' '.join(result['actions']))
  return lines


def header_lines(header: dict) -> list[str]:
  return [f'checkpoint {header["checkpoint"]} ({header["variant"]}: {header["method"]})',
          f'clips of {header["frames_per_clip"]} frames at {header["image_size"]} px; videos '
          f'decoded at {header["decoding"]} ({header["decoding_from"]}); '
          f'loaded and compiled in {header["setup_seconds"]:.1f} s',
          f'scores: {SCORE}', '']


def strip_path(directory: str, video: str, taken: set[str]) -> str:
  """DIR/<video name>.png, numbered when two videos share a name."""
  stem = os.path.splitext(os.path.basename(video))[0] or 'video'
  name, n = f'{stem}.png', 1
  while name in taken:
    n += 1
    name = f'{stem}_{n}.png'
  taken.add(name)
  return os.path.join(directory, name)


def run(checkpoint: str, paths: Sequence[str], *, config: ml_collections.ConfigDict | None = None,
        data_dir: str | None = None, top_k: int = 5, as_json: bool = False,
        strips: str | None = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
  """The command: finds the videos of `paths` (files or folders), loads the checkpoint
  (`Predictor`) and predicts them (`predict_all`). Returns the exit status (see the module
  docstring); a bad checkpoint, config or path raises a UserError."""
  if top_k < 1:
    raise errors.UserError(f'--top_k must be >= 1, got {top_k}.')
  videos = find_videos(paths)
  predictor = Predictor(checkpoint, config, data_dir, err)
  return predict_all(predictor, videos, top_k=top_k, as_json=as_json, strips=strips, out=out,
                     err=err)


def predict_all(predictor: Predictor, videos: Sequence[str], *, top_k: int = 5,
                as_json: bool = False, strips: str | None = None, out: TextIO = sys.stdout,
                err: TextIO = sys.stderr) -> int:
  """Predicts `videos` and prints the results on `out` (text as each video is done, or one
  JSON object at the end with `as_json`); each unreadable video is one line on `err`. With
  `strips`, writes a policy strip per video into that folder. Returns 0 when a video was
  predicted, NOTHING_PREDICTED otherwise."""
  header = predictor.header()
  if not as_json:
    print('\n'.join(header_lines(header)), file=out, flush=True)
  if strips:
    os.makedirs(strips, exist_ok=True)
  results, taken = [], set()
  for i, path in enumerate(videos):
    result = predictor(path, i, top_k)
    if 'error' in result:
      print(f'cannot predict {path}: {result["error"]}', file=err, flush=True)
    else:
      if strips:
        result['strip'] = strip_path(strips, path, taken)
        predictor.write_strip(result, result['strip'])
      if not as_json:
        print('\n'.join(text_lines(result)), file=out, flush=True)
    results.append(public(result))
  predicted = sum('error' not in r for r in results)
  if as_json:
    json.dump({**header, 'videos': results}, out, indent=2)
    print(file=out)
  else:
    print(f'\npredicted {predicted} of {len(results)} videos', file=out)
  return 0 if predicted else NOTHING_PREDICTED


# --- Command line. ---------------------------------------------------------------------------

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command's flags (defined only when it runs, so importing this module defines none)."""
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string('checkpoint', None, 'A training workdir, its best/ or checkpoints/ folder, '
                      'or one step folder.')
  config_flags.DEFINE_config_file('config', None, 'The model\'s config (a configs/*.py file); '
                                  'default: the one saved with the checkpoint.',
                                  lock_config=True)
  flags.DEFINE_string('data_dir', None, 'Where the model\'s dataset was prepared (class names, '
                      'frame rate); default: the config\'s data.data_dir.')
  flags.DEFINE_integer('top_k', 5, 'Classes shown per video.')
  flags.DEFINE_bool('json', False, 'Print one JSON object instead of text.')
  flags.DEFINE_string('strips', None, 'Write each video\'s policy strip (a PNG) into this folder.')
  flags.DEFINE_string('compilation_cache', '~/.cache/arnet_jax/xla',
                      "JAX's persistent compilation cache ('' turns it off).")
  flags.mark_flags_as_required(['checkpoint'])


@errors.exit_on_user_error  # `error: <message>`, exit status 2
def main(argv: list[str]) -> int:
  logging.set_verbosity(logging.WARNING)  # Orbax and TFDS log every read at INFO
  if FLAGS.compilation_cache:
    jax.config.update('jax_compilation_cache_dir', os.path.expanduser(FLAGS.compilation_cache))
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)
  return run(FLAGS.checkpoint, argv[1:], config=FLAGS.config, data_dir=FLAGS.data_dir,
             top_k=FLAGS.top_k, as_json=FLAGS.json, strips=FLAGS.strips)


if __name__ == '__main__':
  define_flags()
  app.run(main)
