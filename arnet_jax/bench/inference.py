"""Inference speed of AR-Net's routing against Uniform, tuned alike, in one run.

  python -m arnet_jax.bench.inference [--batch_size=4[,8,...]] [--dtype=float32[,bfloat16]]
      [--decisions=exact|drawn|policy] [--usage=0.43,0.10,0.10,0.07,0.30]
      [--dispatch=device,host] [--plan=auto|grid|binary] [--grid_steps=8]
      [--precision=default|high|highest] [--uniform_chunks=8,16,...] [--policy_chunk=N]
      [--scan_unroll=N]
      [--repeats=3] [--warmup=1] [--config=configs/x.py] [--json]
  python -m arnet_jax.bench.inference --eval_videos=400 --batch_size=8  # an evaluation's routing
  python -m arnet_jax.bench.inference --method=adafocus_v2  # AdaFocusV2 (bench.inference_adafocus)
  python -m arnet_jax.bench.inference --method=adafocus_v1  # AdaFocus V1/+ (inference_adafocus_v1)
  python -m arnet_jax.bench.inference --method=exit  # conditional exit (bench.inference_exit)

The paper's ResNet AR-Net (`arnet_jax.defaults`: ResNet-50/34/18 at 224/168/112, the MobileNetV2
policy at 84, 200 classes, T = 16) with random weights. Decisions (`--decisions`): 'exact', the
paper's ActivityNet usage split exactly over the batch's frames (43% ResNet-50, 10% ResNet-34,
10% ResNet-18, 7% the policy head, 30% skipped; or `--usage`); 'drawn', each frame draws its action
from those shares, a new draw for every call (counts vary as in an evaluation); 'policy', the
(random) policy's own. Skipped frames are real skip decisions: each run of skipped frames is
covered by the longest skips that fit (5 frames -> skip4 + skip1).

Modes, each timed on the same videos, every repeat in a shuffled order, median reported:
  arnet_<dispatch>    sparse routing: `DeviceRouter` (one program per batch) or `SparseRouter`
                      (host-planned buckets), with the same `--plan` / `--policy_chunk`
  uniform_<dispatch>  Uniform-R50@224 through the same router
  uniform_jit/<c>     Uniform as plain `jit`: ResNet-50 over the batch's frames, c frames per call
                      inside one program (`--uniform_chunks`, swept; c = N is `model.apply`)
  multiscale_device   every frame through every backbone and the policy head
  arnet_masked_jit    masked compute, `jit(model.apply)`: every backbone on every frame
The speedup is reported against the best Uniform. `sum_of_parts` is what AR-Net's pieces cost
alone: the policy (CNN + LSTM, `router.decide`) plus each backbone on one batch of each bucket
size the plan used; a sparse time close to it means routing itself costs nothing. Per mode:
dispatches and device-to-host syncs per batch, programs compiled, padding, and the largest
|delta logit| against masked compute. GFLOPs follow the paper's convention (`arnet_jax.flops`):
`gflops_per_video` counts the decisions, `executed_gflops_per_video` what ran (masked compute runs
every backbone; sparse routing also runs its padded bucket slots). Timing waits for results with
`block_until_ready`, so any backend is measured the same way.

`--eval_videos=V` routes V videos in batches as an evaluation would (decisions drawn per batch,
or the policy's own) and reports, per dispatch, the time, the compilations and how many came
after the first batch.
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

from arnet_jax import compilation, defaults, flops, models, registry
from arnet_jax.models import buckets, kernels, routing

PAPER_USAGE = (0.43, 0.10, 0.10, 0.07, 0.30)  # ActivityNet AR-Net (paper Fig. 4): 2.09 GFLOPs/f
PAPER_GFLOPS_PER_FRAME = 2.09
TARGET_FRACTION_OF_GFLOPS_RATIO = 0.85  # sparse speedup >= 0.85 x Uniform/AR-Net GFLOPs
DECISIONS = ('exact', 'drawn', 'policy')
PRECISIONS = ('default', 'high', 'highest')
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
  """The AR-Net, Uniform and Multi-Scale models of one dtype sharing one set of random weights."""

  def __init__(self, config_path: str | None, seed: int, scan_unroll: int | None = None):
    config = load_config(config_path)
    kernels.select(config.model.kernels, scan_unroll=scan_unroll)
    self.base, self.t = config.model, config.data.num_frames
    self.size = max(*self.base.resolutions, self.base.policy_resolution)
    arnet = models.create_model(self.base)
    self.space = arnet.action_space
    start = time.perf_counter()
    self.variables = jax.block_until_ready(jax.jit(arnet.init)(
        {'params': jax.random.key(seed)}, jnp.zeros((1, self.t, self.size, self.size, 3))))
    self.init_seconds = time.perf_counter() - start
    self.uniform_variables = routing.module_variables(self.variables, 'backbone_0')

  def models(self, dtype: str) -> dict:
    """{'arnet', 'uniform', 'multiscale': ARNet} computing in `dtype`."""
    mc = self.base.copy_and_resolve_references()
    mc.dtype = dtype
    return {name: models.create_model(mc if name == 'arnet' else registry.with_variant(mc, name))
            for name in ('arnet', 'uniform', 'multiscale')}

  def video(self, batch: int, seed: int) -> jax.Array:
    return jax.random.normal(jax.random.key(seed), (batch, self.t, self.size, self.size, 3))


def time_calls(modes: dict, calls: int, warmup: int, repeats: int, seed: int):
  """Median seconds of each `modes[name](i)` over `repeats` rounds, call i = round % calls.

  Warm-up runs every mode on every call index first (so every program is compiled before
  timing); each round runs the modes in a shuffled order, so load from other processes spreads
  over all of them. Returns (times per mode, warm-up seconds).
  """
  start = time.perf_counter()
  for _ in range(max(warmup, 1)):
    for i in range(calls):
      for fn in modes.values():
        jax.block_until_ready(fn(i))
  warmup_seconds = time.perf_counter() - start
  times = {name: [] for name in modes}
  order = list(modes)
  for r in range(repeats):
    random.Random(seed + r).shuffle(order)
    for name in order:
      start = time.perf_counter()
      jax.block_until_ready(modes[name](r % calls))
      times[name].append(time.perf_counter() - start)
  return times, warmup_seconds


def uniform_chunked(model, c: int):
  """Uniform as one plain jit: backbone 0 over the `[B, T]` frames, `c` frames per `lax.map`
  step; video logits = the frames' mean (what `model.apply` computes when c = N)."""
  r, classes = model.action_space.num_resolution_actions, model.num_classes

  def fn(variables, video):
    b, t = video.shape[:2]
    frames = video.reshape(b * t // c, c, 1, *video.shape[2:])
    logits = jax.lax.map(lambda x: model.apply(
        variables, 0, x, jnp.zeros((c, r, classes)), method=models.ARNet.classify), frames)
    return {'logits': logits.reshape(b, t, classes).mean(1)}
  return jax.jit(fn)


def router_for(model, dispatch: str, args, **kwargs):
  if dispatch == 'device':
    return routing.DeviceRouter(model, plan=args.plan, grid_steps=args.grid_steps,
                                policy_chunk=args.policy_chunk, **kwargs)
  return routing.SparseRouter(model, policy_chunk=args.policy_chunk, **kwargs)


def decision_patterns(args, space, b: int, t: int, calls: int) -> list:
  if args.decisions == 'policy':
    return [None]
  if args.decisions == 'exact':
    return [jnp.asarray(forced_actions(args.usage, space, b, t, args.seed))]
  return [jnp.asarray(forced_actions(args.usage, space, b, t, args.seed + i, exact_counts=False))
          for i in range(calls)]


def run_one(s: Setup, args, b: int, dtype: str) -> dict:
  """Every mode at `b` videos per batch in `dtype`; see the module docstring."""
  t, space, n = s.t, s.space, b * s.t
  net = s.models(dtype)
  video = s.video(b, args.seed)
  patterns = decision_patterns(args, space, b, t, args.repeats)
  routers = {f'arnet_{d}': router_for(net['arnet'], d, args) for d in args.dispatch}
  routers.update({f'uniform_{d}': router_for(net['uniform'], d, args) for d in args.dispatch})
  routers['multiscale_device'] = router_for(net['multiscale'], 'device', args)
  variables = {name: s.uniform_variables if name.startswith('uniform') else s.variables
               for name in routers}
  def call(router, name):
    forced = name.startswith('arnet')
    return lambda i: router(variables[name], video,
                            forced=patterns[i % len(patterns)] if forced else None)
  modes = {name: call(router, name) for name, router in routers.items()}
  chunks = sorted({c for c in args.uniform_chunks if c <= n and n % c == 0} | {n})
  for c in chunks:
    fn = uniform_chunked(net['uniform'], c)
    modes[f'uniform_jit/{c}'] = lambda i, fn=fn: fn(s.uniform_variables, video)
  masked = jax.jit(lambda v, x, forced: net['arnet'].apply(v, x, forced=forced))
  modes['arnet_masked_jit'] = lambda i: masked(s.variables, video, patterns[i % len(patterns)])
  times, warmup_seconds = time_calls(modes, len(patterns), args.warmup, args.repeats, args.seed)
  seconds = {name: statistics.median(ts) for name, ts in times.items()}

  # Per batch: what each router dispatched and synced, its buckets; logits against masked.
  reference = masked(s.variables, video, patterns[0])
  table = flops.cost_table(s.base)
  k, r = len(space.backbones), space.num_resolution_actions
  uniform_gflops = t * flops.cost_table(registry.with_variant(s.base, 'uniform')).action_gflops[0]
  result = dict(batch_size=b, num_frames=t, dtype=dtype, decisions=args.decisions,
                warmup_seconds=round(warmup_seconds, 1))
  gflops = {}
  for name, router in routers.items():
    router.stats.reset()
    out = router(variables[name], video,
                 forced=patterns[0] if name.startswith('arnet') else None)
    stats = router.stats.as_dict()
    entry = dict(seconds_per_batch=round(seconds[name], 4),
                 videos_per_s=round(b / seconds[name], 2),
                 execution=f'{type(router).__name__}(capacities={router.capacities!r})',
                 compilations=stats['compilations'],
                 dispatches_per_batch=stats['dispatches_per_batch'],
                 syncs_per_batch=stats['syncs_per_batch'], padding_waste=stats['padding_waste'],
                 buckets={kk: v['capacities'] for kk, v in stats['per_backbone'].items()})
    if name.startswith('arnet'):
      slots = [v['routed'] + v['padded'] for v in stats['per_backbone'].values()]
      actions = np.asarray(out['actions'])
      gflops[name] = float(flops.decision_gflops(actions, table)['per_video'].mean())
      entry.update(
          gflops_per_video=round(gflops[name], 4),
          executed_gflops_per_video=round(
              float(np.dot(slots, table.action_gflops[:k])) / b
              + t * (sum(table.action_gflops[k:r]) + table.policy_gflops), 4),
          max_abs_logit_diff_vs_masked=float(jnp.abs(out['logits'] - reference['logits']).max()))
      parts, policy = sum_of_parts(s, net['arnet'], router, video, patterns[0], stats, args)
      entry.update(sum_of_parts_s=round(parts, 4), policy_s=round(policy, 4))
    result[name] = entry
  for name in [m for m in modes if m.startswith('uniform_jit') or m == 'arnet_masked_jit']:
    result[name] = dict(seconds_per_batch=round(seconds[name], 4),
                        videos_per_s=round(b / seconds[name], 2), execution='jit')
  uniforms = {m: seconds[m] for m in seconds if m.startswith('uniform')}
  best = min(uniforms, key=uniforms.get)
  result.update(best_uniform=best, gflops_ratio_uniform_over_arnet=round(
      uniform_gflops / gflops[f'arnet_{args.dispatch[0]}'], 3))
  for d in args.dispatch:
    entry = result[f'arnet_{d}']
    entry['speedup_vs_best_uniform'] = round(uniforms[best] / seconds[f'arnet_{d}'], 3)
    entry['time_over_sum_of_parts'] = round(seconds[f'arnet_{d}'] / entry['sum_of_parts_s'], 3)
  if len(args.dispatch) == 2:
    result['host_over_device_time'] = round(seconds['arnet_host'] / seconds['arnet_device'], 3)
  target = TARGET_FRACTION_OF_GFLOPS_RATIO * result['gflops_ratio_uniform_over_arnet']
  result['target_speedup'] = round(target, 3)
  first = f'arnet_{args.dispatch[0]}'
  result['policy_share_of_sparse_time'] = round(result[first]['policy_s'] / seconds[first], 4)
  result['times_s'] = {name: [round(x, 4) for x in ts] for name, ts in times.items()}
  return result


def sum_of_parts(s: Setup, model, router, video, forced, stats: dict,
                 args) -> tuple[float, float]:
  """(Seconds of the policy alone plus each backbone alone on each bucket size it used, the
  policy's seconds)."""
  repeats = max(args.repeats, 3)

  def median_time(fn):
    jax.block_until_ready(fn())
    ts = []
    for _ in range(repeats):
      start = time.perf_counter()
      jax.block_until_ready(fn())
      ts.append(time.perf_counter() - start)
    return statistics.median(ts)
  total = policy = median_time(lambda: router.decide(s.variables, video, forced=forced))
  space = model.action_space
  for k, per in enumerate(stats['per_backbone'].values()):
    res = space.resolutions[k]
    sub = routing.module_variables(s.variables, f'backbone_{k}')
    for size in per['capacities']:
      frames = jax.random.normal(jax.random.key(k), (size, 1, res, res, 3), video.dtype)
      fn = jax.jit(lambda v, x, k=k, size=size: model.apply(
          v, k, x, jnp.zeros((size, space.num_resolution_actions, model.num_classes)),
          method=models.ARNet.classify))
      total += median_time(lambda fn=fn, sub=sub, frames=frames: fn(sub, frames))
  return total, policy


def run(args) -> dict:
  s = Setup(args.config, args.seed, args.scan_unroll)
  with jax.default_matmul_precision(args.precision):
    runs = []
    for b in args.batch_size:
      for dtype in args.dtype:
        runs.append(run_one(s, args, b, dtype))
  return dict(device_kind=jax.devices()[0].device_kind, backend=jax.default_backend(),
              jax_version=jax.__version__, precision=args.precision, plan=args.plan,
              grid_steps=args.grid_steps, policy_chunk=args.policy_chunk,
              kernels=kernels.active().name, scan_unroll=kernels.active().scan_unroll,
              repeats=args.repeats, init_seconds=round(s.init_seconds, 1), runs=runs)


def run_eval(args) -> dict:
  """Routes `args.eval_videos` videos in batches per dispatch, as an evaluation would."""
  s = Setup(args.config, args.seed, args.scan_unroll)
  b = args.batch_size[0]
  model = s.models(args.dtype[0])['arnet']
  batches = -(-args.eval_videos // b)
  result = dict(eval_videos=batches * b, batch_size=b, decisions=args.decisions,
                device_kind=jax.devices()[0].device_kind)
  for dispatch in args.dispatch:
    router = router_for(model, dispatch, args)
    counter = compilation.CompileCounter()
    start = time.perf_counter()
    outs = []
    for i in range(batches):
      forced = None if args.decisions == 'policy' else jnp.asarray(forced_actions(
          args.usage, s.space, b, s.t, seed=args.seed + i, exact_counts=args.decisions == 'exact'))
      outs.append(router(s.variables, s.video(b, args.seed + i), forced=forced)['logits'])
      if i == 0:
        jax.block_until_ready(outs[0])
        counter.mark()
    jax.block_until_ready(outs)
    result[dispatch] = dict(seconds=round(time.perf_counter() - start, 1),
                            compilations_after_first_batch=counter.since_mark(),
                            router=router.stats.as_dict())
  return result


def print_report(r: dict) -> None:
  print(f'AR-Net inference on {r["device_kind"]} (JAX {r["jax_version"]}), precision '
        f'{r["precision"]}, device plan {r["plan"]}, median of {r["repeats"]}')
  for run_ in r['runs']:
    print(f'\n{run_["batch_size"]} videos x T={run_["num_frames"]}, {run_["dtype"]}, decisions '
          f'{run_["decisions"]}; Uniform/AR-Net GFLOPs '
          f'{run_["gflops_ratio_uniform_over_arnet"]:.2f}x'
          f' (target speedup {run_["target_speedup"]:.2f}x), best Uniform: {run_["best_uniform"]}')
    print(f'{"mode":<20}{"s/batch":>9}{"videos/s":>10}{"speedup":>9}{"parts":>8}'
          f'{"disp":>6}{"syncs":>6}{"progs":>6}{"pad":>6}')
    best = run_[run_['best_uniform']]['seconds_per_batch']
    for name, m in run_.items():
      if not isinstance(m, dict) or 'seconds_per_batch' not in m:
        continue
      parts = f'{m["time_over_sum_of_parts"]:7.2f}x' if 'sum_of_parts_s' in m else ' ' * 8
      routed = (f'{m["dispatches_per_batch"]:6.0f}{m["syncs_per_batch"]:6.0f}'
                f'{m["compilations"]:6d}{m["padding_waste"]:6.1%}' if 'compilations' in m else '')
      print(f'{name:<20}{m["seconds_per_batch"]:9.4f}{m["videos_per_s"]:10.2f}'
            f'{best / m["seconds_per_batch"]:8.2f}x{parts}{routed}')
    print(f'policy share of sparse time {run_["policy_share_of_sparse_time"]:.1%}; max |delta '
          'logit| vs masked: ' + ', '.join(
              f'{name} {run_[name]["max_abs_logit_diff_vs_masked"]:.1e}'
              for name in run_ if name.startswith('arnet_') and name != 'arnet_masked_jit'))


def comma_list(kind):
  return lambda text: [kind(x) for x in text.split(',') if x]


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(prog='python -m arnet_jax.bench.inference', description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--batch_size', type=comma_list(int), default=[4],
                 help='videos per batch, a comma list')
  p.add_argument('--dtype', type=comma_list(str), default=['float32'],
                 help='float32 and/or bfloat16, a comma list')
  p.add_argument('--decisions', choices=DECISIONS, default='exact')
  p.add_argument('--usage', type=comma_list(float), default=list(PAPER_USAGE),
                 help='shares of frames per resolution action, then skipped (default: paper)')
  p.add_argument('--dispatch', type=comma_list(str), default=['device', 'host'],
                 help='device and/or host, a comma list (the first is the headline)')
  p.add_argument('--plan', choices=('auto', *buckets.DEVICE_PLANS), default='auto',
                 help='device bucket plan (auto: binary on a CPU, grid elsewhere)')
  p.add_argument('--grid_steps', type=int, default=8)
  p.add_argument('--precision', choices=PRECISIONS, default='default',
                 help='matmul and convolution precision (jax.default_matmul_precision)')
  p.add_argument('--uniform_chunks', type=comma_list(int), default=[4, 8, 16, 32, 64],
                 help='frames per call swept for the plain-jit Uniform (N is always included)')
  p.add_argument('--policy_chunk', type=int, default=None,
                 help='frames per policy CNN call, 0 = all frames of the batch at once (default: '
                      f'{CPU_POLICY_CHUNK} on a CPU, all frames on accelerators)')
  p.add_argument('--scan_unroll', type=int, default=None,
                 help="policy LSTM steps per scan iteration (default: the kernel set's)")
  p.add_argument('--repeats', type=int, default=3)
  p.add_argument('--warmup', type=int, default=1)
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--config', default=None, help='a config file with get_config() '
                 '(default: arnet_jax.defaults, the paper ResNet AR-Net on ActivityNet)')
  p.add_argument('--eval_videos', type=int, default=0,
                 help='instead of timing modes, route this many videos as an evaluation would')
  p.add_argument('--json', action='store_true', help='end with one JSON line')
  p.add_argument('--method', choices=('arnet', 'adafocus_v2', 'adafocus_v1', 'exit'),
                 default='arnet',
                 help='adafocus_v2: AdaFocusV2 against Uniform ResNet-50 '
                      '(bench.inference_adafocus); adafocus_v1: AdaFocus V1 and AdaFocus+ '
                      'against Uniform ResNet-50 (bench.inference_adafocus_v1); exit: the '
                      '--config method with conditional exit against it without '
                      '(bench.inference_exit)')
  p.add_argument('--frames_per_call', type=comma_list(int), default=[8, 16, 32, 0],
                 help='adafocus_v2: frames (patches) per CNN call swept, for AdaFocusV2 and '
                      'Uniform alike (model.frames_per_call; 0 = all at once)')
  p.add_argument('--skip_fractions', type=comma_list(float), default=[1.0, 0.5, 0.25],
                 help='adafocus_v1: fractions of the frames AdaFocus+ is forced to process '
                      '(evenly spaced from step 0), a comma list')
  p.add_argument('--exit_q', type=comma_list(float), default=[0.5, 1.0, 2.0],
                 help='exit: values of q of the exit rule (p_k ~ q^k), a comma list')
  p.add_argument('--exit_plan', type=comma_list(str), default=['auto'],
                 help='exit: bucket plans of the running videos, a comma list of binary, grid, '
                      'auto (binary on a CPU, grid elsewhere)')
  p.add_argument('--exit_fit_videos', type=int, default=64,
                 help='exit: random videos the thresholds are fit on')
  p.add_argument('--exit_group', type=int, default=1,
                 help='exit: frames read between two exit checks (config.exit.group_frames)')
  args = p.parse_args(argv)
  if args.method in ('adafocus_v2', 'adafocus_v1', 'exit'):
    if args.method == 'adafocus_v1':
      bad = [f for f in args.skip_fractions if not 0 < f <= 1]
      if bad or not args.skip_fractions:
        p.error(f'--skip_fractions takes fractions in (0, 1], got {args.skip_fractions}')
    import importlib  # pylint: disable=g-import-not-at-top
    other = importlib.import_module('arnet_jax.bench.inference_' + {
        'adafocus_v2': 'adafocus', 'adafocus_v1': 'adafocus_v1', 'exit': 'exit'}[args.method])
    result = other.run(args)
    other.print_report(result)
    if args.json:
      print(json.dumps(result))
    return 0
  for d in args.dispatch:
    if d not in routing.DISPATCHES:
      p.error(f'--dispatch takes {routing.DISPATCHES}, got {d!r}')
  for d in args.dtype:
    if d not in ('float32', 'bfloat16'):
      p.error(f'--dtype takes float32 and bfloat16, got {d!r}')
  args.plan = routing.resolve_plan(args.plan)
  if args.policy_chunk is None:
    args.policy_chunk = CPU_POLICY_CHUNK if jax.default_backend() == 'cpu' else 0
  args.policy_chunk = args.policy_chunk or None
  if args.eval_videos:
    if args.decisions == 'exact':
      args.decisions = 'drawn'  # an evaluation's counts vary from batch to batch
    result = run_eval(args)
    for d in args.dispatch:
      m = result[d]
      print(f'{d} dispatch: {result["eval_videos"]} videos in batches of {result["batch_size"]} '
            f'({result["decisions"]} decisions): {m["seconds"]} s, '
            f'{m["router"]["compilations"]} programs, {m["compilations_after_first_batch"]} '
            f'compilations after the first batch, padding {m["router"]["padding_waste"]:.1%}')
  else:
    result = run(args)
    print_report(result)
  if args.json:
    print(json.dumps(result))
  return 0


if __name__ == '__main__':
  sys.exit(main())
