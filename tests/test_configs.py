"""Every experiment config loads, has only known fields, and is consistent with itself."""
import glob
import os
import subprocess
import sys

import numpy as np
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
                                      'demo': 10, 'custom': None}[config.data.name]


@pytest.mark.parametrize('size,top,width', [('small', 112, 0.125), ('full', 224, 1.0)])
def test_the_own_data_config_reads_the_classes_and_weighs_gflops_as_the_paper(size, top, width):
  config = load(os.path.join(CONFIGS_DIR, f'custom.py:size={size}'))
  assert (config.data.name, config.model.num_classes) == ('custom', None)  # from the dataset
  assert (config.data.image_size, config.model.width_multiplier) == (top, width)
  assert config.train.flops_loss_scale is None  # automatic: alpha means what it means in the paper
  assert config.model.no_frame_fallback == 'policy_head'


def test_the_paper_resnet_configs_keep_raw_gflops_and_efficientnet_says_so():
  from arnet_jax import flops, losses  # pylint: disable=g-import-not-at-top
  for name in ('activitynet', 'fcvid', 'mini_kinetics'):
    config = load(os.path.join(CONFIGS_DIR, f'{name}.py'))
    table = np.asarray(flops.cost_table(config.model).action_gflops)
    assert float(losses.gflops_weight(table, config.train.flops_loss_scale)) == pytest.approx(
        1.0, abs=1e-4)
  config = load(os.path.join(CONFIGS_DIR, 'activitynet_efficientnet.py'))
  assert config.train.flops_loss_scale == 1.0  # the authors' alpha is for raw GFLOPs


CONFIGS_DIR = os.path.join(os.path.dirname(__file__), '..', 'configs')


@pytest.mark.parametrize('arg,backbone,classes,metric', [
    ('dataset=fcvid', 'resnet50', 239, 'mAP'),
    ('dataset=fcvid,backbones=efficientnet', 'efficientnet_b3', 239, 'mAP'),
    ('dataset=mini_kinetics', 'resnet50', 200, 'top1'),
    ('dataset=custom', 'resnet50', None, 'mAP'),
])
def test_the_parametrised_paper_config_takes_dataset_and_backbones(arg, backbone, classes, metric):
  config = defaults.load_config(os.path.join(CONFIGS_DIR, f'arnet.py:{arg}'))
  assert config.mode == 'recipe'  # paper configs run the whole recipe
  assert (config.model.backbones[0], config.model.num_classes) == (backbone, classes)
  assert config.train.best_metric == metric


def test_the_two_line_paper_configs_equal_the_parametrised_one():
  fcvid = defaults.load_config(os.path.join(CONFIGS_DIR, 'fcvid_efficientnet.py'))
  same = defaults.load_config(
      os.path.join(CONFIGS_DIR, 'arnet.py:dataset=fcvid,backbones=efficientnet'))
  assert fcvid.to_dict() == same.to_dict()


def test_a_bad_config_argument_names_the_valid_keys():
  with pytest.raises(ValueError, match='key one of dataset, backbones'):
    defaults.load_config(os.path.join(CONFIGS_DIR, 'arnet.py:datset=fcvid'))


def test_dataset_derived_fields_follow_the_dataset_and_model_given_later():
  config = defaults.load_config(os.path.join(CONFIGS_DIR, 'activitynet.py'))
  config.data.name = 'demo'  # as --config.data.name=demo
  config.model.resolutions, config.model.policy_resolution = (64, 48, 32), 24
  config = defaults.finalize(config)
  assert config.data.image_size == 64  # the model's top resolution, not the 224 of ActivityNet
  assert config.data.scales == defaults.data_config('demo').scales


def test_a_crop_size_other_than_the_models_top_resolution_is_refused():
  config = defaults.get_config()
  config.data.image_size = 256
  with pytest.raises(ValueError, match='data.image_size=256 must equal the model.s top '
                                       'resolution 224'):
    defaults.validate(config)


def test_the_number_of_classes_comes_from_the_prepared_dataset(demo_data_dir):
  from arnet_jax import data  # pylint: disable=g-import-not-at-top (TensorFlow)
  config = defaults.get_config()
  config.data = defaults.data_config('demo')
  config.data.data_dir, config.data.builder_config = demo_data_dir, 'tiny'
  config.model.num_classes = None
  assert data.with_dataset_classes(config).model.num_classes == 4
  config.model.num_classes = 10
  with pytest.raises(ValueError, match=r'model.num_classes=10 but the prepared dataset '
                                       r'arnet_demo .* has 4 classes'):
    data.with_dataset_classes(config)


def test_importing_training_needs_neither_tensorflow_nor_pyav_nor_matplotlib():
  code = ('import sys; import arnet_jax.train, arnet_jax.evaluate, arnet_jax.recipe, '
          'arnet_jax.flops; from arnet_jax import registry; registry.names(); '
          "print(sorted(m for m in ('tensorflow', 'tensorflow_datasets', 'av', 'matplotlib') "
          'if m in sys.modules))')
  result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          check=True, timeout=300)
  assert result.stdout.strip() == '[]'
