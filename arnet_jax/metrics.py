"""Video classification metrics on host arrays: AP, mAP, mmAP, top-k, action usage, and (the
demo, models that read one patch per frame) whether the patch holds the class glyph.

Shape letters: N videos, C classes, T frames, A actions. Boxes are float (top, left, bottom,
right) in pixels of the model's H x W input frames.

mAP uses the first label (one-hot) and mmAP all labels (multi-hot), both on softmaxed video
scores, averaged over the classes that have at least one positive in the evaluated set. The
original AR-Net code drops absent classes from the labels but not from the scores, so its columns
shift and perfect predictions score 33.67 when a class is missing; here they score 100.
"""
from __future__ import annotations

import numpy as np


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
  """Area under the precision-recall step curve (scikit-learn's `average_precision_score`).

  scores `[N]`, positives `[N]` (0/1). Tied scores form one threshold. NaN without positives.
  """
  scores = np.asarray(scores, np.float64)
  positives = np.asarray(positives, np.float64)
  if positives.sum() == 0:
    return float('nan')
  order = np.argsort(-scores, kind='mergesort')
  scores, positives = scores[order], positives[order]
  last_of_each_score = np.r_[np.nonzero(np.diff(scores))[0], len(scores) - 1]
  true_pos = np.cumsum(positives)[last_of_each_score]
  precision = true_pos / (last_of_each_score + 1)
  recall = true_pos / true_pos[-1]
  return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def mean_average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
  """Mean AP over classes present in `targets` (`[N, C]` 0/1), in percent."""
  aps = [average_precision(scores[:, c], targets[:, c]) for c in range(targets.shape[1])
         if targets[:, c].sum() > 0]
  return 100.0 * float(np.mean(aps)) if aps else float('nan')


def top_k_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
  """Percent of videos whose label `[N]` is among the k highest scores `[N, C]`."""
  k = min(k, scores.shape[1])
  top = np.argsort(-scores, axis=1, kind='stable')[:, :k]
  return 100.0 * float(np.mean(np.any(top == labels[:, None], axis=1)))


def softmax(logits: np.ndarray) -> np.ndarray:
  z = logits - logits.max(axis=-1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(axis=-1, keepdims=True)


def classification_metrics(logits: np.ndarray, label: np.ndarray, labels: np.ndarray) -> dict:
  """mAP (first label), mmAP (all labels), top1, top5 from video logits `[N, C]`."""
  scores = softmax(np.asarray(logits, np.float64))
  one_hot = np.eye(scores.shape[1])[label]
  return dict(mAP=mean_average_precision(scores, one_hot),
              mmAP=mean_average_precision(scores, labels),
              top1=top_k_accuracy(scores, label, 1),
              top5=top_k_accuracy(scores, label, 5))


def action_usage(actions: np.ndarray, names: tuple[str, ...]) -> dict[str, float]:
  """Share of frames (over all videos) taking each action: actions `[N, T, A]` one-hot."""
  shares = np.asarray(actions, np.float64).reshape(-1, actions.shape[-1]).mean(0)
  return {name: float(s) for name, s in zip(names, shares)}


BOX_TOLERANCE = 1e-6  # px: a patch edge this close to the glyph's still contains it


def box_contains(outer: np.ndarray, inner: np.ndarray, tol: float = BOX_TOLERANCE) -> np.ndarray:
  """Whether each box `outer` `[..., 4]` holds the whole box `inner` `[..., 4]` -> bool `[...]`."""
  outer, inner = np.asarray(outer, np.float64), np.asarray(inner, np.float64)
  return ((outer[..., :2] <= inner[..., :2] + tol).all(-1)
          & (outer[..., 2:] >= inner[..., 2:] - tol).all(-1))


def random_patch_contains(inner: np.ndarray, patch: np.ndarray, frame_size: tuple[int, int],
                          tol: float = BOX_TOLERANCE, rounded: bool = False) -> np.ndarray:
  """The probability that a patch of sides `patch` `[..., 2]` (height, width) at a uniformly
  random corner holds the box `inner` `[..., 4]` -> float64 `[...]`.

  Per axis, the corner is a (F - P) with a uniform on [0, 1] (F the frame's side, P the
  patch's), as a random policy draws it; the patch holds [g0, g1] when g1 - P - tol <= a (F - P)
  <= g0 + tol, an interval of a whose length (within [0, 1]) is the axis' probability.
  `rounded`: the corner is rounded to the nearest pixel (half up), as the nearest crops read
  it, so every a whose rounding lands on a whole corner in that interval counts. A patch as
  large as the frame (P == F) has its corner fixed at 0. The two axes are independent.
  """
  inner = np.asarray(inner, np.float64)
  patch = np.asarray(patch, np.float64)
  probability = np.ones(inner.shape[:-1])
  for axis, side in enumerate(frame_size):
    g0, g1, p = inner[..., axis], inner[..., axis + 2], patch[..., axis]
    span = side - p
    fixed = span <= tol
    safe = np.where(fixed, 1.0, span)
    low, high = g1 - p - tol, g0 + tol
    if rounded:  # the whole corners k in [low, high] and the a's that round to them
      low, high = np.ceil(low) - 0.5, np.floor(high) + 0.5
    low, high = np.clip(low / safe, 0.0, 1.0), np.clip(high / safe, 0.0, 1.0)
    at_zero = ((g0 + tol >= 0) & (p >= g1 - tol)).astype(np.float64)
    probability *= np.where(fixed, at_zero, np.maximum(0.0, high - low))
  return probability


def glyph_in_patch(patch_boxes: np.ndarray, glyph_boxes: np.ndarray,
                   frame_size: tuple[int, int], rounded: bool = False) -> dict[str, float]:
  """Does the patch a model read hold the class glyph, against a patch at a random corner?

  Args:
    patch_boxes: `[N, T, 4]` the patch each frame's local network read.
    glyph_boxes: `[N, T, 4]` the class glyph's box, (0, 0, 0, 0) on frames without it.
    frame_size: (H, W).
    rounded: the model rounds its corners to whole pixels (a nearest crop): so do the random
      patches it is compared with.

  Returns:
    {'glyph_in_patch': share of the frames with a glyph whose patch holds all of it,
    'glyph_in_random_patch': the expected share for patches of the same sides at uniformly
    random corners (`random_patch_contains`), 'glyph_in_centre_patch': the share for the same
    patches at the frame's centre (a policy that never moves)}; {} when no frame has a glyph.
  """
  patch_boxes = np.asarray(patch_boxes, np.float64)
  glyph_boxes = np.asarray(glyph_boxes, np.float64)
  has_glyph = glyph_boxes[..., 2] > glyph_boxes[..., 0]
  if not has_glyph.any():
    return {}
  patch, glyph = patch_boxes[has_glyph], glyph_boxes[has_glyph]
  sides = patch[:, 2:] - patch[:, :2]
  centre_corner = (np.asarray(frame_size, np.float64) - sides) / 2
  centre = np.concatenate([centre_corner, centre_corner + sides], axis=-1)
  return dict(glyph_in_patch=float(box_contains(patch, glyph).mean()),
              glyph_in_random_patch=float(random_patch_contains(glyph, sides, frame_size,
                                                                 rounded=rounded).mean()),
              glyph_in_centre_patch=float(box_contains(centre, glyph).mean()))
