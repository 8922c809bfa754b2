"""Metrics agree with scikit-learn, including the cases the original code gets wrong."""
import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from arnet_jax import metrics


@pytest.mark.parametrize('seed', range(5))
def test_average_precision_equals_scikit_learn_with_and_without_ties(seed):
  rng = np.random.default_rng(seed)
  positives = rng.integers(0, 2, 50)
  positives[0] = 1
  for scores in (rng.normal(size=50), rng.integers(0, 4, 50).astype(float)):  # ties
    assert metrics.average_precision(scores, positives) == pytest.approx(
        average_precision_score(positives, scores), abs=1e-12)


def test_map_of_perfect_predictions_is_100_when_a_class_is_absent():
  # 4 classes, class 2 has no video in the evaluated set (the original code scores 33.67 here).
  label = np.array([0, 1, 3, 0, 1, 3])
  logits = np.full((6, 4), -5.0)
  logits[np.arange(6), label] = 5.0
  result = metrics.classification_metrics(logits, label, np.eye(4)[label])
  assert result['mAP'] == pytest.approx(100.0)
  assert result['top1'] == 100.0


def test_map_averages_the_present_classes_as_scikit_learn_macro_does():
  rng = np.random.default_rng(0)
  label = rng.choice([0, 1, 2, 4], 40)  # class 3 absent
  logits = rng.normal(size=(40, 5))
  present = [0, 1, 2, 4]
  scores = metrics.softmax(logits)
  expected = 100 * average_precision_score(np.eye(5)[label][:, present], scores[:, present],
                                           average='macro')
  got = metrics.classification_metrics(logits, label, np.eye(5)[label])['mAP']
  assert got == pytest.approx(expected, abs=1e-9)


def test_mmap_uses_every_label_of_multi_label_videos():
  rng = np.random.default_rng(1)
  multi_hot = (rng.random((30, 6)) < 0.3).astype(float)
  multi_hot[np.arange(30), rng.integers(0, 6, 30)] = 1
  logits = rng.normal(size=(30, 6))
  expected = 100 * average_precision_score(multi_hot, metrics.softmax(logits), average='macro')
  first = multi_hot.argmax(1)
  got = metrics.classification_metrics(logits, first, multi_hot)
  assert got['mmAP'] == pytest.approx(expected, abs=1e-9)
  assert got['mmAP'] != pytest.approx(got['mAP'])


def test_top_k_accuracy():
  scores = np.array([[0.1, 0.5, 0.4], [0.6, 0.3, 0.1]])
  assert metrics.top_k_accuracy(scores, np.array([2, 2]), 1) == 0.0
  assert metrics.top_k_accuracy(scores, np.array([2, 2]), 2) == 50.0
  assert metrics.top_k_accuracy(scores, np.array([2, 2]), 5) == 100.0  # k > C: all classes


def test_action_usage_shares_sum_to_one():
  actions = np.eye(3)[np.array([[0, 0, 1, 2], [0, 1, 1, 1]])]
  usage = metrics.action_usage(actions, ('a', 'b', 'c'))
  assert usage == {'a': 3 / 8, 'b': 4 / 8, 'c': 1 / 8}


# --- Does a patch hold the class glyph (the demo, patch models)? --------------------------------

GLYPH = np.array([10.0, 20.0, 26.0, 36.0])  # (top, left, bottom, right) of a 16 x 16 glyph


def test_a_patch_holds_the_glyph_only_when_all_of_it_is_inside():
  patches = np.array([[0.0, 8.0, 32.0, 40.0],              # around it
                      [10.0, 20.0, 26.0, 36.0],            # exactly it
                      [10.0 + 5e-7, 20.0, 26.0, 36.0],     # within the 1e-6 px tolerance
                      [10.01, 20.0, 42.01, 52.0],          # its top row 0.01 px outside
                      [0.0, 30.0, 32.0, 62.0]])            # half of it outside
  np.testing.assert_array_equal(metrics.box_contains(patches, GLYPH),
                                [True, True, True, False, False])


def test_a_random_patch_holds_the_glyph_with_the_feasible_share_of_corners():
  # 32 x 32 patches in a 64 x 64 frame: corner rows 0..10 of 0..32 and columns 4..20 hold it.
  p = metrics.random_patch_contains(GLYPH, np.array([32.0, 32.0]), (64, 64))
  assert p == pytest.approx(10 / 32 * 16 / 32)
  # A patch smaller than the glyph never holds it.
  assert metrics.random_patch_contains(GLYPH, np.array([15.0, 32.0]), (64, 64)) == 0.0


def test_a_patch_as_large_as_the_frame_has_its_corner_fixed_at_zero():
  assert metrics.random_patch_contains(GLYPH, np.array([64.0, 64.0]), (64, 64)) == 1.0
  # Full height (always holds the rows), half width (columns 4..20 of 0..32 hold it).
  assert metrics.random_patch_contains(GLYPH, np.array([64.0, 32.0]), (64, 64)) == pytest.approx(
      0.5, abs=1e-7)  # the tolerance widens the interval by 2e-6 / 32
  # A glyph reaching past the frame is not held by the whole frame.
  assert metrics.random_patch_contains(np.array([50.0, 0, 66, 16]), np.array([64.0, 64.0]),
                                       (64, 64)) == 0.0


def test_the_random_patch_rate_is_the_monte_carlo_rate():
  rng = np.random.default_rng(0)
  n = 200_000
  # Feasible corner shares per axis, cut by the frame at either end.
  exact = (10 / 32 * 16 / 32, 8 / 40 * 10 / 16, 18 / 24 * 4 / 40)
  glyphs = np.array([[10.0, 20.0, 26.0, 36.0], [40.0, 10.0, 56.0, 26.0], [30.0, 44.0, 46.0, 60.0]])
  sides = np.array([[32.0, 32.0], [24.0, 48.0], [40.0, 24.0]])
  for glyph, side, share in zip(glyphs, sides, exact):
    corners = rng.uniform(size=(n, 2)) * (64 - side)
    patches = np.concatenate([corners, corners + side], axis=1)
    simulated = metrics.box_contains(patches, glyph).mean()
    expected = metrics.random_patch_contains(glyph, side, (64, 64))
    assert expected == pytest.approx(share, abs=1e-6)
    # The binomial standard error is at most 0.5 / sqrt(n) = 0.0011: 4 of them.
    assert simulated == pytest.approx(expected, abs=0.0045)


def test_a_random_patch_read_at_a_rounded_corner_holds_the_glyph_as_often_as_simulated():
  rng = np.random.default_rng(1)
  corners = np.floor(rng.uniform(size=(200_000, 2)) * (64 - 30) + 0.5)  # as the nearest crops
  for glyph in (GLYPH, np.array([40.0, 2.0, 56.0, 18.0]), np.array([0.0, 44.0, 16.0, 60.0])):
    patches = np.concatenate([corners, corners + 30], axis=1)
    simulated = metrics.box_contains(patches, glyph).mean()
    expected = metrics.random_patch_contains(glyph, np.array([30.0, 30.0]), (64, 64),
                                             rounded=True)
    assert simulated == pytest.approx(expected, abs=0.0045)
  # Whole corners 0..10 of 0..34 hold GLYPH's rows, 6..20 its columns: a (64 - 30) in
  # [0, 10.5) x [5.5, 20.5) rounds to them (corner 0 takes only [0, 0.5)).
  assert metrics.random_patch_contains(GLYPH, np.array([30.0, 30.0]), (64, 64), rounded=True) \
      == pytest.approx(10.5 / 34 * 15 / 34)
  assert metrics.random_patch_contains(GLYPH, np.array([30.0, 30.0]), (64, 64)) == pytest.approx(
      10 / 34 * 14 / 34)  # unrounded: a (64 - 30) in [0, 10] x [6, 20]


def test_glyph_in_patch_averages_the_frames_that_show_a_glyph():
  none = np.zeros(4)
  glyph_boxes = np.array([[GLYPH, none, GLYPH], [none, GLYPH, none]])
  patch_boxes = np.array([[[0.0, 8.0, 32.0, 40.0], [0.0, 0.0, 32.0, 32.0], [30, 30, 62, 62]],
                          [[0.0, 0.0, 32.0, 32.0], [5.0, 10.0, 37.0, 42.0], [0, 0, 32, 32]]])
  result = metrics.glyph_in_patch(patch_boxes, glyph_boxes, (64, 64))
  assert result['glyph_in_patch'] == pytest.approx(2 / 3)  # frames without a glyph left out
  assert result['glyph_in_random_patch'] == pytest.approx(10 / 32 * 16 / 32)
  assert result['glyph_in_centre_patch'] == 0.0  # the centre 32 x 32 patch is 16..48
  assert metrics.glyph_in_patch(patch_boxes, np.zeros_like(glyph_boxes), (64, 64)) == {}
