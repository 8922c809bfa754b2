"""The AdaFocus V1 / AdaFocus+ inference benchmark (`--method=adafocus_v1`) on a tiny config:
its sparse AdaFocus+ gives the dense logits from the kept frames' patches only, and its GFLOPs
fall with the kept fraction (the timing itself is not checked)."""
import json
import os

import numpy as np
import pytest

from arnet_jax.bench import inference as bench
from arnet_jax.bench import inference_adafocus_v1 as bench_v1

DEMO_CONFIG = os.path.abspath(
    os.path.join(os.path.dirname(__file__), '..', 'configs', 'adafocus_v1_demo.py'))
TINY_CONFIG = f'''
import importlib.util
spec = importlib.util.spec_from_file_location('adafocus_v1_demo', {DEMO_CONFIG!r})
demo = importlib.util.module_from_spec(spec)
spec.loader.exec_module(demo)


def get_config():
  config = demo.get_config()
  config.data.num_frames = 4
  model = config.model
  model.frame_resolution = model.global_resolution = 32
  model.patch_sizes = (16,)
  model.global_backbone = model.local_backbone = 'resnet18'
  model.grid = 3
  return config
'''


@pytest.fixture(scope='module')
def tiny_config(tmp_path_factory):
  config = tmp_path_factory.mktemp('bench_adafocus_v1') / 'tiny.py'
  config.write_text(TINY_CONFIG)
  return config


def test_the_kept_steps_are_evenly_spaced_from_step_0():
  assert bench_v1.kept_steps(0.25, 16).tolist() == [0, 4, 8, 12]
  assert bench_v1.kept_steps(1, 16).tolist() == list(range(16))
  assert bench_v1.kept_steps(0.01, 16).tolist() == [0]  # step 0 is always processed
  pattern = np.asarray(bench_v1.processed_pattern(0.5, 2, 4))
  assert pattern.tolist() == [[True, False, True, False]] * 2


def test_the_command_line_rejects_a_fraction_out_of_0_1(capsys):
  with pytest.raises(SystemExit) as exit_info:
    bench.main(['--method=adafocus_v1', '--skip_fractions=1,0'])
  assert exit_info.value.code == 2 and '--skip_fractions' in capsys.readouterr().err


def test_sparse_plus_reads_only_the_kept_frames_and_gives_the_dense_logits(tiny_config, capsys):
  assert bench.main(['--method=adafocus_v1', f'--config={tiny_config}', '--batch_size=2',
                     '--repeats=1', '--skip_fractions=1,0.5', '--json']) == 0
  out = capsys.readouterr().out
  r = json.loads(out.strip().splitlines()[-1])
  assert 'plus/0.5/sparse' in out  # the printed report
  run, t = r['runs'][0], 4
  assert r['sparse_plan'] == run['sparse_plan'] == 'binary'  # on a CPU: no padding
  per_frame = r['gflops_per_frame']['adafocus_v1_plus']
  for f, kept in ((1, 4), (0.5, 2)):
    dense, sparse = run[f'plus/{f:g}/dense'], run[f'plus/{f:g}/sparse']
    assert sparse['max_abs_logit_diff'] < 1e-5
    assert sparse['kept_per_video'] == dense['kept_per_video'] == kept
    assert sparse['local_rows'] == sparse['kept_rows'] == 2 * kept
    assert sparse['gflops_per_video'] == dense['gflops_per_video'] == pytest.approx(
        t * per_frame['policy_gflops'] + kept * per_frame['action_gflops'], rel=1e-3)
  assert run['plus/1/dense']['max_abs_logit_diff_vs_adafocus_v1'] < 1e-5
  gflops = lambda name: run[name]['gflops_per_video']
  assert gflops('plus/0.5/sparse') < gflops('plus/1/sparse')
  assert gflops('adafocus_v1') < gflops('plus/1/sparse')  # + the skip policy on every frame
  assert run['plus/0.5/sparse']['gflops_ratio'] > run['plus/1/sparse']['gflops_ratio']
  for name in ('uniform', 'adafocus_v1', 'plus/1/dense', 'plus/0.5/sparse'):
    assert run[name]['seconds_per_batch'] > 0 and run[name]['speedup'] > 0
