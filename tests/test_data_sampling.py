"""TSN sampling: which stored frames make up a clip of T segments."""

import numpy as np
import pytest
import tensorflow as tf

from arnet_jax.data import sampling


def test_eval_takes_segment_centres():
  # 32 frames, 8 segments of 4: centres at 2, 6, 10, ...
  np.testing.assert_array_equal(sampling.eval_indices_np(32, 8), [2, 6, 10, 14, 18, 22, 26, 30])
  # Non-integer segments, as the original's int(tick / 2 + tick * x).
  np.testing.assert_array_equal(sampling.eval_indices_np(10, 4), [1, 3, 6, 8])


def test_eval_of_a_clip_as_long_as_t_is_every_frame():
  np.testing.assert_array_equal(sampling.eval_indices_np(16, 16), np.arange(16))


def test_clips_shorter_than_t_repeat_frames_in_order():
  np.testing.assert_array_equal(sampling.eval_indices_np(4, 8), [0, 0, 1, 1, 2, 2, 3, 3])
  u = np.full(8, 0.99)
  np.testing.assert_array_equal(sampling.train_indices_np(4, 8, u), [0, 0, 1, 1, 2, 2, 3, 3])
  # The original rule pads with the last frame instead.
  np.testing.assert_array_equal(sampling.train_indices_np(3, 6, u, 'original'),
                                [0, 1, 2, 2, 2, 2])


def test_train_draws_one_frame_inside_each_segment():
  n, t = 50, 8
  bounds = [(x * n // t, (x + 1) * n // t) for x in range(t)]
  rng = np.random.default_rng(0)
  seen = set()
  for _ in range(200):
    idx = sampling.train_indices_np(n, t, rng.random(t))
    for x, (lo, hi) in enumerate(bounds):
      assert lo <= idx[x] < hi
    seen.update(idx.tolist())
  assert seen == set(range(n))  # every frame, the tail included, can be drawn


def test_train_u_zero_takes_segment_starts_and_u_near_one_the_ends():
  np.testing.assert_array_equal(sampling.train_indices_np(12, 4, np.zeros(4)), [0, 3, 6, 9])
  np.testing.assert_array_equal(sampling.train_indices_np(12, 4, np.full(4, 0.999)),
                                [2, 5, 8, 11])


def test_original_rule_ignores_the_tail_when_t_does_not_divide_n():
  # The original TSN code: segments of N // T = 1 frame, so only frames 0..T-1.
  u = np.full(4, 0.999)
  np.testing.assert_array_equal(sampling.train_indices_np(7, 4, u, 'original'), [0, 1, 2, 3])
  np.testing.assert_array_equal(sampling.train_indices_np(7, 4, u, 'segment'), [0, 2, 4, 6])


@pytest.mark.parametrize('rule', sampling.TRAIN_RULES)
def test_tensorflow_and_numpy_versions_agree(rule):
  rng = np.random.default_rng(1)
  for n in (1, 2, 3, 7, 15, 16, 17, 31, 32, 33, 100, 257):
    for t in (1, 4, 8, 16):
      u = rng.random(t)
      np.testing.assert_array_equal(
          sampling.train_indices_tf(tf.constant(n), t, tf.constant(u), rule).numpy(),
          sampling.train_indices_np(n, t, u, rule), err_msg=f'n={n} t={t}')
      np.testing.assert_array_equal(sampling.eval_indices_tf(tf.constant(n), t).numpy(),
                                    sampling.eval_indices_np(n, t), err_msg=f'n={n} t={t}')


def test_bad_arguments_are_refused():
  with pytest.raises(ValueError, match='at least one frame'):
    sampling.eval_indices_np(0, 8)
  with pytest.raises(ValueError, match='Unknown sampling rule'):
    sampling.train_indices_np(10, 4, np.zeros(4), 'dense')
