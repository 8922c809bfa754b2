"""Kernel sets compared: each backbone op under the 'cpu' and the 'xla' set on this backend.

  python -m arnet_jax.bench.kernels [--batch=64] [--repeats=5] [--warmup=1] [--ops=a,b] [--json]

Ops, float32 NHWC at ImageNet-scale layer sizes (N = --batch); 'train' is the forward plus the
input and kernel gradients of a random cotangent (what a training step runs), 'forward' the
output only:
  depthwise_s1  MobileNetV2's 3x3 depthwise convolution, `[N, 56, 56, 144]`, stride 1
  depthwise_s2  the same, stride 2 (`-> [N, 28, 28, 144]`)
  conv3x3       ResNet's 3x3 convolution, `[N, 56, 56, 64] -> [N, 56, 56, 64]`
  conv1x1       a ResNet-50 bottleneck's 1x1 reduction, `[N, 56, 56, 256] -> [N, 56, 56, 64]`
  expand1x1     a MobileNetV2 block's 1x1 expansion, `[N, 56, 56, 24] -> [N, 56, 56, 144]`
                (forward only)
  max_pool      ResNet's stem max pool 3x3 / 2, padding 1, `[N, 112, 112, 64]`
Each op is jitted once per set and warmed up; every repeat then runs every (op, set) once,
interleaved so that load from other processes spreads over both sets, waiting with
`jax.block_until_ready`. The table gives median milliseconds and `xla / cpu` (above 1: the 'cpu'
set is faster), with the backend's device kind, the JAX version and the date. `kernels.select`'s
'auto' should pick the faster set: 'cpu' on the CPU backend, 'xla' elsewhere.
"""
from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from typing import Callable

import jax
import jax.numpy as jnp

from arnet_jax.models import kernels

SETS = ('cpu', 'xla')


def _train(f: Callable[..., jax.Array]) -> Callable[..., tuple]:
  """`f`'s output and the gradients of `<f(*args), g>` for the cotangent `g` (last argument)."""
  def step(*args):
    *inputs, g = args
    out, vjp = jax.vjp(f, *inputs)
    return out, vjp(g)
  return step


def ops(batch: int) -> dict[str, tuple[Callable[[kernels.KernelSet], Callable], list[tuple]]]:
  """Name -> (kernel set -> function to jit, argument shapes)."""
  dw_in, dw_k = (batch, 56, 56, 144), (3, 3, 1, 144)
  torch_pad = ((1, 1), (1, 1))
  dw = lambda stride: lambda ks: lambda x, w: ks.depthwise_conv(x, w, stride, torch_pad)
  conv = lambda pad: lambda ks: lambda x, w: ks.conv(x, w, (1, 1), pad)
  pool = lambda ks: lambda x: ks.max_pool(x, 3, 2, 1)
  return {
      'depthwise_s1_forward': (dw(1), [dw_in, dw_k]),
      'depthwise_s1_train': (lambda ks: _train(dw(1)(ks)), [dw_in, dw_k, dw_in]),
      'depthwise_s2_forward': (dw(2), [dw_in, dw_k]),
      'depthwise_s2_train': (lambda ks: _train(dw(2)(ks)), [dw_in, dw_k, (batch, 28, 28, 144)]),
      'conv3x3_train': (lambda ks: _train(conv(torch_pad)(ks)),
                        [(batch, 56, 56, 64), (3, 3, 64, 64), (batch, 56, 56, 64)]),
      'conv1x1_forward': (conv(((0, 0), (0, 0))), [(batch, 56, 56, 256), (1, 1, 256, 64)]),
      'expand1x1_forward': (conv(((0, 0), (0, 0))), [(batch, 56, 56, 24), (1, 1, 24, 144)]),
      'conv1x1_train': (lambda ks: _train(conv(((0, 0), (0, 0)))(ks)),
                        [(batch, 56, 56, 256), (1, 1, 256, 64), (batch, 56, 56, 64)]),
      'max_pool_train': (lambda ks: _train(pool(ks)),
                         [(batch, 112, 112, 64), (batch, 56, 56, 64)]),
  }


def run(batch: int, repeats: int, warmup: int, names: list[str] | None = None) -> dict:
  """Median seconds per (op, set) and the environment, as a JSON-ready dict."""
  table = ops(batch)
  names = names or list(table)
  compiled, args = {}, {}
  for name in names:
    make, shapes = table[name]
    keys = jax.random.split(jax.random.key(0), len(shapes))
    args[name] = [jax.random.normal(k, s, jnp.float32) for k, s in zip(keys, shapes)]
    for set_name in SETS:
      fn = jax.jit(make(kernels.get(set_name)))
      for _ in range(max(1, warmup)):  # the first call compiles
        jax.block_until_ready(fn(*args[name]))
      compiled[name, set_name] = fn
  times = {key: [] for key in compiled}
  for _ in range(repeats):
    for key, fn in compiled.items():
      start = time.perf_counter()
      jax.block_until_ready(fn(*args[key[0]]))
      times[key].append(time.perf_counter() - start)
  rows = []
  for name in names:
    cpu, xla = (statistics.median(times[name, s]) for s in SETS)
    rows.append(dict(op=name, cpu_ms=1e3 * cpu, xla_ms=1e3 * xla, xla_over_cpu=xla / cpu))
  return dict(backend=jax.default_backend(), device_kind=jax.devices()[0].device_kind,
              jax_version=jax.__version__, date=datetime.date.today().isoformat(),
              auto=kernels.get('auto').name, batch=batch, repeats=repeats, rows=rows)


def format_table(result: dict) -> str:
  lines = [f"{result['device_kind']} ({result['backend']}), JAX {result['jax_version']}, "
           f"{result['date']}; batch {result['batch']}, median of {result['repeats']}; "
           f"'auto' = '{result['auto']}'",
           '| op | cpu set (ms) | xla set (ms) | xla / cpu |', '|---|---:|---:|---:|']
  lines += [f"| {r['op']} | {r['cpu_ms']:.1f} | {r['xla_ms']:.1f} | {r['xla_over_cpu']:.2f} |"
            for r in result['rows']]
  return '\n'.join(lines)


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--batch', type=int, default=64)
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--warmup', type=int, default=1)
  parser.add_argument('--ops', default='', help='comma-separated op names (default: all)')
  parser.add_argument('--json', action='store_true', help='print JSON instead of a table')
  args = parser.parse_args(argv)
  names = [n.strip() for n in args.ops.split(',') if n.strip()] or None
  unknown = set(names or ()) - set(ops(1))
  if unknown:
    parser.error(f'unknown ops {sorted(unknown)}; choose from {list(ops(1))}')
  result = run(args.batch, args.repeats, args.warmup, names)
  print(json.dumps(result, indent=1) if args.json else format_table(result))


if __name__ == '__main__':
  main(sys.argv[1:])
