"""Inference speed: Uniform, Multi-Scale, AR-Net masked and AR-Net sparse, in one run.

  python -m arnet_jax.bench.inference [--batch_size=2] [--usage=0.43,0.10,0.10,0.07,0.30]
      [--policy] [--dtype=float32|bfloat16] [--chunk_size=N] [--capacities=binary]
      [--policy_chunk=N] [--repeats=3] [--warmup=1] [--config=configs/x.py] [--json]
  python -m arnet_jax.bench.inference --eval_videos=200 --batch_size=8  # an evaluation's routing

The paper's ResNet AR-Net (`arnet_jax.defaults`: ResNet-50/34/18 at 224/168/112, the MobileNetV2
policy at 84, 200 classes, T = 16) with random weights. AR-Net's decisions are forced to shares of
the frames per resolution action plus a skipped share (default: the paper's ActivityNet usage,
43% ResNet-50, 10% ResNet-34, 10% ResNet-18, 7% the policy head, 30% skipped), or are the policy's
own (`--policy`). Skipped frames are real skip decisions: each run of skipped frames in a video is
covered by the longest skips that fit (5 frames -> skip4 + skip1).

Every mode runs on the same engine, `SparseRouter`, with the same `--capacities`, `--chunk_size`
and `--policy_chunk`, so a tuning of the execution helps all of them alike:
  uniform       Uniform-R50@224: every frame through ResNet-50
  multiscale    every frame through every backbone and the policy head
  arnet_masked  masked compute: every frame through every backbone, the decisions select
  arnet_sparse  each backbone only on its frames
`uniform_jit` and `arnet_masked_jit` time the models' own single-jit `model.apply`
(`ARNet.__call__`: no buckets, no chunks) for reference; the sparse speedup is also given against
the faster of the two Uniforms. Each repeat runs every mode once, in a shuffled order, so load from
other processes spreads over all of them; the median over repeats is reported. GFLOPs follow the
paper's convention (`arnet_jax.flops`): `gflops_per_video` counts the decisions,
`executed_gflops_per_video` what actually ran (masked compute runs every backbone; sparse also
runs its padded bucket slots). Timing waits for results with `block_until_ready`, so any JAX
backend (CPU, GPU, TPU) is measured the same way; `--dtype=bfloat16` runs the networks in bfloat16.

`--eval_videos=V` instead routes V videos as an evaluation would (decisions drawn per frame from
`--usage`, or the policy's own) and reports the router's compilations and padding waste.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from arnet_jax import defaults, flops, models, registry
from arnet_jax.models import kernels, routing

PAPER_USAGE = (0.43, 0.10, 0.10, 0.07, 0.30)  # ActivityNet AR-Net (paper Fig. 4): 2.09 GFLOPs/f
PAPER_GFLOPS_PER_FRAME = 2.09
TARGET_FRACTION_OF_GFLOPS_RATIO = 0.85  # sparse speedup >= 0.85 x Uniform/AR-Net GFLOPs
TARGET_POLICY_SHARE = 0.05  # policy CNN + LSTM <= 5% of AR-Net sparse time
MODES = ('uniform', 'multiscale', 'arnet_masked', 'arnet_sparse')
CPU_POLICY_CHUNK = 8  # policy CNN frames per call on a CPU: ~1.6x faster than 32 at once here


def load_config(path: str | None):
  return defaults.get_config() if path is None else defaults.load_config(path)


def frame_counts(shares: np.ndarray, total: int) -> np.ndarray:
  """Integer frames per share summing to `total` (largest remainder)."""
  exact = shares * total
  counts = np.floor(exact).astype(int)
  counts[np.argsort(counts - exact, kind='stable')[:total - counts.sum()]] += 1
  return counts


def forced_actions(usage, space: models.ActionSpace, batch: int, frames: int, seed: int = 0,
                   exact_counts: bool = True) -> np.ndarray:
  """`[B, T]` forced actions realising `usage`: one share per resolution action, then skipped.

  exact_counts: the N = B*T frames are split by largest remainder and shuffled over the batch;
  otherwise each frame draws its share independently (counts vary from batch to batch, as an
  evaluation's do). Each run of skipped frames is covered by skip decisions, longest first.
  """
  r = space.num_resolution_actions
  usage = np.asarray(usage, np.float64)
  if len(usage) != r + 1 or abs(usage.sum() - 1) > 0.01 or (usage < 0).any():
    raise ValueError(f'--usage needs {r + 1} non-negative shares summing to 1 (one per action '
                     f'of {space.names[:r]}, then the skipped frames), got {usage.tolist()}')
  if usage[-1] and 1 not in space.skips:
    raise ValueError(f'Skipped frames are covered with skip-1 at the end of a run; the action '
                     f'space has skips {space.skips}.')
  rng = np.random.default_rng(seed)
  usage = usage / usage.sum()
  if exact_counts:
    labels = rng.permutation(np.repeat(np.arange(r + 1), frame_counts(usage, batch * frames)))
  else:
    labels = rng.choice(r + 1, size=batch * frames, p=usage)
  labels = labels.reshape(batch, frames)
  forced = labels.copy()
  for b in range(batch):
    t = 0
    while t < frames:
      run = 0
      while t + run < frames and labels[b, t + run] == r:
        run += 1
      if not run:
        t += 1
      while run:  # the longest skip that fits, then the rest
        k = max(k for k in space.skips if k <= run)
        forced[b, t:t + k] = r + space.skips.index(k)
        t, run = t + k, run - k
  return forced


class Setup:
  """The AR-Net, Uniform and Multi-Scale models sharing one set of random weights."""

  def __init__(self, args: argparse.Namespace):
    config = load_config(args.config)
    kernels.select(config.model.kernels)
    self.config = mc = config.model
    mc.dtype = args.dtype
    self.t, self.b = config.data.num_frames, args.batch_size
    self.size = max(*mc.resolutions, mc.policy_resolution)
    self.arnet = models.create_model(mc)
    self.uniform = models.create_model(registry.with_variant(mc, 'uniform'))
    self.multiscale = models.create_model(registry.with_variant(mc, 'multiscale'))
    self.space = self.arnet.action_space
    start = time.perf_counter()
    self.variables = jax.block_until_ready(jax.jit(self.arnet.init)(
        {'params': jax.random.key(args.seed)}, jnp.zeros((1, self.t, self.size, self.size, 3))))
    self.init_seconds = time.perf_counter() - start
    self.uniform_variables = routing.module_variables(self.variables, 'backbone_0')
    self.multiscale_variables = self.variables  # AR-Net's parameters; its skips are never taken

  def video(self, seed: int) -> jax.Array:
    return jax.random.normal(jax.random.key(seed), (self.b, self.t, self.size, self.size, 3))


def time_modes(modes: dict, warmup: int, repeats: int, seed: int) -> tuple[dict, dict, float]:
  """Median seconds per call of each mode; the last outputs; warm-up (compilation) seconds."""
  start = time.perf_counter()
  outputs = {}
  for _ in range(max(warmup, 1)):  # the first call compiles
    for name, fn in modes.items():
      outputs[name] = jax.block_until_ready(fn())
  warmup_seconds = time.perf_counter() - start
  times = {name: [] for name in modes}
  order = list(modes)
  for _ in range(repeats):
    random.Random(seed).shuffle(order)
    seed += 1
    for name in order:
      start = time.perf_counter()
      jax.block_until_ready(modes[name]())
      times[name].append(time.perf_counter() - start)
  return times, outputs, warmup_seconds


def run(args: argparse.Namespace) -> dict:
  s = Setup(args)
  b, t, space = s.b, s.t, s.space
  video = s.video(args.seed)
  forced = None if args.policy else jnp.asarray(
      forced_actions(args.usage, space, b, t, args.seed))
  engine = dict(capacities=args.capacities, chunk_size=args.chunk_size,
                policy_chunk=args.policy_chunk)
  routers = {'uniform': routing.SparseRouter(s.uniform, **engine),
             'multiscale': routing.SparseRouter(s.multiscale, **engine),
             'arnet_masked': routing.SparseRouter(s.arnet, dense=True, **engine),
             'arnet_sparse': routing.SparseRouter(s.arnet, **engine)}
  modes = {
      'uniform': lambda: routers['uniform'](s.uniform_variables, video),
      'multiscale': lambda: routers['multiscale'](s.multiscale_variables, video),
      'arnet_masked': lambda: routers['arnet_masked'](s.variables, video, forced=forced),
      'arnet_sparse': lambda: routers['arnet_sparse'](s.variables, video, forced=forced),
      'policy': lambda: routers['arnet_sparse'].decide(s.variables, video, forced=forced),
  }
  uniform_jit = jax.jit(lambda v, x: s.uniform.apply(v, x))
  masked_jit = jax.jit(lambda v, x, forced: s.arnet.apply(v, x, forced=forced))
  modes['uniform_jit'] = lambda: uniform_jit(s.uniform_variables, video)
  modes['arnet_masked_jit'] = lambda: masked_jit(s.variables, video, forced)
  n = b * t
  for k, (backbone, res) in enumerate(zip(space.backbones, space.resolutions)):
    fn = jax.jit(lambda v, x, k=k: s.arnet.apply(  # backbone k alone, on frames at its size
        v, k, x, jnp.zeros((n, space.num_resolution_actions, s.config.num_classes)),
        method=models.ARNet.classify))
    frames = jax.random.normal(jax.random.key(k), (n, 1, res, res, 3))
    sub = routing.module_variables(s.variables, f'backbone_{k}')
    modes[f'{backbone}@{res}'] = lambda fn=fn, sub=sub, frames=frames: fn(sub, frames)

  compile_counts = {}
  times, outputs, warmup_seconds = time_modes(modes, args.warmup, args.repeats, args.seed)
  for name, router in routers.items():
    compile_counts[name] = router.stats.compilations
  stats = routers['arnet_sparse'].stats
  calls = stats.batches
  seconds = {name: statistics.median(ts) for name, ts in times.items()}

  # GFLOPs (paper convention) of the decisions and of what ran.
  actions = np.asarray(outputs['arnet_sparse']['actions'])
  table = flops.cost_table(s.config)
  arnet_gflops = float(flops.decision_gflops(actions, table)['per_video'].mean())
  uniform_table = flops.cost_table(registry.with_variant(s.config, 'uniform'))
  uniform_gflops = t * uniform_table.action_gflops[0]
  ms_table = flops.cost_table(registry.with_variant(s.config, 'multiscale'))
  multiscale_gflops = t * (sum(ms_table.action_gflops) + ms_table.policy_gflops)
  k, r = len(space.backbones), space.num_resolution_actions
  slots = np.add(stats.routed, stats.padded) / (calls * b)  # bucket slots per video
  counted = {'uniform': uniform_gflops, 'multiscale': multiscale_gflops,
             'arnet_masked': arnet_gflops, 'arnet_sparse': arnet_gflops}
  executed = {'uniform': uniform_gflops, 'multiscale': multiscale_gflops,
              'arnet_masked': t * (sum(table.action_gflops[:r]) + table.policy_gflops),
              # the lite head runs on every frame, the policy network too
              'arnet_sparse': float(np.dot(slots, table.action_gflops[:k]))
                              + t * (sum(table.action_gflops[k:r]) + table.policy_gflops)}

  result = dict(batch_size=b, num_frames=t, dtype=args.dtype, capacities=args.capacities,
                chunk_size=args.chunk_size, policy_chunk=args.policy_chunk,
                decisions='policy' if args.policy else 'forced',
                repeats=args.repeats, device=jax.devices()[0].device_kind,
                init_seconds=round(s.init_seconds, 1), warmup_seconds=round(warmup_seconds, 1))
  base = seconds['uniform']
  for name in MODES:
    router = routers[name]
    result[name] = dict(
        execution=(f'SparseRouter(capacities={router.capacities!r}, '
                   f'chunk_size={router.chunk_size}, policy_chunk={router.policy_chunk}, '
                   f'dense={router.dense})'),
        gflops_per_video=round(counted[name], 2),
        executed_gflops_per_video=round(executed[name], 2),
        videos_per_s=round(b / seconds[name], 3), seconds_per_batch=round(seconds[name], 3),
        speedup_vs_uniform=round(base / seconds[name], 3), compilations=compile_counts[name])
  for name in ('uniform_jit', 'arnet_masked_jit'):
    result[name] = dict(execution='jit(model.apply)', videos_per_s=round(b / seconds[name], 3),
                        seconds_per_batch=round(seconds[name], 3),
                        speedup_vs_uniform=round(base / seconds[name], 3))
  result['arnet_sparse']['speedup_vs_best_uniform'] = round(
      min(base, seconds['uniform_jit']) / seconds['arnet_sparse'], 3)
  result['images_per_s'] = {name: round(n / seconds[name], 2) for name in modes if '@' in name}
  result['images_per_s']['policy (CNN + LSTM)'] = round(n / seconds['policy'], 2)
  usage = actions.reshape(-1, actions.shape[-1]).mean(0)
  result['usage'] = {name: round(float(u), 4) for name, u in zip(space.names, usage)}
  result['gflops_per_frame'] = round(arnet_gflops / t, 3)
  result['gflops_ratio_uniform_over_arnet'] = round(uniform_gflops / arnet_gflops, 3)
  result['policy_share_of_sparse_time'] = round(seconds['policy'] / seconds['arnet_sparse'], 4)
  result['max_abs_logit_diff_sparse_vs_masked_jit'] = float(np.abs(
      np.asarray(outputs['arnet_sparse']['logits'])
      - np.asarray(outputs['arnet_masked_jit']['logits'])).max())
  result['router'] = stats.as_dict()
  target = TARGET_FRACTION_OF_GFLOPS_RATIO * result['gflops_ratio_uniform_over_arnet']
  result['targets'] = dict(
      sparse_speedup_min=round(target, 3),
      sparse_speedup_met=bool(result['arnet_sparse']['speedup_vs_uniform'] >= target),
      policy_share_max=TARGET_POLICY_SHARE,
      policy_share_met=bool(result['policy_share_of_sparse_time'] <= TARGET_POLICY_SHARE))
  result['times_s'] = {name: [round(x, 3) for x in ts] for name, ts in times.items()}
  return result


def run_eval(args: argparse.Namespace) -> dict:
  """Routes `args.eval_videos` videos in batches, as an evaluation would; reports the cost."""
  s = Setup(args)
  router = routing.SparseRouter(s.arnet, capacities=args.capacities, chunk_size=args.chunk_size,
                                policy_chunk=args.policy_chunk)
  batches = -(-args.eval_videos // s.b)
  start = time.perf_counter()
  usage = []
  for i in range(batches):
    forced = None if args.policy else jnp.asarray(forced_actions(
        args.usage, s.space, s.b, s.t, seed=args.seed + i, exact_counts=False))
    out = router(s.variables, s.video(args.seed + i), forced=forced)
    usage.append(np.asarray(out['actions']).reshape(-1, s.space.num_actions).mean(0))
  seconds = time.perf_counter() - start
  table = flops.cost_table(s.config)
  return dict(eval_videos=batches * s.b, batch_size=s.b, capacities=args.capacities,
              chunk_size=args.chunk_size, decisions='policy' if args.policy else 'sampled usage',
              seconds=round(seconds, 1), videos_per_s=round(batches * s.b / seconds, 3),
              usage={n: round(float(u), 4) for n, u in zip(s.space.names, np.mean(usage, 0))},
              gflops_per_frame=round(float(np.mean(usage, 0) @ np.asarray(table.action_gflops)
                                           + table.policy_gflops), 3),
              router=router.stats.as_dict())


def print_report(r: dict) -> None:
  print(f'AR-Net inference on {r["device"]}: {r["batch_size"]} videos x T={r["num_frames"]}, '
        f'{r["dtype"]}, decisions {r["decisions"]}, median of {r["repeats"]}; every mode: '
        f'{r["arnet_sparse"]["execution"]}')
  print('usage: ' + ', '.join(f'{k} {v:.1%}' for k, v in r['usage'].items()))
  print(f'AR-Net {r["gflops_per_frame"]:.3f} GFLOPs/frame (paper {PAPER_GFLOPS_PER_FRAME}); '
        f'Uniform/AR-Net GFLOPs {r["gflops_ratio_uniform_over_arnet"]:.2f}x')
  print(f'{"mode":<18}{"GFLOPs/V":>10}{"executed":>10}{"videos/s":>10}{"s/batch":>9}'
        f'{"speedup":>9}')
  for name in (*MODES, 'uniform_jit', 'arnet_masked_jit'):
    m = r[name]
    g = (f'{m["gflops_per_video"]:10.2f}{m["executed_gflops_per_video"]:10.2f}'
         if 'gflops_per_video' in m else ' ' * 20)
    print(f'{name:<18}{g}{m["videos_per_s"]:10.3f}{m["seconds_per_batch"]:9.3f}'
          f'{m["speedup_vs_uniform"]:8.2f}x')
  print('images/s alone: ' + ', '.join(f'{k} {v:.1f}' for k, v in r['images_per_s'].items()))
  t = r['targets']
  print(f'policy (CNN + LSTM): {r["policy_share_of_sparse_time"]:.1%} of AR-Net sparse time '
        f'(target <= {t["policy_share_max"]:.0%}: {"met" if t["policy_share_met"] else "MISSED"})')
  print(f'sparse speedup {r["arnet_sparse"]["speedup_vs_uniform"]:.2f}x over Uniform on the same '
        f'engine ({r["arnet_sparse"]["speedup_vs_best_uniform"]:.2f}x over the faster Uniform); '
        f'target >= {t["sparse_speedup_min"]:.2f}x: '
        f'{"met" if t["sparse_speedup_met"] else "MISSED"}')
  print_router(r['router'])
  print(f'max |sparse - masked| video logits: {r["max_abs_logit_diff_sparse_vs_masked_jit"]:.1e}')


def print_router(stats: dict) -> None:
  print(f'sparse router: {stats["batches"]} batches, padding waste {stats["padding_waste"]:.1%}; '
        + '; '.join(f'{k}: {v["routed"]} frames + {v["padded"]} padded, buckets {v["capacities"]}'
                    for k, v in stats['per_backbone'].items()))


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(prog='python -m arnet_jax.bench.inference', description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--batch_size', type=int, default=2, help='videos per batch')
  p.add_argument('--usage', type=lambda s: [float(x) for x in s.split(',')],
                 default=list(PAPER_USAGE),
                 help='shares of frames per resolution action, then skipped (default: paper)')
  p.add_argument('--policy', action='store_true',
                 help="use the (random) policy's own decisions instead of --usage")
  p.add_argument('--dtype', choices=('float32', 'bfloat16'), default='float32')
  p.add_argument('--capacities', choices=routing.CAPACITY_POLICIES, default='binary',
                 help='bucket sizes (all modes); see SparseRouter')
  p.add_argument('--chunk_size', type=int, default=None,
                 help='largest bucket; more frames overflow into further buckets (all modes)')
  p.add_argument('--policy_chunk', type=int, default=None,
                 help='frames per policy CNN call, 0 = all frames of the batch at once (default: '
                      f'{CPU_POLICY_CHUNK} on a CPU, where chunks that fit the cache run faster; '
                      'all frames on accelerators)')
  p.add_argument('--repeats', type=int, default=3)
  p.add_argument('--warmup', type=int, default=1)
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--config', default=None, help='a config file with get_config() '
                 '(default: arnet_jax.defaults, the paper ResNet AR-Net on ActivityNet)')
  p.add_argument('--eval_videos', type=int, default=0,
                 help='instead of timing modes, route this many videos as an evaluation would')
  p.add_argument('--json', action='store_true', help='end with one JSON line')
  args = p.parse_args(argv)
  if args.policy_chunk is None:
    args.policy_chunk = CPU_POLICY_CHUNK if jax.default_backend() == 'cpu' else 0
  args.policy_chunk = args.policy_chunk or None
  if args.eval_videos:
    result = run_eval(args)
    print(f'evaluation routing: {result["eval_videos"]} videos in batches of '
          f'{result["batch_size"]}, decisions: {result["decisions"]}, capacities '
          f'{result["capacities"]}, chunk_size {result["chunk_size"]}: {result["seconds"]} s, '
          f'{result["router"]["compilations"]} compilations, '
          f'{result["gflops_per_frame"]} GFLOPs/frame')
    print_router(result['router'])
  else:
    result = run(args)
    print_report(result)
  if args.json:
    print(json.dumps(result))
  return 0


if __name__ == '__main__':
  sys.exit(main())
