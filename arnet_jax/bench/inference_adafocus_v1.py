"""Inference speed of AdaFocus V1 and AdaFocus+ against Uniform ResNet-50 on the same frames.

  python -m arnet_jax.bench.inference --method=adafocus_v1 [--config=configs/adafocus_v1.py]
      [--batch_size=4[,8]] [--dtype=float32[,bfloat16]] [--skip_fractions=1,0.5,0.25]
      [--precision=...] [--repeats=3] [--warmup=1] [--seed=0] [--json]

The paper's AdaFocus V1 (`configs/adafocus_v1.py`: MobileNetV2 glance on the whole 224 frame, a
GRU policy over a 7 x 7 grid of corners, ResNet-50 on a 128 x 128 patch, GRU classifier, 200
classes, T = 16) with random weights: one initialisation of the AdaFocus+ model (it has every
child) shared by every mode. Each mode is the `jit` of its model's evaluation forward
(`apply(variables, video)['logits']`), all timed on the same videos, every repeat in a shuffled
order (`bench.inference.time_calls`), median reported:
  uniform           `adafocus_v1_uniform`: the local CNN and its head on every whole frame,
                    logits averaged (the same ResNet-50 weights);
  adafocus_v1       the V1 model: glance, policy, then every frame's patch through the local CNN
                    and the classifier (masked compute: nothing is skipped);
  plus/<f>/dense    AdaFocus+ with the frames it processes forced (the `processed` argument, a
                    traced array: one program serves every f) to a fixed pattern keeping a
                    fraction f of the T frames, evenly spaced from step 0 (f = 0.25, T = 16:
                    frames 0, 4, 8, 12), every video alike; `sparse_plan=''`: the local CNN still
                    reads every frame's patch and the skipped frames are masked;
  plus/<f>/sparse   the same with `sparse_plan` the backend's plan (`routing.resolve_plan('auto')`:
                    'binary' on a CPU, 'grid' elsewhere, as the registry's AdaFocus+ inference):
                    the local CNN reads only the kept frames' patches.
GFLOPs per video are the registry's (`arnet_jax.flops`, the papers' multiply-accumulates): Uniform
T x the local CNN at the whole frame; AdaFocus V1 T x (glance + policy + focus); AdaFocus+ T x
(glance + both policies) + kept x focus (focus: the local CNN on the patch, its head and a
classifier step). `gflops_ratio` is Uniform's over the mode's, `speedup` Uniform's seconds over
the mode's: a sparse run that turns skipped GFLOPs into time has a speedup that grows as f falls,
a dense one's stays flat. `max_abs_logit_diff` compares sparse with dense at each f (the same
frames are read: ~0), and, at f = 1, dense AdaFocus+ with AdaFocus V1 (every frame processed:
~0). `local_rows` is the number of patches the sparse run's local CNN computed, sown by the model
(`intermediates/local_rows`, read in a separate untimed apply): the kept frames of the batch
with 'binary', the grid bucket holding them with 'grid'.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from arnet_jax import defaults, flops, models, registry
from arnet_jax.bench import inference as bench
from arnet_jax.methods import adafocus_v1 as method
from arnet_jax.models import kernels, routing

DEFAULT_CONFIG = 'configs/adafocus_v1.py'
UNIFORM = f'{method.NAME}_uniform'


def kept_steps(fraction: float, t: int) -> np.ndarray:
  """The steps a fraction `fraction` in (0, 1] of T keeps: round(f T) (at least 1) of them,
  evenly spaced from step 0 (floor(i T / k))."""
  if not 0 < fraction <= 1:
    raise ValueError(f'--skip_fractions take fractions in (0, 1], got {fraction}')
  k = max(1, int(round(fraction * t)))
  return np.arange(k) * t // k


def processed_pattern(fraction: float, batch: int, t: int) -> jax.Array:
  """`[B, T]` bool: the kept steps of `kept_steps`, the same in every video."""
  row = np.zeros(t, bool)
  row[kept_steps(fraction, t)] = True
  return jnp.asarray(np.broadcast_to(row, (batch, t)))


class Setup:
  """AdaFocus V1, AdaFocus+ and their Uniform baseline of one config, sharing one set of random
  weights (AdaFocus+'s: every child)."""

  def __init__(self, config_path: str | None, seed: int):
    config = defaults.load_config(config_path or DEFAULT_CONFIG)
    kernels.select(config.model.kernels)
    self.base, self.t = config.model, config.data.num_frames
    self.size = int(self.base.frame_resolution)
    self.plan = routing.resolve_plan('auto')
    plus = models.create_model(registry.with_variant(self.base, method.PLUS))
    self.variables = jax.block_until_ready(jax.jit(plus.init)(
        {'params': jax.random.key(seed)}, jnp.zeros((1, self.t, self.size, self.size, 3))))
    self.tables = {name: flops.cost_table(registry.with_variant(self.base, name))
                   for name in (UNIFORM, method.NAME, method.PLUS)}

  def gflops_per_video(self, name: str, kept: int | None = None) -> float:
    """GFLOPs per video of variant `name`, its one action paid on `kept` frames (default T)."""
    table = self.tables[name]
    return self.t * table.policy_gflops + (self.t if kept is None else kept) * max(
        table.action_gflops)

  def models(self, dtype: str) -> dict:
    mc = self.base.copy_and_resolve_references()
    mc.dtype = dtype
    create = lambda name: models.create_model(registry.with_variant(mc, name))
    plus = create(method.PLUS)
    return {'uniform': create(UNIFORM), 'adafocus_v1': create(method.NAME),
            'plus/dense': plus.clone(sparse_plan=''),
            'plus/sparse': plus.clone(sparse_plan=self.plan)}

  def video(self, batch: int, seed: int) -> jax.Array:
    return jax.random.normal(jax.random.key(seed), (batch, self.t, self.size, self.size, 3))


def forward(model):
  """The model's evaluation forward as one `jit`: (variables, video[, processed]) -> logits
  (`processed`: AdaFocus+'s forced frames; the other models ignore it)."""
  return jax.jit(lambda variables, video, processed=None: model.apply(
      variables, video, processed=processed)['logits'])


def local_rows(model):
  """One `jit`: (variables, video, processed) -> the patches the local CNN computed in that
  forward (`intermediates/local_rows`), for an untimed call."""
  fn = lambda v, x, p: model.apply(v, x, processed=p, mutable=['intermediates'])[1]
  return jax.jit(lambda v, x, p: fn(v, x, p)['intermediates']['local_rows'][0])


def run_one(s: Setup, args, b: int, dtype: str) -> dict:
  ms = s.models(dtype)
  video = s.video(b, args.seed).astype(dtype)
  fns = {name: forward(m) for name, m in ms.items()}
  rows_of = local_rows(ms['plus/sparse'])
  fractions = list(dict.fromkeys(args.skip_fractions))  # the given order, once each
  patterns = {f: processed_pattern(f, b, s.t) for f in fractions}
  modes = {'uniform': lambda i: fns['uniform'](s.variables, video),
           'adafocus_v1': lambda i: fns['adafocus_v1'](s.variables, video)}
  for f in fractions:
    for kind in ('dense', 'sparse'):
      modes[f'plus/{f:g}/{kind}'] = (lambda i, fn=fns[f'plus/{kind}'], p=patterns[f]:
                                     fn(s.variables, video, p))
  times, warmup_s = bench.time_calls(modes, 1, args.warmup, args.repeats, args.seed)
  seconds = {name: float(np.median(ts)) for name, ts in times.items()}
  uniform_gflops = s.gflops_per_video(UNIFORM)

  def entry(name: str, gflops: float) -> dict:
    sec = seconds[name]
    return dict(seconds_per_batch=round(sec, 4), videos_per_s=round(b / sec, 2),
                speedup=round(seconds['uniform'] / sec, 3), gflops_per_video=round(gflops, 6),
                gflops_ratio=round(uniform_gflops / gflops, 3))

  result = dict(batch_size=b, num_frames=s.t, dtype=dtype, sparse_plan=s.plan,
                warmup_s=round(warmup_s, 1),
                uniform=entry('uniform', uniform_gflops),
                adafocus_v1=entry('adafocus_v1', s.gflops_per_video(method.NAME)))
  v1_logits = np.asarray(modes['adafocus_v1'](0), np.float64)
  for f in fractions:
    kept = len(kept_steps(f, s.t))
    gflops = s.gflops_per_video(method.PLUS, kept)
    dense = np.asarray(modes[f'plus/{f:g}/dense'](0), np.float64)
    sparse = np.asarray(modes[f'plus/{f:g}/sparse'](0), np.float64)
    result[f'plus/{f:g}/dense'] = dict(entry(f'plus/{f:g}/dense', gflops), kept_per_video=kept)
    if kept == s.t:
      result[f'plus/{f:g}/dense']['max_abs_logit_diff_vs_adafocus_v1'] = float(
          np.abs(dense - v1_logits).max())
    result[f'plus/{f:g}/sparse'] = dict(
        entry(f'plus/{f:g}/sparse', gflops), kept_per_video=kept,
        max_abs_logit_diff=float(np.abs(sparse - dense).max()),
        local_rows=int(rows_of(s.variables, video, patterns[f])),
        kept_rows=b * kept)
  result['times_s'] = {name: [round(x, 4) for x in ts] for name, ts in times.items()}
  return result


def run(args) -> dict:
  s = Setup(args.config, args.seed)
  with jax.default_matmul_precision(args.precision):
    runs = [run_one(s, args, b, dtype) for b in args.batch_size for dtype in args.dtype]
  tables = {name: dict(policy_gflops=round(t.policy_gflops, 6),
                       action_gflops=round(max(t.action_gflops), 6))
            for name, t in s.tables.items()}
  return dict(method=method.NAME, config=args.config or DEFAULT_CONFIG,
              device_kind=jax.devices()[0].device_kind, backend=jax.default_backend(),
              jax_version=jax.__version__, precision=args.precision,
              kernels=kernels.active().name, sparse_plan=s.plan, repeats=args.repeats,
              skip_fractions=list(args.skip_fractions), gflops_per_frame=tables, runs=runs)


def print_report(r: dict) -> None:
  print(f'AdaFocus V1 / AdaFocus+ inference ({r["config"]}) on {r["device_kind"]} (JAX '
        f'{r["jax_version"]}), precision {r["precision"]}, kernels {r["kernels"]}, sparse plan '
        f'{r["sparse_plan"]}, median of {r["repeats"]}')
  for run_ in r['runs']:
    print(f'\n{run_["batch_size"]} videos x T={run_["num_frames"]}, {run_["dtype"]}; speedup '
          'and GFLOPs ratio over Uniform')
    print(f'{"mode":<20}{"s/batch":>9}{"videos/s":>10}{"speedup":>9}{"GFLOPs":>9}'
          f'{"ratio":>8}{"|dlogit|":>10}{"rows":>11}')
    for name, m in run_.items():
      if not isinstance(m, dict) or 'seconds_per_batch' not in m:
        continue
      diff = m.get('max_abs_logit_diff', m.get('max_abs_logit_diff_vs_adafocus_v1'))
      rows = f'{m["local_rows"]:5d}/{m["kept_rows"]:<5d}' if 'local_rows' in m else ''
      print(f'{name:<20}{m["seconds_per_batch"]:9.4f}{m["videos_per_s"]:10.2f}'
            f'{m["speedup"]:8.2f}x{m["gflops_per_video"]:9.4g}{m["gflops_ratio"]:7.2f}x'
            + (f'{diff:10.1e}' if diff is not None else ' ' * 10) + f' {rows}')
  print('\n|dlogit|: sparse vs dense at the same f (dense at f=1: vs adafocus_v1); rows: patches '
        'the sparse local CNN computed / kept frames of the batch')
