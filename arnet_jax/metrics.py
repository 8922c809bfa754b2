"""Video classification metrics on host arrays: AP, mAP, mmAP, top-k, action usage.

Shape letters: N videos, C classes, T frames, A actions.

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
