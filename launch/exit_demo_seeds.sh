#!/usr/bin/env bash
# Conditional exit on the demo (README, docs/exit.md): config.mode=exit on the 3 seeds' AR-Net
# (launch/demo_seeds.sh) and AdaFocusV2 (launch/adafocus_v2_demo_seeds.sh) checkpoints, and the
# mean of each budget's row.
#   launch/exit_demo_seeds.sh [ARNET_SEEDS (workdir/demo_seeds)]
#       [ADAFOCUS_SEEDS (workdir/adafocus_v2_demo_seeds)] [--config.x=y ...]
# Each run writes SEEDS/seed<N>/exit/; the mean table goes to SEEDS/exit_mean.md.
set -euo pipefail
arnet=${1:-workdir/demo_seeds}
adafocus=${2:-workdir/adafocus_v2_demo_seeds}
shift 2 || shift $# || true
run() {  # config, checkpoint, workdir
  python -m arnet_jax.main --config="$1" --config.mode=exit --config.checkpoint="$2" \
      --workdir="$3" "${@:4}"
}
for seed in 0 1 2; do
  run configs/demo.py "$arnet/seed$seed/finetune" "$arnet/seed$seed" "$@"
  run configs/adafocus_v2_demo.py "$adafocus/seed$seed/joint" "$adafocus/seed$seed" "$@"
done
for root in "$arnet" "$adafocus"; do
  python - "$root" <<'PY' | tee "$root/exit_mean.md"
import json, sys
runs = [json.load(open(f'{sys.argv[1]}/seed{s}/exit/curve.json')) for s in (0, 1, 2)]
mean = lambda xs: sum(xs) / len(xs)
no_exit = [r['no_exit'] for r in runs]
print(f'{runs[0]["variant"]} with conditional exit, mean of 3 seeds (no exit: '
      f'{mean([n["mAP"] for n in no_exit]):.1f} mAP at '
      f'{mean([n["gflops_per_video"] for n in no_exit]):.4g} GFLOPs/video)\n')
print('| budget (of no exit) | mAP | mAP - no exit | GFLOPs/V | GFLOPs saved | time saved | '
      'time saved / GFLOPs saved |')
print('|---:|---:|---:|---:|---:|---:|---:|')
fractions = sorted({round(row['budget'] / r['no_exit']['gflops_per_video'], 3)
                    for r in runs for row in r['table']}, reverse=True)
for f in fractions:
  rows = [(r['no_exit'], row) for r in runs for row in r['table']
          if round(row['budget'] / r['no_exit']['gflops_per_video'], 3) == f]
  if len(rows) < len(runs):
    continue  # a seed could not meet this budget
  saved = mean([1 - row['gflops_per_video'] / n['gflops_per_video'] for n, row in rows])
  time_saved = mean([1 - row['seconds_per_video'] / row['no_exit_seconds_per_video']
                     for _, row in rows])
  print(f'| {100 * f:.0f}% | {mean([row["mAP"] for _, row in rows]):.1f} | '
        f'{mean([row["mAP"] - n["mAP"] for n, row in rows]):+.1f} | '
        f'{mean([row["gflops_per_video"] for _, row in rows]):.4g} | {100 * saved:.0f}% | '
        f'{100 * time_saved:.0f}% | {time_saved / saved:.2f} |')
print('\nPer seed, mAP - no exit at each budget: ' + '; '.join(
    ', '.join(f'{row["mAP"] - r["no_exit"]["mAP"]:+.1f}' for row in r['table']) for r in runs))
PY
done
