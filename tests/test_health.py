"""A learned policy's collapse is put in words with the fix; healthy or fixed policies are not."""
from arnet_jax import defaults, health

HEALTHY = {'resnet50@224': 0.3, 'resnet18@112': 0.3, 'skip1': 0.4}


def check(usage, empty=0.0, frames=8.0, variant='arnet', **train):
  config = defaults.get_config()
  config.model.variant = variant
  config.train.update(train)
  return health.warnings(usage, empty, frames, config)


def test_a_policy_that_uses_several_actions_and_reads_every_video_is_healthy():
  assert check(HEALTHY) == []


def test_the_frame_counts_are_the_share_of_empty_videos_and_the_mean_frames():
  import numpy as np  # pylint: disable=g-import-not-at-top
  counts = health.frame_counts(np.array([[1, 0, 1, 0], [0, 0, 0, 0], [1, 1, 1, 1.]]))
  assert counts == {'no_frame_videos': 1 / 3, 'frames_per_video': 2.0}


def test_videos_with_no_processed_frame_are_reported_with_the_loss_settings_to_change():
  [line] = check({'resnet50@224': 0.02, 'skip4': 0.98 - 0.5, 'skip2': 0.5}, empty=0.9,
                 frames=0.1, alpha=0.4)
  assert line.startswith('90% of videos had no processed frame')
  assert 'lower train.alpha (now 0.4)' in line and 'train.flops_loss_scale' in line
  assert 'warmup.num_epochs' in line and 'predicted from nothing' in line


def test_the_fallback_in_use_is_named():
  config = defaults.get_config()
  config.model.no_frame_fallback = 'policy_head'
  [line] = health.warnings({'a': 0.5, 'b': 0.5}, 0.5, 1.0, config)
  assert "policy's own head" in line


def test_the_costliest_action_on_almost_every_frame_asks_for_a_stronger_efficiency_loss():
  [line] = check({'resnet50@224': 0.97, 'skip1': 0.03}, beta=0.3)
  assert line.startswith('The policy sends 97% of frames to resnet50@224')
  assert 'too weak: raise train.alpha' in line and 'train.beta (now 0.3)' in line


def test_a_cheap_action_on_almost_every_frame_asks_for_a_weaker_one():
  [line] = check({'resnet18@112': 0.99, 'skip1': 0.01})
  assert 'too strong: lower train.alpha' in line


def test_skipping_every_frame_is_reported_once():
  [line] = check({'skip4': 1.0}, empty=1.0, frames=0.0)
  assert line.startswith('100% of videos had no processed frame')


def test_methods_without_a_learned_policy_and_every_action_per_frame_are_not_checked():
  assert check({'skip4': 1.0}, empty=1.0, frames=0.0, variant='random') == []
  assert check({'resnet50@224': 1.0}, variant='uniform') == []
  assert check({'resnet50@224': 1.0, 'resnet18@112': 1.0}) == []  # AR-Net's warm-up
