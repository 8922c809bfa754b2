"""GFLOPs derived from the model definitions reproduce the paper's table."""
import numpy as np
import pytest
from conftest import tiny_model_config

from arnet_jax import defaults, flops


@pytest.fixture(scope='module')
def paper():
  return flops.summary(defaults.get_config().model)


@pytest.mark.parametrize('action,gflops', [('resnet50@224', 4.12), ('resnet34@168', 2.25),
                                           ('resnet18@112', 0.49)])
def test_resnet_actions_match_the_paper(paper, action, gflops):
  got = {row['name']: row['gflops'] for row in paper['actions']}[action]
  assert got == pytest.approx(gflops, rel=0.02)


def test_resnet50_at_224_is_between_the_paper_and_thop(paper):
  assert 4.11 <= paper['actions'][0]['gflops'] <= 4.13 + 0.005


def test_policy_uniform_and_multiscale_match_the_paper(paper):
  assert paper['policy_cnn_gflops'] == pytest.approx(0.055, rel=0.02)  # MobileNetV2 @ 84
  assert paper['lstm_gflops'] == pytest.approx(0.0033, rel=0.02)
  assert paper['uniform_gflops_per_frame'] == pytest.approx(4.11, rel=0.02)
  assert paper['multiscale_gflops_per_frame'] == pytest.approx(6.90, rel=0.02)
  skips = [row['gflops'] for row in paper['actions'] if row['name'].startswith('skip')]
  assert skips == [0.0, 0.0, 0.0]


def test_efficientnet_actions_match_the_paper():
  model = defaults.get_config().model
  model.backbones = ('efficientnet_b3', 'efficientnet_b1', 'efficientnet_b0')
  table = flops.cost_table(model)
  np.testing.assert_allclose(table.action_gflops[:3], [1.80, 0.39, 0.10], rtol=0.04)
  assert table.action_gflops[0] == pytest.approx(1.80, rel=0.02)
  assert flops.summary(model)['multiscale_gflops_per_frame'] == pytest.approx(2.35, rel=0.02)


def test_macs_convention_counts_what_runs():
  # ResNet-50's convolutions + fc at 224 are 4.09 GMACs; the LSTM step is 4 H (F + H).
  assert flops.backbone_gflops('resnet50', 224, 1000, convention='macs') == pytest.approx(
      4.0895, rel=1e-3)
  assert flops.lstm_gflops(1280, 512, 'macs') == pytest.approx(4 * 512 * 1792 / 1e9)
  # EfficientNet-B3 at 224 really costs about half of the paper's (native-resolution) figure.
  assert flops.backbone_gflops('efficientnet_b3', 224, 200, convention='macs') < 1.0


def test_decision_gflops_counts_chosen_actions_and_the_policy_on_every_frame():
  table = flops.cost_table(defaults.get_config().model)
  actions = np.zeros((2, 16, 7))
  actions[0, :, 0] = 1          # video 0: every frame through ResNet-50 @ 224
  actions[1, :8, 2] = 1         # video 1: half through ResNet-18 @ 112, half skipped
  actions[1, 8:, 6] = 1
  got = flops.decision_gflops(actions, table)
  policy = table.policy_gflops
  np.testing.assert_allclose(got['per_frame'], [table.action_gflops[0] + policy,
                                                table.action_gflops[2] / 2 + policy])
  np.testing.assert_allclose(got['per_video'], 16 * got['per_frame'])


def test_paper_usage_costs_2_09_gflops_per_frame():
  # ActivityNet AR-Net usage: 43% R50@224, 10% R34@168, 10% R18@112, 7% policy head, 30% skipped.
  table = flops.cost_table(defaults.get_config().model)
  usage = np.array([0.43, 0.10, 0.10, 0.07, 0.30, 0.0, 0.0])
  per_frame = flops.decision_gflops(usage[None, None, :], table)['per_frame'][0]
  assert per_frame == pytest.approx(2.09, rel=0.02)


def test_baselines_have_their_own_costs():
  uniform = flops.cost_table(tiny_model_config(variant='uniform'))
  assert uniform.policy_gflops == 0 and len(uniform.action_gflops) == 1
  lstm = flops.cost_table(tiny_model_config(variant='lstm'))
  assert lstm.action_gflops[0] > uniform.action_gflops[0]  # + the LSTM and its head
  multiscale = flops.cost_table(tiny_model_config(variant='multiscale'))
  assert multiscale.policy_gflops > 0  # the policy head needs the policy network


def test_unknown_convention_is_rejected():
  with pytest.raises(ValueError, match='convention'):
    flops.backbone_gflops('resnet18', 112, convention='thop')
