"""Every experiment config loads, has only known fields, and is consistent with itself."""
import glob
import os

import pytest

from arnet_jax import defaults, registry

CONFIGS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), '..', 'configs', '*.py')))


def load(path):
  return defaults.finalize(defaults.load_config(path))  # derived fields filled in


def test_the_configs_of_the_paper_and_the_demo_exist():
  names = {os.path.basename(p)[:-3] for p in CONFIGS}
  assert {'activitynet', 'fcvid', 'mini_kinetics', 'activitynet_efficientnet',
          'fcvid_efficientnet', 'mini_kinetics_efficientnet', 'demo'} <= names


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: os.path.basename(p))
def test_config_is_valid_and_its_crop_is_the_models_top_resolution(path):
  config = load(path)
  defaults.validate(config)
  assert config.data.image_size == registry.of(config).input_resolution(config.model)
  assert config.model.num_classes == {'activitynet': 200, 'fcvid': 239, 'mini_kinetics': 200,
                                      'demo': 10}[config.data.name]
