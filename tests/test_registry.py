"""A method is one registry entry: a toy method defined in this file alone trains, evaluates from
its checkpoint and counts its GFLOPs through the library's own training, evaluation and recipe
code; bad method and stage names are refused before anything runs."""
import os

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from conftest import tiny_train_config
from flax import linen as nn

from arnet_jax import checkpoint, defaults, evaluate, flops, losses, recipe, registry, train

GFLOPS_PER_FRAME = 3 * 4 / 1e9  # Dense(3 -> C) on each frame's mean colour, C = 4


class MeanColour(nn.Module):
  """`[B, T, H, W, 3]` -> each frame's mean colour -> Dense(C), averaged over the frames."""
  num_classes: int

  @nn.compact
  def __call__(self, video, *, train: bool = False, **unused):
    del train, unused
    b, t = video.shape[:2]
    frame_logits = nn.Dense(self.num_classes, name='head')(video.mean(axis=(2, 3)))
    return dict(logits=frame_logits.mean(1), actions=jnp.ones((b, t, 1)),
                decided=jnp.ones((b, t), bool))


def ce_loss(out, labels, context):
  del context
  return losses.cross_entropy(out['logits'], labels), {}


TOY = registry.Method(
    name='mean_colour', summary='a linear classifier of each frame\'s mean colour',
    create_model=lambda c: MeanColour(c.num_classes), input_resolution=lambda c: 64,
    action_names=lambda c: ('mean_colour',),
    cost_table=lambda c, convention: flops.CostTable(('mean_colour',), (GFLOPS_PER_FRAME,), 0.0,
                                                     0.0, convention),
    stages=(registry.Stage('fit', ce_loss),), inference=registry.masked_inference)


@pytest.fixture(scope='module')
def toy_config(demo_data_dir):
  registry.register(TOY)
  config = tiny_train_config(demo_data_dir)
  config.model.variant, config.stage = 'mean_colour', 'fit'
  config.eval.report = False
  with config.unlocked():
    config.fit = defaults.stage_settings(lr=0.5, num_epochs=2)
  yield config
  registry.unregister('mean_colour')


def test_a_registered_method_trains_and_evaluates_from_its_checkpoint(toy_config, tmp_path):
  workdir = str(tmp_path / 'fit')
  trained = train.train_and_evaluate(toy_config, workdir)
  state, _ = checkpoint.load(os.path.join(workdir, 'checkpoints'))
  assert int(state['step']) == 6  # 2 epochs of 3 steps
  assert np.abs(state['params']['head']['kernel']).max() > 0  # trained from N(0, ...) init
  config = toy_config.copy_and_resolve_references()
  config.mode, config.checkpoint = 'eval', workdir
  evaluated = evaluate.evaluate_checkpoint(config, str(tmp_path / 'eval'))
  assert evaluated['mAP'] == trained['mAP']
  assert evaluated['num_videos'] == 12
  assert evaluated['action_usage'] == {'mean_colour': 1.0}


def test_a_registered_method_counts_its_own_gflops(toy_config, tmp_path):
  assert flops.cost_table(toy_config.model).action_gflops == (GFLOPS_PER_FRAME,)
  metrics = train.train_and_evaluate(toy_config, str(tmp_path))
  assert metrics['gflops_per_frame'] == pytest.approx(GFLOPS_PER_FRAME)
  assert metrics['gflops_per_video'] == pytest.approx(16 * GFLOPS_PER_FRAME)


def test_the_recipe_of_a_method_without_comparison_rows_is_its_last_stage(toy_config, tmp_path):
  config = toy_config.copy_and_resolve_references()
  config.mode = 'recipe'
  rows = recipe.run(config, str(tmp_path))
  assert list(rows) == ['mean_colour']
  assert os.path.isdir(tmp_path / 'fit' / 'best')


def test_an_unknown_variant_is_refused_naming_the_registered_ones():
  config = defaults.get_config()
  config.model.variant = 'arnett'
  with pytest.raises(ValueError, match=r"model.variant must be one of \('arnet', 'random', .*"
                                       r"'lstm'.*\), got 'arnett'"):
    defaults.validate(config)


def test_a_stage_the_method_does_not_have_is_refused_naming_its_stages():
  config = defaults.get_config()
  config.stage = 'finetuning'
  with pytest.raises(ValueError,
                     match="no stage 'finetuning'; its stages: warmup, joint, finetune"):
    defaults.validate(config)


@pytest.mark.parametrize('path,value,valid', [
    ('data.name', 'kinetics', "('activitynet', 'fcvid', 'mini_kinetics', 'custom', 'demo')"),
    ('train.lr_schedule', 'linear', "('step', 'cosine', 'cosine_epoch', 'constant')"),
    ('model.kernels', 'gpu', "('auto', 'cpu', 'xla')"),
    ('model.resize', 'cubic', "('nearest', 'bilinear')"),
])
def test_an_enum_value_is_refused_before_anything_runs_naming_the_valid_ones(path, value, valid):
  config = defaults.get_config()
  group, field = path.split('.')
  config[group][field] = value
  with pytest.raises(ValueError) as error:
    defaults.validate(config)
  assert str(error.value) == f'{path} must be one of {valid}, got {value!r}.'


def test_an_unknown_backbone_is_refused_naming_the_valid_ones():
  config = defaults.get_config()
  config.model.backbones = ('resnet50', 'resnet35', 'resnet18')
  with pytest.raises(ValueError, match="unknown backbone 'resnet35'; choose from resnet18"):
    defaults.validate(config)


def test_a_name_taken_by_another_method_is_refused():
  with pytest.raises(ValueError, match="'arnet' is already registered"):
    registry.register(registry.Method(
        name='arnet', summary='', create_model=None, input_resolution=None, action_names=None,
        cost_table=None, stages=(), inference=None))


def test_stage_settings_of_a_registered_method_are_valid_config_fields(toy_config):
  defaults.validate(toy_config)  # config.fit exists because the method has a stage 'fit'
  assert isinstance(toy_config.fit, ml_collections.ConfigDict)
