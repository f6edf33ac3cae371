#!/usr/bin/env bash
# Runs the workspace's tests as CI does, on a fresh clone with Rust installed.
set -euo pipefail

cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found; install Rust 1.88 or newer (rustup.rs) and run this script again" >&2
    exit 1
fi

cargo test --workspace --locked
