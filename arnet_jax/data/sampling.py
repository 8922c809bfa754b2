"""TSN frame sampling: which T of a video's N stored frames form a clip.

The video is cut into T equal segments and one frame is taken from each:
training takes a random frame inside each segment, evaluation the segment's
centre. Indices are 0-based positions among the stored frames. Every function
exists twice, in numpy (reference, used by tests and tools) and in TensorFlow
(used inside the tf.data pipeline); both compute the same integers.

Two rules for training are supported:

* 'segment' (default): segment x covers frames [floor(x N / T), floor((x+1) N / T)),
  so every frame of the video can be drawn. A segment that holds no frame
  (N < T) gives its start frame, which repeats frames evenly.
* 'original': the AR-Net/TSN code's integer rule: segments of N // T frames
  from the start (for T <= N < 2T this always returns frames 0..T-1, never the
  tail); N < T pads with the last frame: [0, 1, ..., N-1, N-1, ...].

Both agree when T divides N. Evaluation uses the centre rule of the original
test code, int(N/T/2 + x N/T), for every N (N < T repeats frames evenly).

Randomness enters only through `u`, uniform numbers in [0, 1), one per segment,
so the numpy and TF versions can be compared on the same draws.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

TRAIN_RULES = ('segment', 'original')


def _check(num_frames: int, num_segments: int) -> None:
  if num_frames < 1:
    raise ValueError(f'A video needs at least one frame, got num_frames={num_frames}.')
  if num_segments < 1:
    raise ValueError(f'num_segments (T) must be >= 1, got {num_segments}.')


def train_indices_np(num_frames: int, num_segments: int, u: np.ndarray,
                     rule: str = 'segment') -> np.ndarray:
  """Random TSN indices for training.

  Args:
    num_frames: N, frames stored for the video.
    num_segments: T.
    u: float [T], uniform draws in [0, 1).
    rule: 'segment' or 'original' (see the module docstring).

  Returns:
    int32 [T], non-decreasing frame indices in [0, N).
  """
  _check(num_frames, num_segments)
  n, t = num_frames, num_segments
  x = np.arange(t, dtype=np.int64)
  u = np.asarray(u, np.float64)
  if rule == 'segment':
    start = x * n // t
    length = np.maximum((x + 1) * n // t - start, 1)
    idx = start + np.floor(u * length).astype(np.int64)
  elif rule == 'original':
    seg = n // t
    if seg > 0:
      idx = x * seg + np.floor(u * seg).astype(np.int64)
    else:
      idx = np.minimum(x, n - 1)
  else:
    raise ValueError(f'Unknown sampling rule {rule!r}; expected one of {TRAIN_RULES}.')
  return np.minimum(idx, n - 1).astype(np.int32)


def eval_indices_np(num_frames: int, num_segments: int) -> np.ndarray:
  """Deterministic TSN indices (segment centres) for evaluation, int32 [T]."""
  _check(num_frames, num_segments)
  tick = num_frames / float(num_segments)
  idx = np.floor(tick / 2.0 + tick * np.arange(num_segments, dtype=np.float64))
  return np.minimum(idx, num_frames - 1).astype(np.int32)


def train_indices_tf(num_frames: tf.Tensor, num_segments: int, u: tf.Tensor,
                     rule: str = 'segment') -> tf.Tensor:
  """TensorFlow twin of `train_indices_np`; `num_frames` is a scalar tensor."""
  n = tf.cast(num_frames, tf.int64)
  t = tf.constant(num_segments, tf.int64)
  x = tf.range(num_segments, dtype=tf.int64)
  u = tf.cast(u, tf.float64)
  if rule == 'segment':
    start = x * n // t
    length = tf.maximum((x + 1) * n // t - start, 1)
    idx = start + tf.cast(tf.floor(u * tf.cast(length, tf.float64)), tf.int64)
  elif rule == 'original':
    seg = n // t
    idx = tf.cond(
        seg > 0,
        lambda: x * seg + tf.cast(tf.floor(u * tf.cast(seg, tf.float64)), tf.int64),
        lambda: tf.minimum(x, n - 1))
  else:
    raise ValueError(f'Unknown sampling rule {rule!r}; expected one of {TRAIN_RULES}.')
  return tf.cast(tf.minimum(idx, n - 1), tf.int32)


def eval_indices_tf(num_frames: tf.Tensor, num_segments: int) -> tf.Tensor:
  """TensorFlow twin of `eval_indices_np`."""
  n = tf.cast(num_frames, tf.float64)
  tick = n / float(num_segments)
  idx = tf.floor(tick / 2.0 + tick * tf.range(num_segments, dtype=tf.float64))
  return tf.cast(tf.minimum(idx, n - 1.0), tf.int32)
