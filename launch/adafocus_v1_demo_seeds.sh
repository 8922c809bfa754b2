#!/usr/bin/env bash
# AdaFocus V1 and AdaFocus+'s demo figures (README, docs/adafocus_v1.md): configs/adafocus_v1_demo.py
# for seeds 0, 1, 2 and their mean.
#   launch/adafocus_v1_demo_seeds.sh [WORKDIR (default workdir/adafocus_v1_demo_seeds)] [--config.x=y ...]
# Each seed runs in WORKDIR/seed<N> (resumable); the mean table goes to WORKDIR/mean.md.
set -euo pipefail
root=${1:-workdir/adafocus_v1_demo_seeds}
shift || true
for seed in 0 1 2; do
  python -m arnet_jax.main --config=configs/adafocus_v1_demo.py --config.seed="$seed" \
      --workdir="$root/seed$seed" "$@"
done
python - "$root" <<'PY' | tee "$root/mean.md"
import json, sys
from arnet_jax import registry
runs = [json.load(open(f'{sys.argv[1]}/seed{s}/results.json')) for s in (0, 1, 2)]
mean = lambda xs: sum(xs) / len(xs)
names = [name for name, _, _ in registry.get('adafocus_v1_plus').recipe_rows]
print('| run (mean of 3 seeds) | mAP | GFLOPs/video | % of Uniform | frames read | glyph in '
      'patch: learned / random |')
print('|---|---:|---:|---:|---:|---:|')
uniform = mean([r['rows'][names[0]]['gflops_per_video'] for r in runs])
for name in names:
  rows = [r['rows'][name] for r in runs]
  gflops = mean([r['gflops_per_video'] for r in rows])
  frames = f'{mean([r["frames_per_video"] for r in rows]):.1f}' if 'frames_per_video' in rows[0] else 'all'
  focus = ' / '.join(f'{100 * mean([r[k] for r in rows]):.0f}%' if k in rows[0] else '-'
                     for k in ('glyph_in_patch', 'glyph_in_random_patch'))
  print(f'| {name} | {mean([r["mAP"] for r in rows]):.1f} | {gflops:.4f} | '
        f'{100 * gflops / uniform:.0f}% | {frames} | {focus} |')
print('\nPer seed (0, 1, 2), mAP: ' + '; '.join(
    f'{name} ' + ' / '.join(f'{r["rows"][name]["mAP"]:.1f}' for r in runs) for name in names))
learned, random = names[2], names[1]
gaps = [r['rows'][learned]['mAP'] - r['rows'][random]['mAP'] for r in runs]
print(f'\nLearned minus random patches, the same stage-2 classifier: {mean(gaps):+.1f} mAP '
      f'(per seed {", ".join(f"{g:+.1f}" for g in gaps)})')
minutes = [r['seconds']['total'] / 60 for r in runs]
print(f'\nMinutes per run: {", ".join(f"{m:.1f}" for m in minutes)}')
PY
