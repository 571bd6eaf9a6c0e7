#!/usr/bin/env bash
# Stop exactly the processes scripts/stack-up.sh (and `make serve`) started, by the pids they recorded.
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
STACK_DIR="${KBACKUP_STACK_DIR:-$repo/.stack}"
shopt -s nullglob
for pidfile in "$STACK_DIR"/pids/*.pid; do
  name=$(basename "$pidfile" .pid)
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    # A Prefect worker keeps polling for a long while after SIGTERM or SIGINT; it holds no state
    # (finished runs are on the server), so it gets 10 s before it is killed. Others get 30 s.
    if [[ $name == prefect-worker ]]; then patience=20; else patience=60; fi
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 "$patience"); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "stack: $name (pid $pid) did not stop in $((patience / 2)) s; killing it"
      kill -KILL "$pid" 2>/dev/null
    fi
    echo "stack: stopped $name (pid $pid)"
  fi
  rm -f "$pidfile"
done
