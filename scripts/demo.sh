#!/usr/bin/env bash
# Runs the demo study end to end with the test model: builds gaze in
# release mode, writes the test model to models/test-model, and runs the
# first samples of the plan (2,000, or GAZE_DEMO_LIMIT when set)
# into gaze-output/. Extra arguments go to `gaze run`. Rerunning resumes.
set -euo pipefail

cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found; install Rust 1.88 or newer (rustup.rs) and run this script again" >&2
    exit 1
fi

limit="${GAZE_DEMO_LIMIT:-2000}"
bin="${CARGO_TARGET_DIR:-target}/release"

cargo build --release --locked -p gaze-coordinator -p gaze-worker
if [ ! -f models/test-model/model.safetensors ]; then
    "$bin/gaze-worker" make-test-model models/test-model
fi
"$bin/gaze" run config/uk-immigration.toml --limit "$limit" "$@"
