#!/usr/bin/env bash
# The demo's figures (README, docs/demo.md): the quick start's job for seeds 0, 1, 2, their mean.
#   launch/demo_seeds.sh [WORKDIR (default workdir/demo_seeds)] [--config.x=y ...]
# Each seed runs in WORKDIR/seed<N> (resumable); the mean table goes to WORKDIR/mean.md.
set -euo pipefail
root=${1:-workdir/demo_seeds}
shift || true
for seed in 0 1 2; do
  python -m arnet_jax.main --config=configs/demo.py --config.seed="$seed" \
      --workdir="$root/seed$seed" "$@"
done
python - "$root" <<'PY' | tee "$root/mean.md"
import json, sys
from arnet_jax import registry
runs = [json.load(open(f'{sys.argv[1]}/seed{s}/results.json')) for s in (0, 1, 2)]
mean = lambda xs: sum(xs) / len(xs)
print('| run (mean of 3 seeds) | mAP | GFLOPs/video | % of Uniform | top res.: evidence / other |')
print('|---|---:|---:|---:|---:|')
uniform = mean([r['rows']['Uniform']['gflops_per_video'] for r in runs])
for name, _, _ in registry.get('arnet').recipe_rows:
  rows = [r['rows'][name] for r in runs]
  gflops = mean([r['gflops_per_video'] for r in rows])
  print(f'| {name} | {mean([r["mAP"] for r in rows]):.1f} | {gflops:.4f} | '
        f'{100 * gflops / uniform:.0f}% | '
        f'{100 * mean([r["evidence_to_top_resolution"] for r in rows]):.0f}% / '
        f'{100 * mean([r["other_to_top_resolution"] for r in rows]):.0f}% |')
minutes = [r['seconds']['total'] / 60 for r in runs]
print(f'\nMinutes per run: {", ".join(f"{m:.1f}" for m in minutes)}')
PY
