"""Training throughput: train-step images/s per device and achieved TFLOP/s.

  python -m arnet_jax.bench.train [--models=paper,demo] [--dtype=bfloat16|float32]
      [--batch_per_device=N] [--num_frames=16] [--steps=10] [--peak_tflops=X] [--json]

Times the joint-stage train step exactly as training runs it (`train.make_train_step`: masked
compute, i.e. every frame through every backbone and the policy, the Gumbel-Softmax policy
losses, SGD; `jax.jit` over the batch sharded on all local devices) on synthetic data already
on the devices, so the input pipeline is not measured (see `arnet_jax.bench.input`). Any
backend: CPU, GPU or TPU.

Models:
  paper  the paper's AR-Net: ResNet-50/34/18 at 224/168/112, MobileNetV2 policy at 84 with its
         own head, skips 1/2/4, 200 classes (arnet_jax/defaults.py).
  demo   configs/demo.py: the same structure at 1/8 width, 64/48/32 px, policy at 24 px.

Images = frames (a video is T of them). FLOPs per step and device, two counts:
  xla    XLA's cost analysis of the compiled per-device program (what the compiler counts:
         2 per multiply-accumulate, padding taps skipped, elementwise work included);
  model  6 x the multiply-accumulates of one forward pass (arnet_jax.flops, 'macs'
         convention: every backbone and the policy on every frame), i.e. forward + backward
         ~ 3 forward passes at 2 FLOPs per multiply-accumulate. Model FLOPs / peak is the usual
         model FLOPs utilisation (MFU).
The peak is --peak_tflops (per device, for the --dtype used), else the dense bfloat16 peak of a
few known accelerators (KNOWN_PEAK_TFLOPS); none is assumed for float32, whose peak depends on
whether XLA uses TF32 tensor cores.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from arnet_jax import defaults, flops, parallel, train
from arnet_jax.methods import arnet as arnet_method
from arnet_jax.models import kernels

MODELS = ('paper', 'demo')
DTYPES = ('bfloat16', 'float32')
# Dense (no sparsity) bfloat16 peak TFLOP/s per device, from the vendors' data sheets, matched
# in order against jax.Device.device_kind.
KNOWN_PEAK_TFLOPS = (
    ('H100 PCIe', 756.0),
    ('H100', 989.4),   # SXM ("NVIDIA H100 80GB HBM3")
    ('H200', 989.4),
    ('A100', 312.0),
    ('TPU v4', 275.0),
    ('TPU v5 lite', 197.0),
    ('TPU v5', 459.0),  # v5p
    ('TPU v6 lite', 918.0),
)
DEFAULT_BATCH_PER_DEVICE = {'paper': 12, 'demo': 16}  # the original: 48 videos on 4 GPUs


def demo_config_path() -> str:
  return os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__)))), 'configs', 'demo.py')


def model_config(name: str, dtype: str, num_frames: int) -> ml_collections.ConfigDict:
  """The full config of benchmark model `name` (joint stage, `dtype` compute)."""
  if name == 'paper':
    config = defaults.get_config()
  elif name == 'demo':
    path = demo_config_path()
    if not os.path.exists(path):
      raise FileNotFoundError(f'{path} not found: the demo model is configs/demo.py of a source '
                              'checkout (pip install -e .).')
    config = defaults.load_config(path)
  else:
    raise ValueError(f'Unknown model {name!r}; choose from {MODELS}.')
  config.stage, config.mode = 'joint', 'train'
  config.model.dtype = dtype
  config.data.dtype = dtype
  config.data.num_frames = num_frames
  return defaults.finalize(config)  # the crop size: the model's top resolution


def known_peak(device_kind: str, dtype: str) -> float | None:
  if dtype != 'bfloat16':
    return None
  return next((peak for key, peak in KNOWN_PEAK_TFLOPS if key in device_kind), None)


def model_flops_per_video(config: ml_collections.ConfigDict) -> float:
  """6 x forward multiply-accumulates of a video in masked compute (see the module docstring)."""
  table = flops.cost_table(config.model, convention='macs')
  space = arnet_method.action_space(config.model)
  resolutions = len(space.resolutions)
  per_frame = sum(table.action_gflops[:resolutions]) + table.policy_gflops
  if space.policy_action:  # the policy's own classifier head
    per_frame += table.action_gflops[resolutions]
  return 6 * per_frame * 1e9 * config.data.num_frames


def xla_flops(compiled) -> float | None:
  """FLOPs of a compiled program by XLA's cost analysis (None where the backend has none)."""
  try:
    analysis = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except  (not every backend implements it)
    return None
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else None
  value = (analysis or {}).get('flops')
  return float(value) if value is not None and value > 0 else None


def benchmark(name: str, dtype: str, batch_per_device: int, num_frames: int, steps: int,
              warmup_steps: int) -> dict:
  """Times `steps` train steps of model `name` after `warmup_steps`; returns the figures."""
  if batch_per_device < 1 or num_frames < 1 or steps < 1 or warmup_steps < 0:
    raise ValueError('batch_per_device, num_frames and steps must be >= 1, warmup_steps >= 0; '
                     f'got {batch_per_device}, {num_frames}, {steps}, {warmup_steps}.')
  config = model_config(name, dtype, num_frames)
  kernels.select(config.model.kernels)
  devices = jax.local_devices()
  mesh = parallel.make_mesh(devices)
  size = config.data.image_size
  global_batch = batch_per_device * len(devices)

  model = train.stage_model(config)
  example = jnp.zeros((1, num_frames, size, size, 3), jnp.float32)
  variables = train.initial_variables(model, config, example)
  tx = train.create_optimizer(config, variables['params'], steps_per_epoch=1000)
  state = parallel.replicate(mesh, train.TrainState(
      step=jnp.zeros((), jnp.int32), params=variables['params'],
      batch_stats=variables['batch_stats'], opt_state=tx.init(variables['params'])))
  gflops_table = np.asarray(flops.cost_table(config.model).action_gflops)
  step = train.make_train_step(model, tx, config, gflops_table, mesh, steps_per_epoch=1000)

  rng = np.random.default_rng(0)
  batch = parallel.shard_batch(mesh, {
      'video': rng.normal(size=(global_batch, num_frames, size, size, 3)).astype(dtype),
      'label': rng.integers(0, config.model.num_classes, global_batch, dtype=np.int32)})

  start = time.perf_counter()
  compiled = step.lower(state, batch, jax.random.key(0)).compile()
  compile_s = time.perf_counter() - start
  for i in range(warmup_steps):
    state, metrics = compiled(state, batch, jax.random.key(i))
  jax.block_until_ready(state)
  start = time.perf_counter()
  for i in range(steps):
    state, metrics = compiled(state, batch, jax.random.key(warmup_steps + i))
  jax.block_until_ready((state, metrics))
  step_s = (time.perf_counter() - start) / steps
  loss = float(metrics['loss'])
  if not np.isfinite(loss):
    raise FloatingPointError(f'{name}: the train step produced loss {loss}.')

  images = batch_per_device * num_frames
  model_flops = model_flops_per_video(config) * batch_per_device
  measured = xla_flops(compiled)
  return {
      'model': name, 'dtype': dtype, 'batch_per_device': batch_per_device,
      'num_frames': num_frames, 'image_size': size, 'devices': len(devices),
      'step_ms': _sig(step_s * 1e3), 'compile_s': round(compile_s, 1),
      'images_per_s_per_device': _sig(images / step_s),
      'videos_per_s_per_device': _sig(batch_per_device / step_s),
      'model_gflop_per_step_per_device': _sig(model_flops / 1e9),
      'xla_gflop_per_step_per_device': _sig(measured / 1e9) if measured else None,
      'model_tflops_per_device': _sig(model_flops / step_s / 1e12),
      'xla_tflops_per_device': _sig(measured / step_s / 1e12) if measured else None,
      'loss': _sig(loss),
  }


def _sig(x: float) -> float:
  """Four significant digits."""
  return float(f'{x:.4g}')


def add_peak(result: dict, peak: float | None) -> dict:
  result['peak_tflops'] = peak
  for kind in ('model', 'xla'):
    achieved = result[f'{kind}_tflops_per_device']
    result[f'{kind}_percent_of_peak'] = (None if peak is None or achieved is None
                                         else _sig(100 * achieved / peak))
  return result


def describe(r: dict) -> str:
  lines = [f'{r["model"]} ({r["dtype"]}, {r["batch_per_device"]} videos x {r["num_frames"]} '
           f'frames at {r["image_size"]} px per device, {r["devices"]} device(s)):',
           f'  {r["images_per_s_per_device"]:.4g} images/s per device '
           f'({r["videos_per_s_per_device"]:.4g} videos/s), step {r["step_ms"]:.4g} ms, '
           f'compile {r["compile_s"]:.0f} s']
  for kind in ('model', 'xla'):
    if r[f'{kind}_tflops_per_device'] is None:
      lines.append(f'  {kind:5s} FLOPs: not reported by this backend')
      continue
    peak = ('' if r['peak_tflops'] is None else
            f' = {r[f"{kind}_percent_of_peak"]:.3g}% of {r["peak_tflops"]:g}')
    lines.append(f'  {kind:5s} {r[f"{kind}_gflop_per_step_per_device"]:.4g} GFLOP/step -> '
                 f'{r[f"{kind}_tflops_per_device"]:.4g} TFLOP/s per device{peak}')
  return '\n'.join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
  p = argparse.ArgumentParser(prog='python -m arnet_jax.bench.train', description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--models', default='paper,demo', help=f'comma-separated, of {MODELS}')
  p.add_argument('--dtype', choices=DTYPES, default='float32', help='compute dtype')
  p.add_argument('--batch_per_device', type=int, default=None,
                 help=f'videos per device (default: {DEFAULT_BATCH_PER_DEVICE})')
  p.add_argument('--num_frames', type=int, default=16, help='T, frames per video')
  p.add_argument('--steps', type=int, default=10, help='timed steps')
  p.add_argument('--warmup_steps', type=int, default=2, help='untimed steps after compiling')
  p.add_argument('--peak_tflops', type=float, default=None,
                 help='peak TFLOP/s of one device for --dtype (default: KNOWN_PEAK_TFLOPS)')
  p.add_argument('--json', action='store_true', help='end with one JSON line')
  args = p.parse_args(argv)
  args.models = [m.strip() for m in args.models.split(',') if m.strip()]
  unknown = [m for m in args.models if m not in MODELS]
  if unknown or not args.models:
    p.error(f'--models: unknown {unknown}; choose from {MODELS}.')
  if args.peak_tflops is not None and args.peak_tflops <= 0:
    p.error(f'--peak_tflops must be positive, got {args.peak_tflops}.')
  return args


def main(argv: list[str] | None = None) -> int:
  args = parse_args(argv)
  device = jax.local_devices()[0]
  peak = args.peak_tflops or known_peak(device.device_kind, args.dtype)
  report = {'backend': jax.default_backend(), 'device_kind': device.device_kind,
            'devices': jax.local_device_count(), 'dtype': args.dtype, 'peak_tflops': peak,
            'results': {}}
  print(f'train step on {report["devices"]} x {device.device_kind} ({report["backend"]}), '
        f'{args.dtype}; peak {"unknown" if peak is None else f"{peak:g} TFLOP/s"} per device')
  for name in args.models:
    batch = args.batch_per_device or DEFAULT_BATCH_PER_DEVICE[name]
    result = add_peak(benchmark(name, args.dtype, batch, args.num_frames, args.steps,
                                args.warmup_steps), peak)
    report['results'][name] = result
    print(describe(result), flush=True)
  if args.json:
    print(json.dumps(report))
  return 0


if __name__ == '__main__':
  sys.exit(main())
