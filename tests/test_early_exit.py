"""Conditional exit's rule: thresholds for a budget (MSDNet's budgeted batch rule), exits, costs."""
import json

import numpy as np
import pytest

from arnet_jax import defaults, early_exit, errors, flops


def test_thresholds_reproduce_a_hand_computed_example_of_the_rule():
  # 7 videos, 3 exit points, q = 2: p = (2, 4, 8) / 14, so floor(7 p) = 1 video at point 1 and
  # 2 at point 2; T_3 = -inf.
  confidence = np.array([[0.3, 0.7, 0.0], [0.9, 1.0, 0.0], [0.1, 0.2, 0.0], [0.5, 0.9, 0.0],
                         [0.8, 0.4, 0.0], [0.2, 0.8, 0.0], [0.6, 0.1, 0.0]])
  thresholds = early_exit.fit_thresholds(confidence, q=2.0)
  # Point 1: the most confident is video 1 (0.9). Point 2: of the others, videos 3 (0.9) and
  # 5 (0.8); the last one taken sets T_2.
  np.testing.assert_array_equal(thresholds, [0.9, 0.8, -np.inf])
  np.testing.assert_array_equal(early_exit.exit_points(confidence, thresholds),
                                [2, 0, 2, 1, 2, 1, 2])


def test_a_point_that_takes_no_video_gets_an_infinite_threshold():
  confidence = np.random.default_rng(0).uniform(size=(7, 3))
  # q = 0.1: p = (0.9009, 0.0901, 0.0090): floor(7 p) = 6, 0.
  thresholds = early_exit.fit_thresholds(confidence, q=0.1)
  assert np.isfinite(thresholds[0]) and thresholds[1] == np.inf and thresholds[2] == -np.inf
  assert (early_exit.exit_points(confidence, thresholds) != 1).all()


def test_ties_keep_the_split_order_and_unready_videos_are_never_taken():
  confidence = np.array([[0.5, 0.0], [0.5, 0.0], [-np.inf, 0.0], [0.1, 0.0]])
  # q = 1: p = (1/2, 1/2): 2 videos at point 1; the two 0.5s (the -inf video has no prediction).
  np.testing.assert_array_equal(early_exit.fit_thresholds(confidence, 1.0), [0.5, -np.inf])
  confidence[:2, 0] = -np.inf
  np.testing.assert_array_equal(early_exit.fit_thresholds(confidence, 1.0), [0.1, -np.inf])


def test_infinite_thresholds_exit_everything_first_or_nothing_early():
  confidence = np.random.default_rng(1).normal(size=(9, 4))
  np.testing.assert_array_equal(early_exit.exit_points(confidence, [-np.inf] * 4), 0)
  np.testing.assert_array_equal(
      early_exit.exit_points(confidence, [np.inf, np.inf, np.inf, -np.inf]), 3)
  np.testing.assert_array_equal(early_exit.exit_points(confidence, [np.inf] * 4), 3)


def test_exit_points_and_their_costs_follow_the_groups():
  np.testing.assert_array_equal(early_exit.point_steps(16, 1), np.arange(1, 17))
  np.testing.assert_array_equal(early_exit.point_steps(6, 4), [4, 6])
  table = flops.CostTable(('a', 'b', 'skip'), (2.0, 1.0, 0.0), 0.25, 0.25, 'macs')
  actions = np.zeros((1, 5, 3))
  actions[0, np.arange(5), [0, 1, 2, 2, 0]] = 1  # a, b, skip, skip, a
  np.testing.assert_allclose(early_exit.step_gflops(actions, table), [[2.5, 1.5, 0.5, 0.5, 2.5]])
  np.testing.assert_allclose(early_exit.cost_at_points(actions, table, 2), [[4.0, 5.0, 7.5]])


def test_the_budget_picker_never_exceeds_the_budget_on_the_fit_split():
  rng = np.random.default_rng(2)
  confidence = rng.normal(size=(300, 8)) + np.linspace(0, 2, 8)  # later steps more confident
  cost = np.cumsum(rng.uniform(0.5, 1.5, size=(300, 8)), axis=1)
  curve = early_exit.sweep(confidence, cost, defaults.get_config().exit.q_grid)
  costs = [c['fit_gflops_per_video'] for c in curve]
  for budget in np.linspace(min(costs), cost[:, -1].mean(), 25):
    entry = early_exit.pick(curve, budget)
    points = early_exit.exit_points(confidence, entry['thresholds'])
    spent = np.take_along_axis(cost, points[:, None], 1).mean()
    assert spent == pytest.approx(entry['fit_gflops_per_video'])
    assert spent <= budget
    assert entry['fit_gflops_per_video'] == max(c for c in costs if c <= budget)


def test_a_budget_below_every_q_is_an_error_naming_the_cheapest():
  curve = [dict(q=0.5, thresholds=[0.0, -np.inf], fit_gflops_per_video=3.0),
           dict(q=1.0, thresholds=[1.0, -np.inf], fit_gflops_per_video=4.0)]
  with pytest.raises(errors.UserError, match='cheapest: 3 GFLOPs'):
    early_exit.pick(curve, 2.0)
  assert early_exit.pick(curve, 3.5)['q'] == 0.5


def test_simulated_exits_take_the_running_prediction_and_cost_at_the_exit():
  running = np.zeros((2, 3, 2))
  running[0, :, 0] = [1.0, 5.0, 6.0]  # confident at point 2
  running[1, :, 1] = [0.5, 0.6, 0.7]  # never
  cost = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
  sim = early_exit.simulate(running, np.ones((2, 3), bool), cost, [4.0, 4.0, -np.inf],
                            'max_logit')
  np.testing.assert_array_equal(sim['points'], [1, 2])
  np.testing.assert_array_equal(sim['logits'], [[5.0, 0.0], [0.0, 0.7]])
  np.testing.assert_array_equal(sim['gflops'], [2.0, 3.0])


def _config(tmp_path):
  config = defaults.get_config()
  config.exit.thresholds = str(tmp_path / 'thresholds.json')
  return config


def test_thresholds_are_read_back_only_for_the_settings_they_were_fit_for(tmp_path):
  config = _config(tmp_path)
  curve = [dict(q=1.0, thresholds=[0.5, -np.inf], fit_gflops_per_video=1.0)]
  path = early_exit.thresholds_path(config, 'unused')
  early_exit.save_thresholds(path, config, 300, curve)
  assert early_exit.load_thresholds(path, config, 300)[0]['thresholds'] == [0.5, -np.inf]
  with pytest.raises(errors.UserError, match='step: 300 there, 400 here'):
    early_exit.load_thresholds(path, config, 400)
  config.exit.group_frames = 2
  with pytest.raises(errors.UserError, match='group_frames: 1 there, 2 here'):
    early_exit.load_thresholds(path, config, 300)


def test_a_missing_or_damaged_thresholds_file_says_how_to_make_one(tmp_path):
  config = _config(tmp_path)
  with pytest.raises(errors.PathNotFoundError, match='run config.mode=exit'):
    early_exit.load_thresholds(config.exit.thresholds, config, 1)
  with open(config.exit.thresholds, 'w') as f:
    f.write('{"curve": [')
  with pytest.raises(errors.UserError, match='damaged'):
    early_exit.load_thresholds(config.exit.thresholds, config, 1)
  json.dump({}, open(config.exit.thresholds, 'w'))
  with pytest.raises(errors.UserError, match='damaged'):
    early_exit.load_thresholds(config.exit.thresholds, config, 1)
