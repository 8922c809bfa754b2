#!/usr/bin/env bash
# Training on a Cloud TPU VM pod slice (e.g. v4-32, v5p-64): one process per TPU VM worker,
# all started at once with `gcloud compute tpus tpu-vm ssh --worker=all`.
#
#   launch/tpu_pod.sh setup TPU_NAME ZONE
#       Copies this checkout's committed code (git archive HEAD) to ~/arnet_jax on every
#       worker and installs it with the [tpu] extra.
#   launch/tpu_pod.sh run TPU_NAME ZONE CONFIG WORKDIR [--config.x=y ...]
#       Runs `python -m arnet_jax.main` on every worker with --config.distributed=True
#       (jax.distributed.initialize() finds the pod's coordinator by itself). WORKDIR must be
#       a folder every worker sees (e.g. a Filestore or gcsfuse mount): checkpoints are written
#       by all processes together and read back by all of them on resume.
#
# Environment: PROJECT (gcloud project; default: gcloud's), PYTHON (default python3).
# Example:
#   launch/tpu_pod.sh setup my-v4-32 us-central2-b
#   launch/tpu_pod.sh run my-v4-32 us-central2-b configs/activitynet.py /mnt/shared/anet \
#       --config.data.data_dir=/mnt/shared/tfds --config.train.batch_size=128
# The global batch (train.batch_size, eval.batch_size) must be a multiple of the pod's chips.
# Interrupted (preemption, maintenance)? Run the same `run` command again: it resumes.
set -euo pipefail

usage() {
  sed -n '2,21p' "$0" >&2
  exit 2
}

[[ $# -ge 3 ]] || usage
command=$1
tpu=$2
zone=$3
shift 3
python=${PYTHON:-python3}
gcloud_args=(--zone="$zone" --worker=all)
if [[ -n "${PROJECT:-}" ]]; then
  gcloud_args+=(--project="$PROJECT")
fi

case "$command" in
  setup)
    [[ $# -eq 0 ]] || usage
    repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
    archive=$(mktemp --suffix=.tar.gz)
    trap 'rm -f "$archive"' EXIT
    git -C "$repo" archive --format=tar.gz --prefix=arnet_jax/ -o "$archive" HEAD
    gcloud compute tpus tpu-vm scp "$archive" "$tpu":arnet_jax.tar.gz "${gcloud_args[@]}"
    gcloud compute tpus tpu-vm ssh "$tpu" "${gcloud_args[@]}" --command="set -e
      rm -rf ~/arnet_jax && tar -xzf ~/arnet_jax.tar.gz -C ~
      $python -m pip install -q -e \"\$HOME/arnet_jax[tpu]\"
      $python -c 'import jax; print(jax.process_index(), jax.local_devices())'"
    ;;
  run)
    [[ $# -ge 2 ]] || usage
    config=$1
    workdir=$2
    shift 2
    # Quoted for the remote shell, so overrides with spaces or brackets arrive intact.
    remote=$(printf '%q ' "$python" -m arnet_jax.main --config="$config" --workdir="$workdir" \
      --config.distributed=True "$@")
    gcloud compute tpus tpu-vm ssh "$tpu" "${gcloud_args[@]}" --command="cd ~/arnet_jax && $remote"
    ;;
  *)
    usage
    ;;
esac
