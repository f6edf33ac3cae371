#!/usr/bin/env bash
# Measures the throughput of distributed mode with 1, 2 and 4 gaze-worker
# serve processes on this machine: the tiny test model, a private
# redis-server and an s3s-fs store, 192 samples in shards of 8, 12 new
# tokens per sample. Prints one row per worker count: samples/s from the
# first shard's start to the last shard's commit (model loading excluded).
#
#   cargo build -p gaze-coordinator -p gaze-worker && scripts/bench-workers.sh
#
# GAZE_BIN_DIR (default target/debug, or $CARGO_TARGET_DIR/debug) contains the
# gaze and gaze-worker binaries. WORKERS (default "1 2 4") sets the counts.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${GAZE_BIN_DIR:-${CARGO_TARGET_DIR:-$repo/target}/debug}"
work=$(mktemp -d -t gaze-bench-XXXXXX)
pids=()

stop() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap stop EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return
        sleep 0.1
    done
    echo "bench: nothing listens on port $1 after 10 s" >&2
    exit 1
}

redis_port=$(free_port)
redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
    --maxmemory-policy noeviction >"$work/redis.log" 2>&1 &
pids+=($!)
s3_port=$(free_port)
mkdir -p "$work/s3/bench"
s3s-fs --host 127.0.0.1 --port "$s3_port" --access-key bench-access --secret-key bench-secret \
    "$work/s3" >"$work/s3.log" 2>&1 &
pids+=($!)
wait_port "$redis_port"
wait_port "$s3_port"

export AWS_ENDPOINT_URL="http://127.0.0.1:$s3_port" AWS_ALLOW_HTTP=true AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=bench-access AWS_SECRET_ACCESS_KEY=bench-secret
"$bin/gaze-worker" make-test-model "$work/model" >/dev/null

echo "| worker processes | samples | seconds | samples/s |"
echo "|---|---|---|---|"
for workers in ${WORKERS:-1 2 4}; do
    study="bench-$workers"
    cat >"$work/$study.toml" <<EOF
[study]
name = "$study"
vignettes = "$repo/config/vignettes/uk-immigration.json"

[[models]]
id = "tiny"
path = "$work/model"
device = "cpu"

[prompt]
system = "You are a caseworker for UK Visas and Immigration."
user = """Read the case below and decide the application.

{vignette}

Answer GRANTED or REFUSED."""
assistant_prefix = "DECISION:"
template = "chat"

[design]
total_samples = 192
stratify = ["gender"]
seed = 11

[generation]
max_new_tokens = 12
temperature = 0.7
batch_size = 4

[decision]
labels = ["GRANTED", "REFUSED"]

[attention]
sample_rate = 0.25
steps = 2
top_k = 5

[output]
store = "s3://bench/$study"
samples_per_shard = 8

[queue]
url = "redis://127.0.0.1:$redis_port"
EOF
    "$bin/gaze" submit "$work/$study.toml" >/dev/null 2>"$work/$study-submit.log"

    worker_pids=()
    for i in $(seq "$workers"); do
        "$bin/gaze-worker" serve "$work/$study.toml" --worker-name "w$i" \
            --exit-when-idle 1 --poll-max 0.2 2>"$work/$study-w$i.log" &
        worker_pids+=($!)
        pids+=($!)
    done
    wait "${worker_pids[@]}"

    # Throughput from the commit markers' own timings.
    python3 - "$work/s3/bench/$study/$study/commits" <<'EOF'
import json, pathlib, sys
markers = [json.loads(p.read_text()) for p in pathlib.Path(sys.argv[1]).glob("*.json")]
start = min(m["timings"]["started_unix_ms"] for m in markers)
end = max(m["timings"]["finished_unix_ms"] for m in markers)
samples = sum(m["rows"]["samples"] for m in markers)
seconds = (end - start) / 1000
print(f"| {sys.argv[1].split('/')[-3].removeprefix('bench-')} | {samples} | {seconds:.1f} | {samples / seconds:.1f} |")
EOF
done
