"""Wall-clock saving of conditional exit against the same method without exit.

  python -m arnet_jax.bench.inference --method=exit [--config=configs/adafocus_v2.py]
      [--batch_size=8] [--exit_q=0.5,1,2] [--exit_group=1] [--exit_plan=auto[,grid,...]]
      [--exit_fit_videos=64] [--frames_per_call=8,16,32,0] [--repeats=3] [--json]

A config's method (default: the paper's ResNet AR-Net, `arnet_jax.defaults`; any method with an
exit, e.g. configs/adafocus_v2.py) with random weights on random videos. Random weights make no
confident predictions, so the thresholds are fit on other random videos
(`--exit_fit_videos`, the full forward's running predictions, `early_exit.fit_thresholds`) for
each q of `--exit_q`: the timed videos then exit in about the proportions p_k ~ q^k of the
rule, as a trained model's do. Modes, timed on the same videos, every repeat in a shuffled
order, median:
  no_exit          the method's evaluation forward (its registry inference: AR-Net's sparse
                   device routing, AdaFocusV2's masked forward);
  no_exit/<c>      AdaFocusV2's, its CNNs on c frames per call (`--frames_per_call`, as
                   `--method=adafocus_v2` tunes it);
  <plan>/inf       the exit program with thresholds no video reaches before the last step;
  <plan>/q=<q>     the exit program at the thresholds of q,
for each bucket plan of the running videos (`--exit_plan`: 'binary', a CPU's, 'grid', a GPU's
or TPU's; `config.exit.plan`).
Per q: GFLOPs per video counted from the steps each video ran (`early_exit.cost_at_points`),
the GFLOPs saved and the time saved against the fastest no-exit mode, and their
ratio (the issue's target: time saved >= 0.7 x GFLOPs saved), for the plan and q.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from arnet_jax import defaults, early_exit, flops, models, registry
from arnet_jax.bench import inference as bench
from arnet_jax.models import exits, kernels, routing

TARGET_TIME_OVER_GFLOPS_SAVED = 0.7


def _config(args):
  config = bench.load_config(args.config)
  with config.unlocked():
    config.exit.group_frames = args.exit_group
  return config


def run_one(config, args, b: int) -> dict:
  method = registry.of(config)
  if method.exit is None:
    raise SystemExit(f'model.variant={config.model.variant} has no conditional exit.')
  model = models.create_model(config.model)
  t = config.data.num_frames
  side = method.input_resolution(config.model)
  video = jax.random.normal(jax.random.key(args.seed), (b, t, side, side, 3))
  variables = jax.block_until_ready(jax.jit(model.init)(
      {'params': jax.random.key(args.seed), 'gumbel': jax.random.key(1)}, video[:1]))
  valid = jnp.ones((b,), bool)
  rng = jax.random.key(args.seed)
  plain = method.inference(model, config)
  programs = {}
  for plan in dict.fromkeys(routing.resolve_plan(p) for p in args.exit_plan):
    c = config.copy_and_resolve_references()
    c.exit.plan = plan
    programs[plan] = method.exit.inference(model, c)
  group = config.exit.group_frames
  k = exits.num_exit_points(t, group)
  table = flops.cost_table(config.model)

  def confidence_and_cost(v):  # the full forward's confidences and costs at the exit points
    full = plain(variables, v, rng=rng, valid=valid)
    running, ready = (np.asarray(x) for x in method.exit.running(full, config.model))
    conf = exits.confidence(early_exit.at_points(running, group), config.exit.confidence,
                            early_exit.at_points(ready, group))
    return np.asarray(conf), early_exit.cost_at_points(np.asarray(full['actions']), table, group)
  confidence, cost = confidence_and_cost(video)
  # The thresholds: fit on other random videos, enough of them that floor(N p_k) > 0.
  fit = [confidence_and_cost(jax.random.normal(jax.random.key(args.seed + 1 + i), video.shape))
         for i in range(-(-args.exit_fit_videos // b))]
  fit_confidence = np.concatenate([c for c, _ in fit])
  no_exit = exits.no_exit_thresholds(k)
  modes = {'no_exit': lambda i: plain(variables, video, rng=rng, valid=valid)}
  if hasattr(model, 'frames_per_call'):  # the no-exit forward, tuned as in bench.inference
    for c in sorted({c for c in args.frames_per_call if 0 < c < b * t}):
      tuned = config.copy_and_resolve_references()
      tuned.eval.frames_per_call = c
      fn = method.inference(model, tuned)
      modes[f'no_exit/{c}'] = lambda i, fn=fn: fn(variables, video, rng=rng, valid=valid)
  per_q = {}
  for q in args.exit_q:
    thresholds = early_exit.fit_thresholds(fit_confidence, q)
    points = early_exit.exit_points(confidence, thresholds)  # the timed videos' exits
    per_q[q] = dict(thresholds=jnp.asarray(thresholds, jnp.float32),
                    gflops_per_video=float(np.take_along_axis(cost, points[:, None], 1).mean()),
                    mean_exit_step=float(early_exit.point_steps(t, group)[points].mean()))
  for plan, program in programs.items():
    modes[f'{plan}/inf'] = lambda i, p=program: p(variables, video, no_exit, rng=rng,
                                                  valid=valid)
    for q, entry in per_q.items():
      modes[f'{plan}/q={q:g}'] = lambda i, p=program, th=entry['thresholds']: p(
          variables, video, th, rng=rng, valid=valid)
  times, warmup_s = bench.time_calls(modes, 1, args.warmup, args.repeats, args.seed)
  seconds = {name: float(np.median(ts)) for name, ts in times.items()}
  base = min(s for name, s in seconds.items()
             if name.startswith('no_exit') or name.endswith('/inf'))
  full_gflops = float(cost[:, -1].mean())
  result = dict(batch_size=b, num_frames=t, group_frames=group, warmup_s=round(warmup_s, 1),
                gflops_per_video_no_exit=round(full_gflops, 5), no_exit_seconds=round(base, 4),
                seconds_per_batch={n: round(s, 4) for n, s in seconds.items()})
  for plan, program in programs.items():
    for q, entry in per_q.items():
      out = program(variables, video, entry['thresholds'], rng=rng, valid=valid)
      gflops_saved = 1 - entry['gflops_per_video'] / full_gflops
      time_saved = 1 - seconds[f'{plan}/q={q:g}'] / base
      result[f'{plan}/q={q:g}'] = dict(
          gflops_per_video=round(entry['gflops_per_video'], 5),
          mean_exit_step=entry['mean_exit_step'],
          measured_mean_exit_step=float(np.asarray(out['exit_step']).mean()),
          gflops_saved=round(gflops_saved, 3), time_saved=round(time_saved, 3),
          time_over_gflops_saved=(round(time_saved / gflops_saved, 3) if gflops_saved > 0
                                  else None),
          rows={name: int(v) for name, v in out['rows'].items()})
  return result


def run(args) -> dict:
  config = _config(args)
  kernels.select(config.model.kernels)
  defaults.validate(config)
  runs = [run_one(config, args, b) for b in args.batch_size]
  return dict(method='exit', variant=config.model.variant,
              config=args.config or 'arnet_jax.defaults',
              device_kind=jax.devices()[0].device_kind, backend=jax.default_backend(),
              jax_version=jax.__version__, kernels=kernels.active().name, repeats=args.repeats,
              target_time_over_gflops_saved=TARGET_TIME_OVER_GFLOPS_SAVED, runs=runs)


def print_report(r: dict) -> None:
  print(f'Conditional exit of {r["variant"]} ({r["config"]}) on {r["device_kind"]} '
        f'(JAX {r["jax_version"]}), kernels {r["kernels"]}, median of {r["repeats"]}')
  for run_ in r['runs']:
    s = run_['seconds_per_batch']
    print(f'\n{run_["batch_size"]} videos x T={run_["num_frames"]}, exit checks every '
          f'{run_["group_frames"]} frame(s); no exit: {run_["gflops_per_video_no_exit"]} '
          f'GFLOPs/video, ' + ', '.join(f'{n} {v:.4f}' for n, v in s.items()
                                         if n.startswith('no_exit') or n.endswith('/inf'))
          + f' s/batch (the best, {run_["no_exit_seconds"]:.4f}, is the baseline)')
    print(f'{"mode":<16}{"s/batch":>9}{"exit step":>10}{"GFLOPs/V":>10}{"GFLOPs saved":>13}'
          f'{"time saved":>11}{"ratio":>7}')
    for name, m in run_.items():
      if '/q=' in name:
        ratio = m['time_over_gflops_saved']
        print(f'{name:<16}{s[name]:9.4f}{m["measured_mean_exit_step"]:10.2f}'
              f'{m["gflops_per_video"]:10.4g}{100 * m["gflops_saved"]:12.0f}%'
              f'{100 * m["time_saved"]:10.0f}%{"" if ratio is None else f"{ratio:7.2f}"}')
