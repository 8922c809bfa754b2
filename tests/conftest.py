"""Shared fixtures: tiny AR-Net configurations of the paper's structure, fast on CPU."""
import jax
import pytest

from arnet_jax import defaults


def tiny_model_config(**overrides):
  """The paper's architecture (ResNet-50/34/18 + MobileNetV2 policy) at toy width/depth/size."""
  model = defaults.get_config().model
  model.num_classes = 5
  model.resolutions = (32, 24, 16)
  model.policy_resolution = 16
  model.lstm_hidden = 16
  model.width_multiplier = 0.125
  model.depth_multiplier = 0.34
  model.dropout = 0.0
  model.update(overrides)
  return model


@pytest.fixture
def tiny_config():
  return tiny_model_config()


@pytest.fixture
def rngs():
  return {'params': jax.random.key(0), 'gumbel': jax.random.key(1), 'dropout': jax.random.key(2)}
