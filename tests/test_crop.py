"""The differentiable crop is the authors' affine_grid + grid_sample: bilinear sampling at
(y1 + i, x1 + j) with zero padding, an integer slice at integer offsets, a gradient to the
corner that matches finite differences; the straight-through option is the nearest slice with
that gradient; the glance resize is torch's align_corners=True."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from arnet_jax.models import crop


def bilinear_reference(frames, corners, size):
  """Loop-free numpy: every patch pixel sampled at (a_y (H - P) + i, a_x (W - P) + j) from its
  4 neighbours, zero outside the frame (grid_sample's padding_mode='zeros')."""
  n, h, w, _ = frames.shape
  y = corners[:, 0, None] * (h - size) + np.arange(size)[None]   # [N, P]
  x = corners[:, 1, None] * (w - size) + np.arange(size)[None]
  y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
  fy, fx = y - y0, x - x0
  out = 0
  for dy, wy in ((0, 1 - fy), (1, fy)):
    for dx, wx in ((0, 1 - fx), (1, fx)):
      yy, xx = y0 + dy, x0 + dx                                    # [N, P]
      inside = (yy[:, :, None] < h) & (xx[:, None, :] < w)
      value = frames[np.arange(n)[:, None, None], np.minimum(yy, h - 1)[:, :, None],
                     np.minimum(xx, w - 1)[:, None, :]]            # [N, P, P, C]
      out = out + (wy[:, :, None] * wx[:, None, :] * inside)[..., None] * value
  return out


@pytest.fixture
def frames():
  return np.random.default_rng(0).normal(size=(3, 12, 10, 2))


def test_the_crop_is_bilinear_sampling_at_fractional_offsets(frames):
  corners = np.array([[0.13, 0.77], [0.5, 0.31], [0.999, 0.002]])
  got = crop.crop_patches(jnp.asarray(frames, jnp.float32), jnp.asarray(corners, jnp.float32), 5)
  assert got.shape == (3, 5, 5, 2)
  np.testing.assert_allclose(got, bilinear_reference(frames, corners, 5), atol=1e-5)


def test_the_crop_at_integer_offsets_is_a_slice(frames):
  # a_y (12 - 4) = 2, a_x (10 - 4) = 3; then the corners (0, 0) and (1, 1).
  corners = np.array([[2 / 8, 3 / 6], [0.0, 0.0], [1.0, 1.0]], np.float32)
  got = np.asarray(crop.crop_patches(jnp.asarray(frames, jnp.float32), jnp.asarray(corners), 4))
  np.testing.assert_allclose(got[0], frames[0, 2:6, 3:7], atol=1e-6)
  np.testing.assert_allclose(got[1], frames[1, 0:4, 0:4], atol=1e-6)
  np.testing.assert_allclose(got[2], frames[2, 8:12, 6:10], atol=1e-6)


def test_a_full_frame_patch_is_the_frame(frames):
  got = crop.crop_patches(jnp.asarray(frames[:, :10], jnp.float32), jnp.full((3, 2), 0.4), 10)
  np.testing.assert_allclose(got, frames[:, :10], atol=1e-6)


def test_the_corner_gradient_matches_finite_differences(frames):
  with jax.enable_x64():
    f = jnp.asarray(frames)
    weights = jnp.asarray(np.random.default_rng(1).normal(size=(3, 5, 5, 2)))
    loss = jax.jit(lambda c: jnp.sum(crop.crop_patches(f, c, 5) * weights))
    corners = jnp.asarray([[0.13, 0.77], [0.52, 0.31], [0.61, 0.45]])
    grad = jax.jit(jax.grad(loss))(corners)
    eps = 1e-6
    for k in range(3):
      for axis in range(2):
        step = jnp.zeros((3, 2)).at[k, axis].set(eps)
        numeric = (loss(corners + step) - loss(corners - step)) / (2 * eps)
        np.testing.assert_allclose(grad[k, axis], numeric, rtol=1e-6, atol=1e-8)
    assert np.all(np.abs(grad) > 0)


def test_the_gradient_reaches_every_corner_in_float32(frames):
  grad = jax.grad(lambda c: jnp.sum(crop.crop_patches(
      jnp.asarray(frames, jnp.float32), c, 4) ** 2))(jnp.full((3, 2), 0.3))
  assert np.all(np.isfinite(grad)) and np.all(grad != 0)


def test_the_nearest_straight_through_crop_is_a_slice_with_the_bilinear_gradient(frames):
  corners = jnp.asarray([[0.13, 0.77], [0.5, 0.31], [0.999, 0.002]], jnp.float32)
  x = jnp.asarray(frames, jnp.float32)
  got = crop.crop_patches(x, corners, 5, sampling='nearest_st')
  origin = np.floor(np.asarray(corners) * [12 - 5, 10 - 5] + 0.5).astype(int)  # half up
  for i, (y, x0) in enumerate(origin):
    np.testing.assert_allclose(got[i], frames[i, y:y + 5, x0:x0 + 5], atol=1e-6)
  gradient = lambda sampling: jax.grad(lambda c: jnp.sum(
      crop.crop_patches(x, c, 5, sampling=sampling) * jnp.cos(jnp.arange(5.0))[:, None, None]))(
          corners)
  np.testing.assert_array_equal(gradient('nearest_st'), gradient('bilinear'))
  assert np.all(np.abs(gradient('nearest_st')) > 0)


def test_the_smoothed_straight_through_crop_steers_the_corner_by_the_box_filtered_frame(frames):
  corners = jnp.asarray([[0.13, 0.77], [0.5, 0.31], [0.999, 0.002]], jnp.float32)
  x = jnp.asarray(frames, jnp.float32)
  np.testing.assert_array_equal(crop.crop_patches(x, corners, 5, sampling='nearest_smooth'),
                                crop.crop_patches(x, corners, 5, sampling='nearest_st'))
  k = crop.SMOOTH_WINDOW  # 'SAME' box filter: rows/columns i - 1 .. i + 2 for k = 4
  padded = np.pad(frames, ((0, 0), (1, 2), (1, 2), (0, 0)))
  smooth = sum(padded[:, dy:dy + 12, dx:dx + 10] for dy in range(k) for dx in range(k)) / k ** 2
  weights = jnp.cos(jnp.arange(5.0))[:, None, None]
  got = jax.grad(lambda c: jnp.sum(
      crop.crop_patches(x, c, 5, sampling='nearest_smooth') * weights))(corners)
  want = jax.grad(lambda c: jnp.sum(
      crop.crop_patches(jnp.asarray(smooth, jnp.float32), c, 5) * weights))(corners)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_bad_corners_or_patch_sizes_are_refused(frames):
  with pytest.raises(ValueError, match=r'corners must be \[N, 2\]'):
    crop.crop_patches(jnp.asarray(frames), jnp.zeros((3, 3)), 4)
  with pytest.raises(ValueError, match='patch size 11 must be in 1 .. 10'):
    crop.crop_patches(jnp.asarray(frames), jnp.zeros((3, 2)), 11)


def test_the_align_corners_resize_keeps_the_corner_pixels_and_interpolates_between():
  image = np.arange(5.0)[None, :, None, None] * np.ones((1, 5, 5, 1))  # rows 0, 1, 2, 3, 4
  got = np.asarray(crop.resize_align_corners(jnp.asarray(image, jnp.float32), 3))
  np.testing.assert_allclose(got[0, :, 0, 0], [0.0, 2.0, 4.0])  # i (5 - 1) / (3 - 1)
  got = np.asarray(crop.resize_align_corners(jnp.asarray(image, jnp.float32), 4))
  np.testing.assert_allclose(got[0, :, 1, 0], [0.0, 4 / 3, 8 / 3, 4.0], rtol=1e-6)
