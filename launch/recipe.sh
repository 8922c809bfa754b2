#!/usr/bin/env bash
# The paper's three-stage recipe (warm-up, joint, fine-tune), then the baselines, in WORKDIR.
#   launch/recipe.sh CONFIG WORKDIR [--config.x=y ...]
# Each stage trains in WORKDIR/<stage> and resumes there if interrupted (run the same command
# again); joint starts from WORKDIR/warmup/best, fine-tune from WORKDIR/joint/best.
# Start from ImageNet weights (see docs/import.md) with e.g.
#   --config.init.backbones="('r50_dir','r34_dir','r18_dir')" --config.init.policy=mbv2_dir
set -euo pipefail
if [[ $# -lt 2 ]]; then
  echo "usage: $0 CONFIG WORKDIR [--config.x=y ...]" >&2
  exit 2
fi
config=$1
workdir=$2
shift 2
exec python -m arnet_jax.main --config="$config" --config.mode=recipe --workdir="$workdir" "$@"
