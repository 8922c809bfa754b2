"""Patch cropping and resizing: AdaFocusV2's differentiable crop and align-corners bilinear
resize, AdaFocus V1's integer slice and nearest resize.

Shape letters: N images, H x W an image, C channels, P the patch side.

`crop_patches(frames, corners, P)` is the authors' `affine_grid` + `grid_sample` (bilinear, zero
padding, align_corners=False) with a pure translation: for a normalised top-left corner
a = (a_y, a_x) in [0, 1]^2 the patch origin is y1 = a_y (H - P), x1 = a_x (W - P), unrounded,
and

    patch[i, j] = bilinear(frame, y1 + i, x1 + j),   i, j = 0 .. P - 1.

Every patch pixel has the same fractional offset (fy, fx) = (y1 - floor(y1), x1 - floor(x1)),
so the patch is the weighted sum of 4 integer-offset P x P windows (the 4 bilinear neighbours):
one (P + 1) x (P + 1) window per image (`lax.dynamic_slice`, a gather under `vmap`), then two
linear blends. The weights carry the gradient to the corner, which is grid_sample's gradient.
The frame is padded with one row and column of zeros at the bottom and right: a corner of 1
puts the last pixel exactly on the frame's edge, where the outer neighbour (weight 0, zero
padding) still enters the gradient, as in grid_sample.

`slice_patches(frames, origins, P)` is AdaFocus V1's crop: the patch at an integer origin, an
exact slice of the frame (no gradient to the origin). `resize_nearest` is torch's
`F.interpolate` default ('nearest'), V1's glance input.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


def patch_origin(corners: jax.Array, height: int, width: int, size) -> jax.Array:
  """`[..., 2]` normalised corners (a_y, a_x) in [0, 1] -> `[..., 2]` pixel origins (y1, x1).

  `size`: the patch side, or an array of sides broadcasting with the corners' leading axes.
  """
  size = jnp.asarray(size, corners.dtype)
  return corners * jnp.stack([height - size, width - size], axis=-1)


SAMPLINGS = ('bilinear', 'nearest_st', 'nearest_smooth')
SMOOTH_WINDOW = 4  # 'nearest_smooth': the box filter whose gradient steers the corner


def reads_whole_pixels(sampling: str) -> bool:
  """Whether `sampling` reads the patch at its corner rounded to the pixel (the nearest ones)."""
  return sampling != 'bilinear'


def crop_patches(frames: jax.Array, corners: jax.Array, size: int,
                 sampling: str = 'bilinear') -> jax.Array:
  """Bilinear `size` x `size` patches at fractional offsets (see the module docstring).

  `sampling='nearest_st'` (ours, not the authors'): the patch at the nearest integer offset
  (round half up), an exact slice of the frame, with the bilinear patch's gradient
  (straight-through). For frames whose classes live in 1-pixel detail, which bilinear sampling
  at a half-pixel offset averages away (the demo's glyph textures). `'nearest_smooth'`: the
  same slice, with the gradient of the bilinear patch of the frame box-filtered over
  `SMOOTH_WINDOW` pixels: the corner follows the frame's coarse structure, not the sign flips
  of 1-pixel textures, which make the plain gradient noise.

  Args:
    frames: `[N, H, W, C]`, H and W >= size.
    corners: `[N, 2]` normalised top-left corners (a_y, a_x) in [0, 1] (the policy's sigmoid
      output, or uniform random ones); outside [0, 1] the windows would be clamped.
    size: the patch side P.

  Returns: `[N, P, P, C]` in the frames' dtype; differentiable in `frames` and `corners`.
  """
  n, h, w, c = frames.shape
  if sampling not in SAMPLINGS:
    raise ValueError(f'sampling must be one of {SAMPLINGS}, got {sampling!r}')
  if corners.shape != (n, 2):
    raise ValueError(f'corners must be [N, 2] = {(n, 2)} for frames {frames.shape}, got '
                     f'{corners.shape}')
  if not 0 < size <= min(h, w):
    raise ValueError(f'patch size {size} must be in 1 .. {min(h, w)} for {h} x {w} frames')
  origin = patch_origin(corners.astype(jnp.promote_types(corners.dtype, jnp.float32)), h, w, size)
  top_left = jnp.floor(lax.stop_gradient(origin))
  frac = (origin - top_left).astype(frames.dtype)  # [N, 2], carries the corner's gradient
  start = top_left.astype(jnp.int32)
  slices = jax.vmap(lambda image, y, x: lax.dynamic_slice(
      image, (y, x, jnp.zeros_like(y)), (size + 1, size + 1, c)))
  pad = lambda x: jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
  window = slices(pad(frames), start[:, 0], start[:, 1])

  def blend(frac, window=window):
    fy, fx = frac[:, 0, None, None, None], frac[:, 1, None, None, None]
    rows = (1 - fy) * window[:, :-1] + fy * window[:, 1:]    # [N, P, P + 1, C]
    return (1 - fx) * rows[:, :, :-1] + fx * rows[:, :, 1:]  # [N, P, P, C]
  if sampling == 'bilinear':
    return blend(frac)
  nearest = blend(lax.stop_gradient(jnp.floor(frac + 0.5)))  # weights 0 / 1: a slice
  if sampling == 'nearest_st':
    steer = blend(frac)
  else:
    k = SMOOTH_WINDOW
    smooth = lax.reduce_window(frames, 0.0, lax.add, (1, k, k, 1), (1, 1, 1, 1), 'SAME') / k ** 2
    steer = blend(frac, slices(pad(smooth), start[:, 0], start[:, 1]))
  return nearest + (steer - lax.stop_gradient(steer))


@functools.lru_cache(maxsize=None)
def _align_corners_matrix(size_in: int, size_out: int) -> np.ndarray:
  """`[out, in]` linear interpolation weights, source position i (in - 1) / (out - 1)."""
  if size_out == 1:
    position = np.zeros(1)
  else:
    position = np.arange(size_out) * (size_in - 1) / (size_out - 1)
  low = np.minimum(np.floor(position).astype(int), size_in - 1)
  high = np.minimum(low + 1, size_in - 1)
  frac = position - low
  matrix = np.zeros((size_out, size_in))
  np.add.at(matrix, (np.arange(size_out), low), 1 - frac)
  np.add.at(matrix, (np.arange(size_out), high), frac)
  return matrix.astype(np.float32)


def resize_align_corners(frames: jax.Array, size: int) -> jax.Array:
  """`[N, H, W, C] -> [N, size, size, C]`: torch's `F.interpolate(mode='bilinear',
  align_corners=True)` (no antialiasing), as AdaFocusV2 makes its ResNet-50 glance input."""
  _, h, w, _ = frames.shape
  if (h, w) == (size, size):
    return frames
  rows = jnp.asarray(_align_corners_matrix(h, size), frames.dtype)
  cols = jnp.asarray(_align_corners_matrix(w, size), frames.dtype)
  return jnp.einsum('oh,nhwc,pw->nopc', rows, frames, cols)


def slice_patches(frames: jax.Array, origins: jax.Array, size: int) -> jax.Array:
  """`[N, H, W, C]` frames, `[N, 2]` int pixel origins (y, x) -> `[N, P, P, C]`, P = `size`:
  `frame[y:y + P, x:x + P]` (a `lax.dynamic_slice` per image, a gather under `vmap`).

  Origins outside 0 .. H - P (W - P) are clamped into the frame, as `dynamic_slice` does.
  """
  n, h, w, c = frames.shape
  if origins.shape != (n, 2):
    raise ValueError(f'origins must be [N, 2] = {(n, 2)} for frames {frames.shape}, got '
                     f'{origins.shape}')
  if not 0 < size <= min(h, w):
    raise ValueError(f'patch size {size} must be in 1 .. {min(h, w)} for {h} x {w} frames')
  origins = origins.astype(jnp.int32)
  return jax.vmap(lambda image, y, x: lax.dynamic_slice(
      image, (y, x, jnp.zeros_like(y)), (size, size, c)))(frames, origins[:, 0], origins[:, 1])


def nearest_indices(size_in: int, size_out: int) -> np.ndarray:
  """`[out]` the source index of each output index: min(floor(i * in / out), in - 1), the scale
  in float32 (torch's `F.interpolate(mode='nearest')` without a scale factor)."""
  scale = np.float32(size_in) / np.float32(size_out)
  position = np.arange(size_out, dtype=np.float32) * scale
  return np.minimum(np.floor(position).astype(np.int64), size_in - 1)


def resize_nearest(frames: jax.Array, size: int) -> jax.Array:
  """`[N, H, W, C] -> [N, size, size, C]`: torch's `F.interpolate(frames, (size, size))`
  (mode 'nearest': output pixel i reads input pixel floor(i * in / out)), as AdaFocus V1 makes
  its glance input."""
  _, h, w, _ = frames.shape
  if (h, w) == (size, size):
    return frames
  rows = jnp.take(frames, jnp.asarray(nearest_indices(h, size)), axis=1)
  return jnp.take(rows, jnp.asarray(nearest_indices(w, size)), axis=2)
