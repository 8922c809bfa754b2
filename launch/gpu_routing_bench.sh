#!/usr/bin/env bash
# The GPU measurements of sparse routing (docs/benchmarks.md "Inference on a GPU"), one script of
# about 8 minutes on an H100/H200: correctness at 'highest' precision, then speed in float32 and
# bfloat16 at 8, 32 and 64 videos per batch, device and host dispatch, the policy's LSTM unrolled
# or not, and an evaluation's compilations. Writes JSON lines to DIR (default: $OUT or ./gpu_bench).
#   bash launch/gpu_routing_bench.sh [DIR]
set -euo pipefail
dir=${1:-${OUT:-gpu_bench}}
mkdir -p "$dir"
run() {  # name, then the benchmark's flags
  local name=$1; shift
  echo "== $name: $*"
  timeout 240 python -m arnet_jax.bench.inference "$@" --json | tee "$dir/$name.log" \
    | tail -n 1 > "$dir/$name.json" || echo "== $name did not finish (see $dir/$name.log)"
}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$dir/gpu.txt" || true
python -c 'import jax; print(jax.__version__, jax.devices())' | tee "$dir/jax.txt"
# G1, G2: logits against masked compute in float32 at 'highest' precision, bfloat16 at default.
run exact_highest --batch_size=8 --dtype=float32 --precision=highest --repeats=2
# G3-G5: speed, paper usage split exactly; then decisions drawn per batch; then the LSTM unrolled.
run speed --batch_size=8,32,64 --dtype=float32,bfloat16 --repeats=10
run drawn --batch_size=32 --dtype=float32 --decisions=drawn --repeats=10 --dispatch=device
run unroll16 --batch_size=32 --dtype=float32 --scan_unroll=16 --repeats=10 --dispatch=device
run grid4 --batch_size=32 --dtype=float32 --grid_steps=4 --repeats=10 --dispatch=device
# C3 on the GPU: an evaluation of 400 videos compiles nothing after its first batch.
run eval400 --eval_videos=400 --batch_size=32 --dispatch=device,host
python -m arnet_jax.bench.kernels --json > "$dir/kernels.json" 2>&1 || true
