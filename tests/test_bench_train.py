"""The train-step benchmark's arithmetic and command line (the timing itself runs by hand:
`python -m arnet_jax.bench.train`, see docs)."""
import pytest

from arnet_jax.bench import train as bench


@pytest.mark.parametrize('device_kind, dtype, peak', [
    ('NVIDIA H100 80GB HBM3', 'bfloat16', 989.4),
    ('NVIDIA H100 PCIe', 'bfloat16', 756.0),
    ('NVIDIA H200', 'bfloat16', 989.4),
    ('NVIDIA A100-SXM4-80GB', 'bfloat16', 312.0),
    ('TPU v5 lite', 'bfloat16', 197.0),
    ('TPU v5', 'bfloat16', 459.0),
    ('NVIDIA H100 80GB HBM3', 'float32', None),  # TF32 or not: no assumed float32 peak
    ('cpu', 'bfloat16', None),
])
def test_the_known_peak_is_the_dense_bfloat16_peak_of_the_device(device_kind, dtype, peak):
  assert bench.known_peak(device_kind, dtype) == peak


def test_model_flops_are_six_times_the_forward_macs_of_every_frame_through_everything():
  """Masked compute: each frame goes through the three backbones (with heads), the policy CNN,
  LSTM and action head, and the lite head: 4.09 + 2.24 + 0.48 + 0.05 GMACs per frame for the
  paper's networks."""
  config = bench.model_config('paper', 'float32', num_frames=16)
  per_frame_gmacs = bench.model_flops_per_video(config) / (6 * 16 * 1e9)
  assert per_frame_gmacs == pytest.approx(6.87, abs=0.01)
  demo = bench.model_config('demo', 'bfloat16', num_frames=4)
  assert demo.model.dtype == demo.data.dtype == 'bfloat16' and demo.data.num_frames == 4
  assert bench.model_flops_per_video(demo) == pytest.approx(
      bench.model_flops_per_video(bench.model_config('demo', 'float32', 16)) / 4)


def test_the_percent_of_peak_uses_the_given_peak():
  result = bench.add_peak({'model_tflops_per_device': 50.0, 'xla_tflops_per_device': None}, 200.0)
  assert result['model_percent_of_peak'] == 25.0 and result['xla_percent_of_peak'] is None
  assert bench.add_peak({'model_tflops_per_device': 1.0, 'xla_tflops_per_device': 1.0},
                        None)['model_percent_of_peak'] is None


@pytest.mark.parametrize('argv', [['--models=paper,resnet'], ['--models='],
                                  ['--peak_tflops=0'], ['--dtype=float16']])
def test_the_command_line_rejects_bad_input(argv, capsys):
  with pytest.raises(SystemExit) as exit_info:
    bench.parse_args(argv)
  assert exit_info.value.code == 2
  assert 'error' in capsys.readouterr().err


def test_a_benchmark_needs_at_least_one_video_frame_and_step():
  with pytest.raises(ValueError, match='batch_per_device'):
    bench.benchmark('demo', 'float32', batch_per_device=0, num_frames=16, steps=10,
                    warmup_steps=0)
