#!/usr/bin/env bash
# Runs the checks that need a GPU, in one go, on a machine with CUDA:
#
# 1. builds gaze-worker and gaze in release mode with the `cuda` feature;
# 2. compares the engine with each transformers golden record in
#    tests/golden/ on DEVICE, in f32 and in bf16 (`gaze-worker
#    compare-golden`), which measures the bf16 attention tolerance;
# 3. runs the first GAZE_GPU_CHECK_LIMIT samples (default 1000) of the demo
#    study with the test model on DEVICE and prints gaze run's summary.
#
# Usage: scripts/gpu-check.sh [DEVICE]   (default cuda:0)
#
# Results go to GAZE_GPU_CHECK_OUT (default gpu-check/): a table and a JSON
# file per comparison, summary.txt with one line per comparison, and
# run.log.
# DEVICE `cpu` builds without CUDA and runs the same steps, to check the
# script itself on a machine without a GPU.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
device="${1:-cuda:0}"
out="${GAZE_GPU_CHECK_OUT:-gpu-check}"
limit="${GAZE_GPU_CHECK_LIMIT:-1000}"
bin="${CARGO_TARGET_DIR:-target}/release"

features=()
if [[ "$device" == cuda* ]]; then
    features=(--features cuda)
    if ! command -v nvcc >/dev/null 2>&1; then
        echo "error: nvcc not found; install the CUDA toolkit (or put its bin/ on PATH) and run this script again" >&2
        exit 1
    fi
    # candle-kernels compiles for CUDA_COMPUTE_CAP, or for the GPU that
    # nvidia-smi reports when it is unset.
    if [[ -z "${CUDA_COMPUTE_CAP:-}" ]] && ! command -v nvidia-smi >/dev/null 2>&1; then
        echo "error: nvidia-smi not found; set CUDA_COMPUTE_CAP (90 for H100 and H200) and run this script again" >&2
        exit 1
    fi
fi

mkdir -p "$out"
cargo build --release --locked -p gaze-worker -p gaze-coordinator "${features[@]}"

: >"$out/summary.txt"
for golden in llama3 llama2 qwen2; do
    for dtype in f32 bf16; do
        "$bin/gaze-worker" compare-golden "tests/golden/$golden" \
            --device "$device" --dtype "$dtype" \
            --json-out "$out/compare-$golden-$dtype.json" \
            >"$out/compare-$golden-$dtype.txt"
        head -n 1 "$out/compare-$golden-$dtype.txt" | sed "s/^/$golden: /" \
            | tee -a "$out/summary.txt"
    done
done

model="$out/test-model"
store="$out/store"
rm -rf "$store"
"$bin/gaze-worker" make-test-model "$model"
"$bin/gaze" run config/uk-immigration.toml --limit "$limit" \
    --model "$model" --store "$store" --device "$device" 2>&1 | tee "$out/run.log"
