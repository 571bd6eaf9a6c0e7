#!/usr/bin/env bash
# `make serve`: a local Prefect server (SQLite under .stack/prefect), the process work pool,
# the deployments from prefect.yaml (backup, restore, prune, drill, …), and a worker. Stopped by `make down` (pid files).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
STACK_DIR="${KBACKUP_STACK_DIR:-$repo/.stack}"
STACK_ENV="${KBACKUP_STACK_ENV:-$STACK_DIR/env}"  # the stack's connection variables (stack-up.sh writes it)
PORT="${KBACKUP_STACK_PREFECT_PORT:-14200}"
BIN="$repo/.venv/bin"
export PREFECT_HOME="$STACK_DIR/prefect"
export PREFECT_API_URL="http://127.0.0.1:$PORT/api"
export PREFECT_SERVER_ANALYTICS_ENABLED=false
export PREFECT_UI_URL="http://127.0.0.1:$PORT"
export KBACKUP_PROJECT_DIR="$repo"
export KBACKUP_BACKUP_CRON="${KBACKUP_BACKUP_CRON:-0 * * * *}"
# The daily prune of the demo's backups (prefect.yaml's prune deployment).
export KBACKUP_PRUNE_CRON="${KBACKUP_PRUNE_CRON:-30 3 * * *}"
export KBACKUP_PRUNE_BUCKET="${KBACKUP_PRUNE_BUCKET:-demo-backups}"
export KBACKUP_PRUNE_PREFIX="${KBACKUP_PRUNE_PREFIX:-sales}"
export KBACKUP_PRUNE_KEEP_WITHIN="${KBACKUP_PRUNE_KEEP_WITHIN:-30d}"
# The weekly restore drill of the demo's backups (prefect.yaml's drill deployment).
export KBACKUP_DRILL_CRON="${KBACKUP_DRILL_CRON:-0 4 * * 0}"
export KBACKUP_DRILL_BUCKET="${KBACKUP_DRILL_BUCKET:-demo-backups}"
export KBACKUP_DRILL_PREFIX="${KBACKUP_DRILL_PREFIX:-sales}"
mkdir -p "$PREFECT_HOME" "$STACK_DIR/logs" "$STACK_DIR/pids"
set -a; . "$STACK_ENV"; set +a
running() { [[ -f "$STACK_DIR/pids/$1.pid" ]] && kill -0 "$(cat "$STACK_DIR/pids/$1.pid")" 2>/dev/null; }

if ! running prefect-server; then
  setsid nohup "$BIN/prefect" server start --host 127.0.0.1 --port "$PORT" \
    > "$STACK_DIR/logs/prefect-server.log" 2>&1 < /dev/null &
  echo $! > "$STACK_DIR/pids/prefect-server.pid"
  echo "serve: started the Prefect server (pid $!)"
fi
for _ in $(seq 1 120); do
  curl -sf "$PREFECT_API_URL/health" > /dev/null && break
  sleep 1
done
curl -sf "$PREFECT_API_URL/health" > /dev/null || { echo "serve: the Prefect server did not answer; see $STACK_DIR/logs/prefect-server.log" >&2; exit 1; }

"$BIN/prefect" work-pool inspect kbackup-process > /dev/null 2>&1 \
  || "$BIN/prefect" work-pool create kbackup-process --type process > /dev/null
# The scheduled backup's KCQL lives in a Prefect Variable, editable in the UI.
"$BIN/prefect" variable set kbackup_backup_kcql "${KBACKUP_BACKUP_KCQL:-INSERT INTO demo-backups:sales SELECT * FROM sales STOREAS AVRO PROPERTIES('store.envelope'=true)}" --overwrite > /dev/null
(cd "$repo" && "$BIN/prefect" --no-prompt deploy --all > "$STACK_DIR/logs/prefect-deploy.log" 2>&1) \
  || { echo "serve: prefect deploy failed; see $STACK_DIR/logs/prefect-deploy.log" >&2; exit 1; }
# Alerts, when a webhook is given: failed runs, and each backup deployment's RPO (its rpo parameter
# in prefect.yaml, else twice its schedule's interval). Without KBACKUP_ALERT_WEBHOOK, none.
if [[ -n "${KBACKUP_ALERT_WEBHOOK:-}" ]]; then
  (cd "$STACK_DIR" && "$BIN/kbackup" alerts setup --webhook "$KBACKUP_ALERT_WEBHOOK" > "$STACK_DIR/logs/kbackup-alerts.log" 2>&1) \
    || { echo "serve: kbackup alerts setup failed; see $STACK_DIR/logs/kbackup-alerts.log" >&2; exit 1; }
  echo "serve: alerts set up for $KBACKUP_ALERT_WEBHOOK (see $STACK_DIR/logs/kbackup-alerts.log)"
fi

if ! running prefect-worker; then
  setsid nohup "$BIN/prefect" worker start --pool kbackup-process --type process \
    > "$STACK_DIR/logs/prefect-worker.log" 2>&1 < /dev/null &
  echo $! > "$STACK_DIR/pids/prefect-worker.pid"
  echo "serve: started a worker (pid $!)"
fi
cat > "$STACK_DIR/prefect.env" <<ENV
export PREFECT_API_URL=$PREFECT_API_URL
export PREFECT_HOME=$PREFECT_HOME
ENV
echo "serve: Prefect UI at $PREFECT_UI_URL (deployments: backup/backup, restore/restore, prune/prune, drill/drill, status/status); source $STACK_DIR/prefect.env to use it"
