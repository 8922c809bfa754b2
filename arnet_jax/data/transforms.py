"""Frame transforms of a clip: TSN multi-scale crop, flip, eval resize + crop, normalisation.

All TF functions act on one clip `frames` uint8 or float [T, H, W, 3] and
apply the *same* geometry to all T frames (the original's Group* transforms).
Output side S = image_size, the top resolution.

Train (TSM's GroupMultiScaleCrop + GroupRandomHorizontalFlip, with its defaults
max_distort=1 and the 13 fixed crop positions):
  base = min(H, W); candidate sides int(base * s) for each scale s, snapped to
  S when within 3 pixels of it; a (width, height) pair whose scale indices
  differ by at most 1; the crop's corner one of 13 fixed positions on a 4x4
  grid of steps; bilinear resize to S x S; flip the clip with probability 1/2.
Eval: resize the short side to round(S * 256 / 224) (torchvision Resize(int)),
  then the centre S x S crop (offsets rounded half to even, like torchvision);
  `eval_boxes` maps boxes in a frame (the demo's glyph boxes) to the same view.
"""

from __future__ import annotations

import itertools

import numpy as np
import tensorflow as tf

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)  # RGB, on [0, 1]
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)

# Crop corners as (column, row) multiples of the grid step (image - crop) // 4.
_FIXED_OFFSETS = ((0, 0), (4, 0), (0, 4), (4, 4), (2, 2), (0, 2), (4, 2), (2, 4),
                  (2, 0), (1, 1), (3, 1), (1, 3), (3, 3))


def eval_resize_side(image_size: int) -> int:
  """Short side before the evaluation centre crop: 256 for 224, 73 for 64."""
  return int(round(image_size * 256 / 224))


def scale_pairs(num_scales: int, max_distort: int = 1) -> list[tuple[int, int]]:
  """(width index, height index) pairs of scales allowed in one crop."""
  return [(j, i) for i, j in itertools.product(range(num_scales), repeat=2)
          if abs(i - j) <= max_distort]


def multi_scale_crop_box(height: tf.Tensor, width: tf.Tensor, image_size: int,
                         scales: tuple[float, ...], u: tf.Tensor,
                         max_distort: int = 1) -> tuple[tf.Tensor, ...]:
  """Chooses a multi-scale crop box from two uniform draws `u` [2].

  Returns (top, left, crop_height, crop_width) as int32 scalars.
  """
  base = tf.cast(tf.minimum(height, width), tf.float64)
  sizes = tf.cast(tf.floor(base * tf.constant(scales, tf.float64)), tf.int32)
  sizes = tf.where(tf.abs(sizes - image_size) < 3, image_size, sizes)
  # A snapped size can exceed a small image; never crop outside it.
  pairs = tf.constant(scale_pairs(len(scales), max_distort), tf.int32)
  pick = tf.minimum(tf.cast(u[0] * pairs.shape[0], tf.int32), pairs.shape[0] - 1)
  crop_w = tf.minimum(tf.gather(sizes, pairs[pick, 0]), width)
  crop_h = tf.minimum(tf.gather(sizes, pairs[pick, 1]), height)
  offsets = tf.constant(_FIXED_OFFSETS, tf.int32)
  k = tf.minimum(tf.cast(u[1] * len(_FIXED_OFFSETS), tf.int32), len(_FIXED_OFFSETS) - 1)
  left = offsets[k, 0] * ((width - crop_w) // 4)
  top = offsets[k, 1] * ((height - crop_h) // 4)
  return top, left, crop_h, crop_w


def to_unit_float(frames: tf.Tensor) -> tf.Tensor:
  """uint8 [..., 3] -> float32 on [0, 1]."""
  return tf.cast(frames, tf.float32) / 255.0


def normalize(frames: tf.Tensor) -> tf.Tensor:
  """float32 on [0, 1] -> ImageNet-normalised float32."""
  return (frames - IMAGENET_MEAN) / IMAGENET_STD


def train_draws(seed: tf.Tensor) -> tf.Tensor:
  """The 3 uniform draws of a clip's augmentation: crop scale pair, crop position, flip."""
  return tf.random.stateless_uniform([3], seed, dtype=tf.float32)


def train_crop_box(height: tf.Tensor, width: tf.Tensor, seed: tf.Tensor, image_size: int,
                   scales: tuple[float, ...]) -> tf.Tensor:
  """The clip's multi-scale crop window, int32 [4] = (top, left, height, width).

  Computed before decoding, so the pipeline can decode only this window
  (`tf.io.decode_and_crop_jpeg`).
  """
  top, left, crop_h, crop_w = multi_scale_crop_box(height, width, image_size, tuple(scales),
                                                   train_draws(seed)[:2])
  return tf.stack([top, left, crop_h, crop_w])


def finish_train_view(crop: tf.Tensor, seed: tf.Tensor, image_size: int,
                      flip: bool) -> tf.Tensor:
  """Resizes a cropped clip uint8 [T, h, w, 3] to S x S and flips it with probability 1/2.

  Returns float32 [T, S, S, 3] on [0, 1] (not yet normalised).
  """
  x = to_unit_float(crop)
  shape = tf.shape(crop)
  # A crop already S x S (the demo's, or the 0.875 crop snapped to S) is not resampled.
  out = tf.cond(tf.logical_and(tf.equal(shape[1], image_size), tf.equal(shape[2], image_size)),
                lambda: x,
                lambda: tf.image.resize(x, (image_size, image_size), method='bilinear',
                                        antialias=True))
  if flip:
    out = tf.cond(train_draws(seed)[2] < 0.5, lambda: tf.reverse(out, axis=[2]), lambda: out)
  return tf.clip_by_value(out, 0.0, 1.0)


def train_view(frames: tf.Tensor, seed: tf.Tensor, image_size: int,
               scales: tuple[float, ...], flip: bool) -> tf.Tensor:
  """Multi-scale crop + random flip of a decoded clip.

  Args:
    frames: uint8 [T, H, W, 3].
    seed: int32 [2], stateless seed of this clip's draws.
    image_size: S.
    scales: crop scales relative to the short side.
    flip: whether to flip the clip horizontally with probability 1/2.

  Returns:
    float32 [T, S, S, 3] on [0, 1] (not yet normalised).
  """
  shape = tf.shape(frames)
  box = train_crop_box(shape[1], shape[2], seed, image_size, scales)
  crop = frames[:, box[0]:box[0] + box[2], box[1]:box[1] + box[3]]
  return finish_train_view(crop, seed, image_size, flip)


def eval_view(frames: tf.Tensor, image_size: int) -> tf.Tensor:
  """Resize the short side to round(S * 256/224), centre-crop S x S.

  Args:
    frames: uint8 [T, H, W, 3].
    image_size: S.

  Returns:
    float32 [T, S, S, 3] on [0, 1] (not yet normalised).
  """
  shape = tf.shape(frames)
  h, w = shape[1], shape[2]
  new_h, new_w, top, left = eval_geometry(h, w, image_size)
  x = to_unit_float(frames)
  # Skipping a same-size resize keeps stored pixels exact (the demo stores frames at `side`).
  x = tf.cond(tf.logical_and(tf.equal(new_h, h), tf.equal(new_w, w)), lambda: x,
              lambda: tf.image.resize(x, tf.stack([new_h, new_w]), method='bilinear',
                                      antialias=True))
  out = x[:, top:top + image_size, left:left + image_size]
  return tf.clip_by_value(tf.ensure_shape(out, [None, image_size, image_size, 3]), 0.0, 1.0)


def eval_geometry(height: tf.Tensor, width: tf.Tensor, image_size: int) -> tuple[tf.Tensor, ...]:
  """The eval view of an H x W frame: (resized height, resized width, crop top, crop left),
  int32 scalars."""
  side = eval_resize_side(image_size)
  h, w = height, width
  # torchvision Resize(int): the short side becomes `side`, the long side int(side * long / short).
  new_h = tf.where(h <= w, side, tf.cast(side * h / w, tf.int32))
  new_w = tf.where(h <= w, tf.cast(side * w / h, tf.int32), side)
  top = tf.cast(tf.round(tf.cast(new_h - image_size, tf.float32) / 2.0), tf.int32)
  left = tf.cast(tf.round(tf.cast(new_w - image_size, tf.float32) / 2.0), tf.int32)
  return new_h, new_w, top, left


def eval_boxes(boxes: tf.Tensor, height: tf.Tensor, width: tf.Tensor,
               image_size: int) -> tf.Tensor:
  """Boxes of an H x W frame in its eval view (`eval_view`).

  Args:
    boxes: [..., 4] (top, left, bottom, right) in pixels of the frame; an empty box (bottom <=
      top) means none.
    height, width: H and W.
    image_size: S.

  Returns:
    float32 [..., 4] in pixels of the S x S view: scaled as the resize scales the frame (pixel
    edges, as `tf.image.resize` maps them), shifted by the crop's offset, not clipped to the
    view; empty boxes (0, 0, 0, 0).
  """
  new_h, new_w, top, left = eval_geometry(height, width, image_size)
  f = lambda x: tf.cast(x, tf.float32)
  scale = tf.stack([f(new_h) / f(height), f(new_w) / f(width)] * 2)
  offset = tf.stack([f(top), f(left)] * 2)
  boxes = tf.cast(boxes, tf.float32)
  mapped = boxes * scale - offset
  empty = boxes[..., 2:3] <= boxes[..., 0:1]
  return tf.where(empty, tf.zeros_like(mapped), mapped)


def denormalize(video: np.ndarray) -> np.ndarray:
  """Normalised frames [..., 3] (any float dtype) -> uint8 RGB, for reports."""
  x = np.asarray(video, np.float32) * IMAGENET_STD + IMAGENET_MEAN
  return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
