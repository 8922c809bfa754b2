#!/usr/bin/env bash
# AdaFocusV2's demo figures (README, docs/adafocus_v2.md): configs/adafocus_v2_demo.py for seeds
# 0, 1, 2 and their mean.
#   launch/adafocus_v2_demo_seeds.sh [WORKDIR (default workdir/adafocus_v2_demo_seeds)] [--config.x=y ...]
# Each seed runs in WORKDIR/seed<N> (resumable); the mean table goes to WORKDIR/mean.md.
set -euo pipefail
root=${1:-workdir/adafocus_v2_demo_seeds}
shift || true
for seed in 0 1 2; do
  python -m arnet_jax.main --config=configs/adafocus_v2_demo.py --config.seed="$seed" \
      --workdir="$root/seed$seed" "$@"
done
python - "$root" <<'PY' | tee "$root/mean.md"
import json, sys
from arnet_jax import registry
runs = [json.load(open(f'{sys.argv[1]}/seed{s}/results.json')) for s in (0, 1, 2)]
mean = lambda xs: sum(xs) / len(xs)
names = [name for name, _, _ in registry.get('adafocus_v2').recipe_rows]
print('| run (mean of 3 seeds) | mAP | GFLOPs/video | % of Uniform | glyph in patch: '
      'learned / random / centre |')
print('|---|---:|---:|---:|---:|')
uniform = mean([r['rows'][names[0]]['gflops_per_video'] for r in runs])
for name in names:
  rows = [r['rows'][name] for r in runs]
  gflops = mean([r['gflops_per_video'] for r in rows])
  focus = ' / '.join(f'{100 * mean([r[k] for r in rows]):.0f}%' for k in (
      'glyph_in_patch', 'glyph_in_random_patch', 'glyph_in_centre_patch'))
  print(f'| {name} | {mean([r["mAP"] for r in rows]):.1f} | {gflops:.4f} | '
        f'{100 * gflops / uniform:.0f}% | {focus} |')
print('\nPer seed (0, 1, 2), mAP: ' + '; '.join(
    f'{name} ' + ' / '.join(f'{r["rows"][name]["mAP"]:.1f}' for r in runs) for name in names))
minutes = [r['seconds']['total'] / 60 for r in runs]
print(f'\nMinutes per run: {", ".join(f"{m:.1f}" for m in minutes)}')
PY
