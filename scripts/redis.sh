#!/usr/bin/env bash
# Starts a throwaway redis-server for the queue tests and benchmarks on a
# free 127.0.0.1 port, without persistence and with the noeviction policy
# gaze requires.
#
# Usage:
#   eval "$(scripts/redis.sh start)"   # exports GAZE_TEST_REDIS_URL
#   scripts/redis.sh stop              # stops the server it started
#
# The server's pid, log and port live in ${GAZE_REDIS_DIR:-target/redis}.
set -euo pipefail

dir="${GAZE_REDIS_DIR:-$(cd "$(dirname "$0")/.." && pwd)/target/redis}"

# Succeeds when something already accepts connections on 127.0.0.1:$1.
port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start() {
  command -v redis-server >/dev/null || {
    echo "redis-server not found: install it (Debian: apt-get install redis-server)" >&2
    exit 1
  }
  mkdir -p "$dir"
  if [[ -f "$dir/redis.pid" ]] && kill -0 "$(cat "$dir/redis.pid")" 2>/dev/null; then
    echo "export GAZE_TEST_REDIS_URL=redis://127.0.0.1:$(cat "$dir/port")"
    return
  fi

  for _ in $(seq 20); do
    local port=$((20000 + RANDOM % 40000))
    port_in_use "$port" && continue
    # Another process may take the port between the probe and the bind; the
    # server then exits and the loop tries the next port.
    redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
      --maxmemory-policy noeviction --daemonize yes \
      --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --dir "$dir"
    for _ in $(seq 50); do
      if [[ "$(redis-cli -p "$port" ping 2>/dev/null)" == PONG ]]; then
        echo "$port" >"$dir/port"
        echo "redis-server listening on 127.0.0.1:$port (log: $dir/redis.log)" >&2
        echo "export GAZE_TEST_REDIS_URL=redis://127.0.0.1:$port"
        return
      fi
      sleep 0.1
    done
  done
  echo "could not start redis-server; see $dir/redis.log" >&2
  exit 1
}

stop() {
  if [[ -f "$dir/redis.pid" ]]; then
    kill "$(cat "$dir/redis.pid")" 2>/dev/null || true
    rm -f "$dir/redis.pid" "$dir/port"
  fi
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *)
    echo "usage: $0 [start|stop]" >&2
    exit 2
    ;;
esac
