#!/usr/bin/env bash
# Runs every test as CI does. On a fresh Debian machine with Rust and
# Python 3 it first installs what the tests need and is missing: Redis
# (Debian's redis-server), the s3s-fs S3-compatible server (cargo install,
# a few minutes once), and a Python environment with pandas, polars, DuckDB
# and pyarrow. It starts Redis and s3s-fs on 127.0.0.1 for the duration of
# the run and stops them afterwards.
#
# GAZE_TOOLS_DIR (default ~/.cache/gaze) holds the Python environment.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
tools="${GAZE_TOOLS_DIR:-$HOME/.cache/gaze}"
export PATH="$HOME/.cargo/bin:$PATH"

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found; install Rust 1.88 or newer (rustup.rs) and run this script again" >&2
    exit 1
fi

if ! command -v redis-server >/dev/null 2>&1; then
    echo "test: installing redis-server from Debian's packages" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi

venv="$tools/venv"
if ! "$venv/bin/python" -c 'import pandas, polars, duckdb, pyarrow' 2>/dev/null; then
    echo "test: installing pandas, polars, duckdb and pyarrow into $venv" >&2
    mkdir -p "$tools"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        -r shared/tests/interop/requirements.txt
fi

eval "$(scripts/redis.sh start)"
trap 'scripts/redis.sh stop' EXIT

# With GAZE_REQUIRE_SERVICES=1 a test whose service is missing fails instead
# of skipping, so a broken setup cannot pass as green.
scripts/services.sh env \
    GAZE_REQUIRE_SERVICES=1 \
    GAZE_TEST_REDIS_URL="$GAZE_TEST_REDIS_URL" \
    GAZE_TEST_PYTHON="$venv/bin/python" \
    cargo test --workspace --locked
