#!/usr/bin/env bash
# Starts the services that the integration tests use, on 127.0.0.1 only:
# an S3-compatible server (s3s-fs) over a temporary folder with one bucket.
#
#   scripts/services.sh cargo test -p gaze-shared   run a command, then stop
#   eval "$(scripts/services.sh)"                   start, print the exports
#
# The command gets GAZE_TEST_S3_ENDPOINT, GAZE_TEST_S3_BUCKET and the
# AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY that the server accepts (test
# values, not secrets). s3s-fs is installed with cargo when it is missing.
set -euo pipefail

S3S_VERSION=0.14.1

if ! command -v s3s-fs >/dev/null; then
    echo "services: installing s3s-fs $S3S_VERSION (takes a few minutes)" >&2
    cargo install s3s-fs --version "$S3S_VERSION" --features binary --locked >&2
fi

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

root=$(mktemp -d -t gaze-s3-XXXXXX)
bucket=gaze-test
mkdir -p "$root/$bucket"
port=$(free_port)
access_key=gaze-test-access
secret_key=gaze-test-secret

s3s-fs --host 127.0.0.1 --port "$port" --access-key "$access_key" --secret-key "$secret_key" "$root" \
    >"$root.log" 2>&1 &
server=$!

# Wait up to 10 s for the port to accept connections.
for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        break
    fi
    if ! kill -0 "$server" 2>/dev/null; then
        echo "services: s3s-fs exited; its log:" >&2
        cat "$root.log" >&2
        exit 1
    fi
    sleep 0.1
done

exports=(
    "GAZE_TEST_S3_ENDPOINT=http://127.0.0.1:$port"
    "GAZE_TEST_S3_BUCKET=$bucket"
    "GAZE_TEST_S3_ROOT=$root"
    "AWS_ACCESS_KEY_ID=$access_key"
    "AWS_SECRET_ACCESS_KEY=$secret_key"
    "AWS_REGION=us-east-1"
)

if [ $# -eq 0 ]; then
    for line in "${exports[@]}"; do
        echo "export $line"
    done
    echo "# s3s-fs runs as process $server; stop it with: kill $server" >&2
    exit 0
fi

stop() {
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    rm -rf "$root" "$root.log"
}
trap stop EXIT

echo "services: s3s-fs on 127.0.0.1:$port, bucket $bucket" >&2
env "${exports[@]}" "$@"
