#!/usr/bin/env bash
# Start the local stack: one Apache Kafka broker (KRaft) and a SeaweedFS S3 server, both on
# loopback, installing them first when missing. Idempotent: what already runs is left running.
# Writes $STACK_DIR/env with `export` lines for kbackup, the tests and other clients.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
STACK_DIR="${KBACKUP_STACK_DIR:-$repo/.stack}"
KAFKA_PORT="${KBACKUP_STACK_KAFKA_PORT:-19092}"
CONTROLLER_PORT="${KBACKUP_STACK_CONTROLLER_PORT:-19093}"
S3_PORT="${KBACKUP_STACK_S3_PORT:-18333}"
WEED_MASTER_PORT="${KBACKUP_STACK_WEED_MASTER_PORT:-19333}"
WEED_VOLUME_PORT="${KBACKUP_STACK_WEED_VOLUME_PORT:-18080}"
WEED_FILER_PORT="${KBACKUP_STACK_WEED_FILER_PORT:-18888}"
ACCESS_KEY="${KBACKUP_STACK_ACCESS_KEY:-kbackup}"
SECRET_KEY="${KBACKUP_STACK_SECRET_KEY:-kbackup-secret}"
PYTHON="${PYTHON:-$repo/.venv/bin/python}"

mkdir -p "$STACK_DIR/logs" "$STACK_DIR/pids"
running() { [[ -f "$STACK_DIR/pids/$1.pid" ]] && kill -0 "$(cat "$STACK_DIR/pids/$1.pid")" 2>/dev/null; }
render() {  # render TEMPLATE > OUT, replacing @NAME@ with the shell variable NAME
  sed -e "s|@KAFKA_PORT@|$KAFKA_PORT|g" -e "s|@CONTROLLER_PORT@|$CONTROLLER_PORT|g" \
      -e "s|@DATA_DIR@|$STACK_DIR/kafka/data|g" -e "s|@ACCESS_KEY@|$ACCESS_KEY|g" \
      -e "s|@SECRET_KEY@|$SECRET_KEY|g" "$1"
}

# --- Apache Kafka ------------------------------------------------------------------------
if running kafka; then
  echo "stack: kafka already running (pid $(cat "$STACK_DIR/pids/kafka.pid"))"
else
  libs=$("$repo/scripts/install-kafka.sh")
  mkdir -p "$STACK_DIR/kafka/data"
  render "$repo/stack/kafka-server.properties.template" > "$STACK_DIR/kafka/server.properties"
  java_opts=(-Xms256m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true
             "-Dkafka.logs.dir=$STACK_DIR/logs" "-Dlog4j2.configurationFile=$repo/stack/log4j2.properties")
  if [[ ! -f "$STACK_DIR/kafka/data/meta.properties" ]]; then
    cluster_id=$(java -cp "$libs/*" "${java_opts[@]}" kafka.tools.StorageTool random-uuid)
    java -cp "$libs/*" "${java_opts[@]}" kafka.tools.StorageTool format \
      -t "$cluster_id" -c "$STACK_DIR/kafka/server.properties" > "$STACK_DIR/logs/kafka-format.log" 2>&1 \
      || { echo "stack: formatting Kafka storage failed, see $STACK_DIR/logs/kafka-format.log" >&2; exit 1; }
  fi
  setsid nohup java -cp "$libs/*" "${java_opts[@]}" kafka.Kafka "$STACK_DIR/kafka/server.properties" \
    > "$STACK_DIR/logs/kafka.out" 2>&1 < /dev/null &
  echo $! > "$STACK_DIR/pids/kafka.pid"
  echo "stack: started kafka (pid $!) on 127.0.0.1:$KAFKA_PORT"
fi

# --- SeaweedFS S3 ------------------------------------------------------------------------
if running seaweedfs; then
  echo "stack: seaweedfs already running (pid $(cat "$STACK_DIR/pids/seaweedfs.pid"))"
else
  weed=$("$repo/scripts/install-seaweedfs.sh")
  mkdir -p "$STACK_DIR/seaweedfs/data"
  render "$repo/stack/seaweedfs-s3.json.template" > "$STACK_DIR/seaweedfs/s3.json"
  # One new volume per bucket (collection) instead of seven: tests make many small buckets.
  WEED_MASTER_VOLUME_GROWTH_COPY_1=1 setsid nohup "$weed" server -ip=127.0.0.1 -ip.bind=127.0.0.1 -dir="$STACK_DIR/seaweedfs/data" \
    -master.port="$WEED_MASTER_PORT" -master.volumeSizeLimitMB=64 -volume.port="$WEED_VOLUME_PORT" \
    -volume.max=2000 -filer.port="$WEED_FILER_PORT" \
    -s3 -s3.port="$S3_PORT" -s3.config="$STACK_DIR/seaweedfs/s3.json" -s3.autoCreateBucket=false \
    -s3.port.iceberg=0 \
    > "$STACK_DIR/logs/seaweedfs.log" 2>&1 < /dev/null &
  echo $! > "$STACK_DIR/pids/seaweedfs.pid"
  echo "stack: started seaweedfs (pid $!) with S3 on 127.0.0.1:$S3_PORT"
fi

cat > "$STACK_DIR/env" <<ENV
export KBACKUP_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_PORT
export KBACKUP_S3_ENDPOINT_URL=http://127.0.0.1:$S3_PORT
export AWS_ACCESS_KEY_ID=$ACCESS_KEY
export AWS_SECRET_ACCESS_KEY=$SECRET_KEY
export AWS_REGION=us-east-1
ENV

# Wait until each answers a real request: a Kafka metadata request and an S3 ListBuckets.
"$PYTHON" "$repo/scripts/wait_for_stack.py" --env "$STACK_DIR/env" --logs "$STACK_DIR/logs"
echo "stack: ready; source $STACK_DIR/env"
