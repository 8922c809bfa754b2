"""The demo videos: evidence is sparse, small, and only readable at high resolution."""

import numpy as np

from arnet_jax.data import demo_video


def _nearest(frames, out):
  """Torch-style nearest downsampling of [..., S, S, 3]: source index floor(i * S / out)."""
  idx = np.arange(out) * frames.shape[-2] // out
  return frames[..., idx, :, :][..., idx, :]


def test_glyphs_are_distinct_and_equally_dense():
  glyphs = demo_video.glyph_bank(20)
  assert glyphs.shape == (20, 5, 5)
  assert (glyphs.sum((1, 2)) == demo_video.GLYPH_INK).all()
  for i in range(20):
    for j in range(i):
      assert (glyphs[i] != glyphs[j]).sum() >= 6
      assert (glyphs[i] != glyphs[j][:, ::-1]).sum() >= 6  # also after a flip


def test_videos_are_deterministic_given_the_seed():
  glyphs = demo_video.glyph_bank(8)
  a = demo_video.render_video(np.random.default_rng([0, 1]), 2, glyphs[:4], glyphs[4:])
  b = demo_video.render_video(np.random.default_rng([0, 1]), 2, glyphs[:4], glyphs[4:])
  np.testing.assert_array_equal(a[0], b[0])
  np.testing.assert_array_equal(a[1], b[1])


def test_evidence_is_in_3_to_6_frames_and_inside_the_eval_crop():
  glyphs = demo_video.glyph_bank(8)
  pad = np.array(demo_video.PAD_COLOUR)
  for i in range(30):
    frames, evidence = demo_video.render_video(np.random.default_rng(i), i % 4, glyphs[:4],
                                               glyphs[4:])
    assert frames.shape == (16, 73, 73, 3) and frames.dtype == np.uint8
    assert 3 <= evidence.sum() <= 6
    for t in np.flatnonzero(evidence):
      yellow = (np.abs(frames[t].astype(float) - pad) < 40).all(-1)
      rows, cols = np.nonzero(yellow)
      # The pad lies inside every 64 x 64 crop the pipeline takes: the centre one
      # (offset 4) and the training ones (offsets 0, 2, 4, 6, 8).
      assert rows.min() >= 8 and rows.max() < 64 and cols.min() >= 8 and cols.max() < 64
      assert yellow.sum() >= demo_video.PAD_SIDE ** 2 - demo_video.GLYPH_INK - 10


def test_the_glyph_survives_at_64_but_not_at_24_pixels():
  glyphs = demo_video.glyph_bank(2)
  frames, evidence = demo_video.render_video(np.random.default_rng(3), 0, glyphs[:1], glyphs[1:])
  crop = frames[evidence][:, 4:68, 4:68]  # the eval view at 64
  ink_64 = (crop.max(-1) < 30).sum((1, 2))
  ink_24 = (_nearest(crop, 24).max(-1) < 30).sum((1, 2))
  # Every ink cell is visible at 64 px; at 24 px a few pixels remain at best.
  assert (ink_64 >= demo_video.GLYPH_INK).all()
  assert (ink_24 <= 5).all()
  # ... while the yellow pad stays visible at 24 px.
  yellow_24 = (np.abs(_nearest(crop, 24).astype(float) - demo_video.PAD_COLOUR) < 40).all(-1)
  assert (yellow_24.sum((1, 2)) >= 4).all()
