"""Inference speed of AdaFocusV2 against Uniform ResNet-50 on the same frames, tuned alike.

  python -m arnet_jax.bench.inference --method=adafocus_v2 [--config=configs/adafocus_v2.py]
      [--batch_size=4[,8]] [--dtype=float32[,bfloat16]] [--frames_per_call=8,16,32,0]
      [--precision=...] [--repeats=3] [--json]

The paper's AdaFocusV2 (`configs/adafocus_v2.py`: MobileNetV2 glance on the whole 224 frame,
ResNet-50 on a 128 x 128 patch, 200 classes, T = 16) with random weights, against Uniform: the
same ResNet-50 (the same weights and head: `adafocus_v2_uniform`) on every whole 224 frame,
logits averaged. Both are timed on the same videos, every repeat in a shuffled order, median
reported, both tuned the same way, the best of one sweep of `model.frames_per_call` (c frames
or patches per CNN call, a scan over chunks of the batch's B * T; `--frames_per_call`, 0: all):
  adafocus_v2/<c>  `jit` of the model's evaluation forward over the batch: glance, policy, then
                   every frame's patch through the local CNN;
  uniform/<c>      `jit` of the Uniform model's forward: the local CNN on every whole frame.
GFLOPs per video are the registry's (`arnet_jax.flops`, the AdaFocus papers' multiply-
accumulates); the target is a wall-clock speedup >= 0.85 x the Uniform / AdaFocusV2 GFLOPs
ratio. `parts` times the glance + policy and the local CNN on the patches alone, and
`max_abs_logit_diff` compares every chunking with the unchunked forward.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from arnet_jax import defaults, flops, models, registry
from arnet_jax.bench import inference as bench
from arnet_jax.methods import adafocus_v2 as method
from arnet_jax.models import kernels

DEFAULT_CONFIG = 'configs/adafocus_v2.py'


class Setup:
  """AdaFocusV2 and its Uniform baseline of one config, sharing one set of random weights."""

  def __init__(self, config_path: str | None, seed: int):
    config = defaults.load_config(config_path or DEFAULT_CONFIG)
    kernels.select(config.model.kernels)
    self.base, self.t = config.model, config.data.num_frames
    self.size = int(self.base.frame_resolution)
    model = models.create_model(self.base)
    self.variables = jax.block_until_ready(jax.jit(model.init)(
        {'params': jax.random.key(seed)}, jnp.zeros((1, self.t, self.size, self.size, 3))))
    self.gflops_per_video = {}
    for name in (method.NAME, f'{method.NAME}_uniform'):  # one action, paid on every frame
      table = flops.cost_table(registry.with_variant(self.base, name))
      self.gflops_per_video[name] = (max(table.action_gflops) + table.policy_gflops) * self.t

  def models(self, dtype: str) -> dict:
    mc = self.base.copy_and_resolve_references()
    mc.dtype = dtype
    return {'adafocus_v2': models.create_model(mc),
            'uniform': models.create_model(registry.with_variant(mc, f'{method.NAME}_uniform'))}

  def video(self, batch: int, seed: int) -> jax.Array:
    return jax.random.normal(jax.random.key(seed), (batch, self.t, self.size, self.size, 3))


def forward(model, c: int):
  """The model's evaluation forward as one `jit`, c frames per CNN call (0: all)."""
  model = model.clone(frames_per_call=c)
  return jax.jit(lambda variables, video: model.apply(variables, video)['logits'])


def parts(model, c: int, variables, video) -> dict:
  """Seconds of the glance + policy alone and of the local CNN on the batch's patches alone,
  c frames (patches) per CNN call."""
  model = model.clone(frames_per_call=c)

  def glance_policy(variables, video):
    def inner(m, video):
      g = m.glance(video)
      return m.policy(jax.lax.stop_gradient(g['feature_map']))
    return model.apply(variables, video, method=inner)

  def local(variables, patches):
    return model.apply(variables, patches,
                       method=lambda m, x: m.per_call(lambda m, x: m.backbone_1(x), x, False))
  b, t = video.shape[:2]
  p = max(model.action_sizes)
  patches = jnp.zeros((b * t, p, p, 3), video.dtype)
  fns = {'glance_policy_s': (jax.jit(glance_policy), video), 'local_cnn_s': (jax.jit(local),
                                                                             patches)}
  out = {}
  for name, (fn, x) in fns.items():
    times, _ = bench.time_calls({name: lambda i, fn=fn, x=x: fn(variables, x)}, 1, 1, 3, 0)
    out[name] = round(float(np.median(times[name])), 4)
  return out


def run_one(s: Setup, args, b: int, dtype: str) -> dict:
  n = b * s.t
  ms = s.models(dtype)
  video = s.video(b, args.seed).astype(dtype)
  modes, chunk_of = {}, {}
  chunks = sorted({c if 0 < c < n else n for c in args.frames_per_call})  # n: all at once
  for name in ('adafocus_v2', 'uniform'):
    for c in chunks:
      fn = forward(ms[name], c)
      modes[f'{name}/{c}'] = lambda i, fn=fn: fn(s.variables, video)
      chunk_of[f'{name}/{c}'] = c
  times, warmup_s = bench.time_calls(modes, 1, args.warmup, args.repeats, args.seed)
  reference = np.asarray(forward(ms['adafocus_v2'], 0)(s.variables, video), np.float64)
  result = dict(batch_size=b, num_frames=s.t, dtype=dtype, warmup_s=round(warmup_s, 1))
  for name, ts in times.items():
    sec = float(np.median(ts))
    result[name] = dict(seconds_per_batch=round(sec, 4), videos_per_s=round(b / sec, 2))
    if name.startswith('adafocus_v2/'):
      diff = np.abs(np.asarray(modes[name](0), np.float64) - reference).max()
      result[name]['max_abs_logit_diff'] = float(diff)
  best = lambda prefix: min((k for k in times if k.startswith(prefix)),
                            key=lambda k: result[k]['seconds_per_batch'])
  result['best_adafocus_v2'], result['best_uniform'] = best('adafocus_v2/'), best('uniform/')
  ratio = s.gflops_per_video[f'{method.NAME}_uniform'] / s.gflops_per_video[method.NAME]
  speedup = (result[result['best_uniform']]['seconds_per_batch']
             / result[result['best_adafocus_v2']]['seconds_per_batch'])
  result.update(
      gflops_per_video={k: round(g, 3) for k, g in s.gflops_per_video.items()},
      gflops_ratio_uniform_over_adafocus=round(ratio, 3), speedup=round(speedup, 3),
      target_speedup=round(bench.TARGET_FRACTION_OF_GFLOPS_RATIO * ratio, 3),
      speedup_over_gflops_ratio=round(speedup / ratio, 3),
      parts=parts(ms['adafocus_v2'], chunk_of[result['best_adafocus_v2']], s.variables, video))
  return result


def run(args) -> dict:
  s = Setup(args.config, args.seed)
  with jax.default_matmul_precision(args.precision):
    runs = [run_one(s, args, b, dtype) for b in args.batch_size for dtype in args.dtype]
  return dict(method=method.NAME, config=args.config or DEFAULT_CONFIG,
              device_kind=jax.devices()[0].device_kind, backend=jax.default_backend(),
              jax_version=jax.__version__, precision=args.precision,
              kernels=kernels.active().name, repeats=args.repeats, runs=runs)


def print_report(r: dict) -> None:
  print(f'AdaFocusV2 inference ({r["config"]}) on {r["device_kind"]} (JAX {r["jax_version"]}), '
        f'precision {r["precision"]}, kernels {r["kernels"]}, median of {r["repeats"]}')
  for run_ in r['runs']:
    print(f'\n{run_["batch_size"]} videos x T={run_["num_frames"]}, {run_["dtype"]}; GFLOPs per '
          f'video {run_["gflops_per_video"]}: Uniform/AdaFocusV2 '
          f'{run_["gflops_ratio_uniform_over_adafocus"]:.2f}x (target speedup '
          f'{run_["target_speedup"]:.2f}x); speedup {run_["speedup"]:.2f}x = '
          f'{run_["speedup_over_gflops_ratio"]:.2f} x the GFLOPs ratio')
    best = run_[run_['best_uniform']]['seconds_per_batch']
    print(f'{"mode":<20}{"s/batch":>9}{"videos/s":>10}{"speedup":>9}{"|dlogit|":>10}')
    for name, m in run_.items():
      if isinstance(m, dict) and 'seconds_per_batch' in m:
        diff = f'{m["max_abs_logit_diff"]:10.1e}' if 'max_abs_logit_diff' in m else ''
        print(f'{name:<20}{m["seconds_per_batch"]:9.4f}{m["videos_per_s"]:10.2f}'
              f'{best / m["seconds_per_batch"]:8.2f}x{diff}')
    print('parts (s/batch): ' + ', '.join(f'{k} {v}' for k, v in run_['parts'].items()))
