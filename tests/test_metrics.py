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
