"""The demo videos: evidence is sparse, small, and only readable at high resolution."""

import hashlib

import numpy as np

from arnet_jax.data import demo_video


def _nearest(frames, out):
  """Torch-style nearest downsampling of [..., S, S, 3]: source index floor(i * S / out)."""
  idx = np.arange(out) * frames.shape[-2] // out
  return frames[..., idx, :, :][..., idx, :]


def test_class_glyphs_are_distinct_even_after_a_flip_and_decoys_are_no_class():
  classes, decoys = demo_video.glyph_bank(10)
  assert classes.shape == (10, 2, 2) and decoys.shape[1:] == (2, 2) and len(decoys) >= 10
  for i in range(10):
    for j in range(i):
      assert (classes[i] != classes[j]).sum() >= 2
      assert (demo_video.mirror(classes[i]) != classes[j]).sum() >= 2
  for d in decoys:
    assert not any((d == c).all() or (demo_video.mirror(d) == c).all() for c in classes)


def test_every_glyph_inks_half_its_pixels_whatever_the_phase():
  rng = np.random.default_rng(0)
  classes, decoys = demo_video.glyph_bank(10)
  for code in np.concatenate([classes, decoys]):
    glyph = demo_video.draw_glyph(rng, code)
    assert glyph.shape == (16, 16) and glyph.sum() == demo_video.GLYPH_INK


def test_videos_are_deterministic_given_the_seed():
  classes, decoys = demo_video.glyph_bank(4)
  a = demo_video.render_video(np.random.default_rng([0, 1]), 2, classes, decoys)
  b = demo_video.render_video(np.random.default_rng([0, 1]), 2, classes, decoys)
  for x, y in zip(a, b):  # frames, evidence, glyph boxes
    np.testing.assert_array_equal(x, y)


# sha256 of frames.tobytes() + evidence.tobytes() of validation videos 0-3 of a 4-class demo
# (rng [0, 1, i], label i % 4), computed with the renderer of dataset version 1.2.0 (commit
# 779f56b, NumPy 2.4). A change means the demo's videos, and so AR-Net's demo results, changed.
VERSION_1_2_0_SHA256 = 'd9037c8f33636e3cb50c39527640f79447031e699cebbcb60496c6104edcdf69'


def test_frames_and_evidence_are_those_of_version_1_2_0():
  classes, decoys = demo_video.glyph_bank(4)
  digest = hashlib.sha256()
  for i in range(4):
    frames, evidence, _ = demo_video.render_video(np.random.default_rng([0, 1, i]), i % 4,
                                                  classes, decoys)
    digest.update(frames.tobytes())
    digest.update(evidence.tobytes())
  assert digest.hexdigest() == VERSION_1_2_0_SHA256


def test_the_glyph_box_frames_the_inked_glyph_inside_its_pad():
  classes, decoys = demo_video.glyph_bank(4)
  g, margin = demo_video.GLYPH_SIDE, demo_video.PAD_MARGIN
  for i in range(8):
    frames, evidence, boxes = demo_video.render_video(np.random.default_rng([0, 1, i]), i % 4,
                                                      classes, decoys)
    assert boxes.shape == (16, 4) and boxes.dtype == np.int32
    np.testing.assert_array_equal(boxes[~evidence], 0)  # decoy frames included
    for t in np.flatnonzero(evidence):
      top, left, bottom, right = boxes[t]
      assert (bottom - top, right - left) == (g, g)
      frame = frames[t].astype(int)
      colour = frame[top - margin, left - margin]  # the pad's top-left pixel
      assert (np.abs(colour - demo_video.PAD_COLOUR) <= 15).all()
      # Around the glyph (the pad's margin) only pad colour; inside it ink (0) or pad colour,
      # ink on exactly half the pixels.
      around = frame[top - margin:bottom + margin, left - margin:right + margin].copy()
      glyph = around[margin:-margin, margin:-margin]
      ink = (glyph == 0).all(-1)
      assert ink.sum() == demo_video.GLYPH_INK
      assert (glyph[~ink] == colour).all()
      around[margin:-margin, margin:-margin] = colour
      assert (around == colour).all()


def test_evidence_is_in_3_to_6_frames_and_inside_the_eval_crop():
  classes, decoys = demo_video.glyph_bank(4)
  for i in range(30):
    frames, evidence, _ = demo_video.render_video(np.random.default_rng(i), i % 4, classes,
                                                  decoys)
    assert frames.shape == (16, 73, 73, 3) and frames.dtype == np.uint8
    assert 3 <= evidence.sum() <= 6
    for t in np.flatnonzero(evidence):
      on_pad = (np.abs(frames[t].astype(float) - demo_video.PAD_COLOUR) < 40).all(-1)
      rows, cols = np.nonzero(on_pad)
      # The pad lies inside every 64 x 64 crop the pipeline takes: the centre one
      # (offset 4) and the training ones (offsets 0, 2, 4, 6, 8).
      assert rows.min() >= 8 and rows.max() < 64 and cols.min() >= 8 and cols.max() < 64
      # The pad's width tells the class parity (square or wide), at any resolution.
      pad_area = demo_video.PAD_SIDE * demo_video.PAD_WIDTHS[i % 4 % 2]
      assert pad_area - demo_video.GLYPH_INK - 10 <= on_pad.sum() <= pad_area


def test_the_glyph_is_readable_at_64_but_flat_at_32_while_the_pad_shows_at_24():
  rng = np.random.default_rng(3)
  code = demo_video.glyph_bank(1)[0][0]
  for _ in range(20):
    glyph = demo_video.draw_glyph(rng, code)
    for top in (0, 1):  # the glyph's position parity against the sampling grid
      for left in (0, 1):
        g, q = demo_video.GLYPH_SIDE, demo_video.QUADRANT // 2  # q: quadrant side at half
        frame = np.zeros((g + 2, g + 2), bool)
        frame[top:top + g, left:left + g] = glyph
        half = frame[::2, ::2]  # torch nearest halving keeps every other pixel
        # Each quadrant becomes flat: its texture cannot be told at half resolution.
        for r in range(2):
          for c in range(2):
            quadrant = half[(top + 1) // 2 + q * r:(top + 1) // 2 + q * (r + 1),
                            (left + 1) // 2 + q * c:(left + 1) // 2 + q * (c + 1)]
            assert quadrant.all() or not quadrant.any()
  # At 64 every ink pixel is there; at 24 the yellow pad still shows.
  classes, decoys = demo_video.glyph_bank(2)
  frames, evidence, _ = demo_video.render_video(np.random.default_rng(3), 0, classes, decoys)
  crop = frames[evidence][:, 4:68, 4:68]  # the eval view at 64
  assert ((crop.max(-1) < 30).sum((1, 2)) >= demo_video.GLYPH_INK).all()
  pad_24 = (np.abs(_nearest(crop, 24).astype(float) - demo_video.PAD_COLOUR) < 40).all(-1)
  assert (pad_24.sum((1, 2)) >= 4).all()
