"""The quick start's main job, reduced: configs/demo.py's recipe end to end on the tiny demo data.

Three stages, the four baselines, the table in JSON and markdown; the AR-Net row (the saved
fine-tuned checkpoint, evaluated afresh) equals fine-tuning's own evaluation of it.
"""
import importlib
import json
import os

import pytest
from conftest import tiny_train_config

from arnet_jax import recipe

ROW_FIELDS = {'mAP', 'mmAP', 'top1', 'top5', 'gflops_per_frame', 'gflops_per_video',
              'action_usage', 'evidence_to_top_resolution', 'other_to_top_resolution'}


@pytest.fixture(scope='module')
def demo_run(demo_data_dir, tmp_path_factory):
  config = importlib.import_module('configs.demo').get_config()
  # The demo's recipe and settings at the suite's toy size: the tiny data (4 classes, 24 / 12
  # videos, 8 of each video's 16 frames), one epoch per stage, the train tests' model (ResNet-18
  # at 64 + ResNet-18 policy).
  toy = tiny_train_config(demo_data_dir)
  config.data, config.model = toy.data, toy.model
  config.data.num_frames = 8
  config.train.batch_size, config.eval.batch_size = toy.train.batch_size, toy.eval.batch_size
  config.eval.report = False
  config.eval.routing = 'masked'  # one program per evaluation (sparse == masked: test_routing)
  for stage in ('warmup', 'joint', 'finetune'):
    config[stage].num_epochs = 1
  workdir = str(tmp_path_factory.mktemp('demo'))
  return workdir, recipe.run(config, workdir)


def test_the_recipe_writes_the_table_with_every_baseline_and_field(demo_run):
  workdir, rows = demo_run
  with open(os.path.join(workdir, 'results.json')) as f:
    saved = json.load(f)
  names = ['Uniform', 'Random policy', 'Multi-Scale', 'AR-Net']
  assert sorted(saved['rows']) == sorted(names)
  for name, row in saved['rows'].items():
    assert ROW_FIELDS <= set(row), name
    assert 0 <= row['mAP'] <= 100 and row['gflops_per_video'] > 0
    # Every frame takes one action, except in Multi-Scale, which runs every resolution action
    # (here the ResNet and the policy's own head).
    assert abs(sum(row['action_usage'].values()) - (2 if name == 'Multi-Scale' else 1)) < 1e-6
  assert set(saved['seconds']) == {'warmup', 'joint', 'finetune', 'total'}
  with open(os.path.join(workdir, 'results.md')) as f:
    table = [line for line in f.read().splitlines() if line.startswith('|')]  # then warnings
  assert len(table) == 2 + 4
  assert [line.split('|')[1].strip() for line in table[2:]] == names
  # Uniform runs the top backbone on every frame; Multi-Scale every backbone: it costs more.
  assert rows['Uniform']['action_usage'][next(iter(rows['Uniform']['action_usage']))] == 1.0
  assert rows['Multi-Scale']['gflops_per_video'] > rows['Uniform']['gflops_per_video']


def test_the_ar_net_row_reproduces_fine_tuning_s_evaluation_of_its_checkpoint(demo_run):
  workdir, rows = demo_run
  with open(os.path.join(workdir, 'finetune', 'eval', 'metrics.json')) as f:
    training_time = json.load(f)
  fresh = rows['AR-Net']
  for key in ('mAP', 'mmAP', 'top1', 'top5', 'gflops_per_frame', 'gflops_per_video',
              'action_usage', 'evidence_to_top_resolution', 'other_to_top_resolution'):
    assert fresh[key] == training_time[key], key
