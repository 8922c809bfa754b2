"""Clip transforms: multi-scale crop, flip, eval resize + centre crop, normalisation."""

import numpy as np
import tensorflow as tf

from arnet_jax.data import transforms


def _crop_sizes(height, width, size, seeds):
  sizes = set()
  for s in seeds:
    top, left, h, w = (int(v) for v in transforms.multi_scale_crop_box(
        tf.constant(height), tf.constant(width), size, (1.0, 0.875, 0.75, 0.66),
        tf.random.stateless_uniform([2], [s, 0])))
    assert 0 <= top and top + h <= height and 0 <= left and left + w <= width
    sizes.add((h, w))
  return sizes


def test_multi_scale_crop_sizes_follow_tsm():
  # Short side 256: int(256 * s) = 256, 224, 192, 168; 224 is the target itself.
  # Width and height scale indices differ by at most one.
  sizes = _crop_sizes(256, 340, 224, range(400))
  allowed = {(h, w) for i, h in enumerate((256, 224, 192, 168))
             for j, w in enumerate((256, 224, 192, 168)) if abs(i - j) <= 1}
  assert sizes == allowed


def test_crop_sizes_near_the_target_snap_to_it():
  # Short side 73 (the demo): int(73 * .875) = 63 is within 3 of 64, so it becomes 64.
  sizes = _crop_sizes(73, 97, 64, range(300))
  assert {h for h, _ in sizes} == {73, 64, 54, 48}


def test_crop_corners_are_on_the_fixed_grid():
  height, width = 256, 340
  for s in range(100):
    top, left, h, w = (int(v) for v in transforms.multi_scale_crop_box(
        tf.constant(height), tf.constant(width), 224, (1.0, 0.875, 0.75, 0.66),
        tf.random.stateless_uniform([2], [s, 1])))
    step_h, step_w = (height - h) // 4, (width - w) // 4
    assert any((a * step_w, b * step_h) == (left, top) for a, b in transforms._FIXED_OFFSETS)


def test_train_view_shape_range_and_flip():
  frames = np.zeros((4, 60, 80, 3), np.uint8)
  frames[:, :, :40] = 255  # left half white
  outs = [transforms.train_view(tf.constant(frames), tf.constant([s, 0]), 32,
                                (1.0, 0.875, 0.75, 0.66), flip=True).numpy()
          for s in range(40)]
  for out in outs:
    assert out.shape == (4, 32, 32, 3) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_array_equal(out[0], out[3])  # one geometry for the whole clip
  left_brighter = [o[..., :16, :].mean() > o[..., 16:, :].mean() for o in outs]
  assert any(left_brighter) and not all(left_brighter)  # flipped in some clips only


def test_eval_view_resizes_the_short_side_then_centre_crops():
  # 64 -> short side round(64 * 256 / 224) = 73. A 73 x 97 frame is only cropped:
  # rows round(4.5) = 4 (half to even, as torchvision), columns round(16.5) = 16.
  frames = np.random.default_rng(0).integers(0, 256, (2, 73, 97, 3), dtype=np.uint8)
  out = transforms.eval_view(tf.constant(frames), 64).numpy()
  np.testing.assert_allclose(out, frames[:, 4:68, 16:80] / 255.0, atol=1e-6)
  # A larger frame is resized first: a smooth ramp of 146 x 194 -> 73 x 97, whose
  # centre crop starts at row 4, column 16 of the small ramp.
  rows, cols = np.meshgrid(np.arange(146) / 2, np.arange(194) / 2, indexing='ij')
  ramp = np.stack([rows, cols, rows + cols], -1)[None].astype(np.uint8)
  out_big = transforms.eval_view(tf.constant(ramp), 64).numpy()[0] * 255
  assert out_big.shape == (64, 64, 3)
  expected_rows = np.broadcast_to((np.arange(64) + 4)[:, None], (64, 64))
  expected_cols = np.broadcast_to(np.arange(64) + 16, (64, 64))
  np.testing.assert_allclose(out_big[:, :, 0], expected_rows, atol=0.01)
  np.testing.assert_allclose(out_big[:, :, 1], expected_cols, atol=0.01)


def test_eval_boxes_follow_the_eval_views_resize_and_crop():
  # 146 x 194 -> 73 x 97 (scale 1/2), then the crop at row 4, column 16 (as above).
  boxes = tf.constant([[20, 40, 60, 100], [0, 0, 0, 0]])
  mapped = transforms.eval_boxes(boxes, 146, 194, 64).numpy()
  np.testing.assert_array_equal(mapped, [[6, 4, 26, 34], [0, 0, 0, 0]])  # the empty box stays
  assert mapped.dtype == np.float32
  # A white rectangle at the box is white in the view inside the mapped box (less the 1-pixel
  # edge the antialiased resize blurs) and black outside it (plus that edge).
  frame = np.zeros((1, 146, 194, 3), np.uint8)
  frame[0, 20:60, 40:100] = 255
  view = transforms.eval_view(tf.constant(frame), 64).numpy()[0, ..., 0]
  top, left, bottom, right = mapped[0].astype(int)
  assert (view[top + 1:bottom - 1, left + 1:right - 1] == 1).all()
  outside = np.ones_like(view, bool)
  outside[top - 1:bottom + 1, left - 1:right + 1] = False
  assert (view[outside] == 0).all()


def test_eval_short_side_is_256_for_224():
  assert transforms.eval_resize_side(224) == 256
  assert transforms.eval_resize_side(64) == 73
  assert transforms.eval_resize_side(112) == 128


def test_normalize_and_denormalize_round_trip():
  rgb = np.random.default_rng(0).integers(0, 256, (2, 5, 5, 3), dtype=np.uint8)
  normalised = transforms.normalize(transforms.to_unit_float(tf.constant(rgb))).numpy()
  np.testing.assert_allclose(normalised[..., 0],
                             (rgb[..., 0] / 255.0 - 0.485) / 0.229, rtol=1e-5)
  np.testing.assert_array_equal(transforms.denormalize(normalised), rgb)
