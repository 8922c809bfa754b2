"""Checkpoints that are damaged, or of another model: resuming falls back to the newest intact
one, evaluation and resuming stop with a message in plain words, the command line exits 2."""
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import tiny_train_config

from arnet_jax import checkpoint, errors, evaluate, models, registry, train


@pytest.fixture(scope='module')
def reference(demo_data_dir, tmp_path_factory):
  """test_train's joint training (2 epochs of 3 steps), a checkpoint after every step, all six
  kept, evaluated at the end only."""
  config = tiny_train_config(demo_data_dir)
  config.train.checkpoint_every_steps = 1
  config.train.keep_checkpoints = 6
  config.train.eval_every_epochs = 2
  workdir = str(tmp_path_factory.mktemp('reference'))
  return config, workdir, train.train_and_evaluate(config, workdir)


def state_files(folder):
  """Every file of a step's folder, and the largest one of its arrays (an OCDBT data file)."""
  paths = [os.path.join(d, f) for d, _, names in os.walk(folder) for f in names]
  return paths, max((p for p in paths if os.sep + 'state' + os.sep in p), key=os.path.getsize)


def truncate_every_file(folder):  # a full disk, an interrupted copy
  for path in state_files(folder)[0]:
    os.truncate(path, os.path.getsize(path) // 2)


def remove_an_array_file(folder):  # an interrupted copy
  os.remove(state_files(folder)[1])


def overwrite_bytes_of_an_array_file(folder):  # a disk fault: decodes, into other numbers
  path = state_files(folder)[1]
  with open(path, 'r+b') as f:
    f.seek(os.path.getsize(path) // 2)
    data = f.read(16)
    f.seek(-len(data), os.SEEK_CUR)
    f.write(bytes(b ^ 0xFF for b in data))


# Each damage, and what the message says failed: the file, TensorStore reading the arrays in
# state/ (it names the array, not the file), or an array's checksum.
DAMAGES = {'truncated files': (truncate_every_file, '_CHECKPOINT_METADATA is not valid JSON'),
           'a missing file': (remove_an_array_file, 'in OCDBT database at local file'),
           'a corrupted array': (overwrite_bytes_of_an_array_file,
                                 'in state/ does not hold the values that were saved')}


def model_variables(workdir):
  state, _ = checkpoint.load(os.path.join(workdir, 'checkpoints'))
  return {'params': state['params'], 'batch_stats': state['batch_stats']}, int(state['step'])


def test_damaged_newest_checkpoints_are_moved_aside_and_training_resumes_from_the_intact_one(
    reference, tmp_path, caplog):
  config, reference_dir, reference_metrics = reference
  workdir = str(tmp_path / 'workdir')
  shutil.copytree(reference_dir, workdir)
  damaged = dict(zip(('6', '5', '4'), DAMAGES.values()))  # the newest three, one fault each
  for step, (make_damage, _) in damaged.items():
    make_damage(os.path.join(workdir, 'checkpoints', step))

  assert train.train_and_evaluate(config, workdir) == reference_metrics  # from step 3
  (got, step), (want, _) = model_variables(workdir), model_variables(reference_dir)
  assert step == 6
  jax.tree.map(np.testing.assert_array_equal, got, want)
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints_damaged'))) == sorted(damaged)
  warnings = [r.getMessage() for r in caplog.records if r.levelname == 'WARNING']
  for step, (_, named) in damaged.items():
    folder = os.path.join(workdir, 'checkpoints', step)
    assert any(m.startswith(f'Checkpoint {folder} is damaged: ') and named in m
               for m in warnings), step


@pytest.mark.parametrize('damage', DAMAGES)
def test_evaluating_a_damaged_checkpoint_stops_with_a_message_naming_it_and_what_failed(
    reference, tmp_path, damage):
  config, reference_dir, _ = reference
  folder = str(tmp_path / 'checkpoints' / '6')
  shutil.copytree(os.path.join(reference_dir, 'checkpoints', '6'), folder)
  make_damage, named = DAMAGES[damage]
  make_damage(folder)
  config = config.copy_and_resolve_references()
  config.mode = 'eval'
  with pytest.raises(checkpoint.DamagedCheckpointError) as error:
    evaluate.evaluate_checkpoint(config, str(tmp_path / 'eval'), checkpoint=folder)
  assert str(error.value).startswith(f'Checkpoint {folder} is damaged: ')
  assert named in str(error.value)


def test_a_workdir_with_no_intact_checkpoint_stops_naming_it_and_what_to_do(tmp_path):
  directory = str(tmp_path / 'workdir' / 'checkpoints')
  manager = checkpoint.manager(directory)
  checkpoint.save(manager, 1, {'w': np.ones(3, np.float32)}, {})
  manager.wait_until_finished()
  truncate_every_file(os.path.join(directory, '1'))
  with pytest.raises(errors.UserError, match=(
      rf'No intact checkpoint in {directory}: .* moved to {directory}_damaged/.*'
      rf'another --workdir \(or move {tmp_path / "workdir"} aside\)')):
    checkpoint.restore_latest(manager, {'w': jax.ShapeDtypeStruct((3,), np.float32)})
  assert os.listdir(f'{directory}_damaged') == ['1'] and manager.all_steps() == []


def ten_class_checkpoint(config, directory):
  """Writes step 6 of the training state `config` would have with 10 classes (zeros)."""
  config = config.copy_and_resolve_references()
  config.model.num_classes = 10
  model = train.stage_model(config)
  top = registry.of(config).input_resolution(config.model)
  variables = models.abstract_variables(model, (1, config.data.num_frames, top, top, 3))
  tx = train.create_optimizer(config, variables['params'], steps_per_epoch=3)
  state = train.TrainState(jax.ShapeDtypeStruct((), np.int32), variables['params'],
                           variables.get('batch_stats', {}),
                           jax.eval_shape(tx.init, variables['params']))
  manager = checkpoint.manager(directory)
  checkpoint.save(manager, 6, jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), state),
                  {'config': config.to_dict()})
  manager.wait_until_finished()


def test_resuming_a_workdir_of_another_model_stops_before_any_step_with_the_differences(
    reference, tmp_path, monkeypatch):
  config, _, _ = reference  # 4 classes (the tiny demo's); the workdir holds a 10-class run
  workdir = str(tmp_path / 'workdir')
  ten_class_checkpoint(config, os.path.join(workdir, 'checkpoints'))
  monkeypatch.setattr(train, 'make_train_step', lambda *a, **k: pytest.fail('a step was built'))
  with pytest.raises(errors.UserError) as error:
    train.train_and_evaluate(config, workdir)
  message = str(error.value)
  folder = os.path.join(workdir, 'checkpoints', '6')
  assert message.startswith(f'Checkpoint {folder} does not fit the model:\n')
  assert '  shape:      params/backbone_0/head/kernel has (64, 10), the model needs (64, 4)' in (
      message)
  assert 'opt_state' not in message  # the model's variables are listed, not the optimiser's
  assert 'It was trained with model.num_classes=10 (this run: 4).' in message
  assert 'pass another --workdir' in message and f'{folder}/meta/metadata' in message
  assert not os.path.exists(os.path.join(workdir, 'checkpoints_damaged'))  # not damage


def test_the_command_line_answers_a_missing_checkpoint_with_one_line_and_exit_status_2(tmp_path):
  missing = str(tmp_path / 'no_such_run')
  result = subprocess.run(
      [sys.executable, '-m', 'arnet_jax.main', '--config=configs/activitynet.py',
       '--config.mode=eval', f'--config.checkpoint={missing}', f'--workdir={tmp_path}'],
      capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)),
      timeout=300)
  assert result.returncode == errors.EXIT_STATUS == 2
  assert 'Traceback' not in result.stderr
  assert [line for line in result.stderr.splitlines() if line.startswith('error:')] == [
      f'error: Checkpoint {missing} does not exist. Give a training workdir, its checkpoints/ or '
      'best/ folder, or one step folder inside them.']
