#!/usr/bin/env bash
# Start the local stack: one Apache Kafka broker (KRaft), a SeaweedFS S3 server and an Apicurio
# schema registry, all on loopback, installing them first when missing. Idempotent: what already
# runs is left running.
# Writes $STACK_DIR/env with `export` lines for kbackup, the tests and other clients.
#
# Kafka has two client listeners: PLAINTEXT (everyone is a super user there, as before) and
# SASL_SSL (SCRAM-SHA-512 over TLS, the StandardAuthorizer's ACLs apply). The CA, the broker's
# certificate and the generated secrets are made once and kept in $STACK_DIR/tls and
# $STACK_DIR/secrets.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
STACK_DIR="${KBACKUP_STACK_DIR:-$repo/.stack}"
KAFKA_PORT="${KBACKUP_STACK_KAFKA_PORT:-19092}"
CONTROLLER_PORT="${KBACKUP_STACK_CONTROLLER_PORT:-19093}"
SASL_PORT="${KBACKUP_STACK_SASL_PORT:-19094}"
S3_PORT="${KBACKUP_STACK_S3_PORT:-18333}"
WEED_MASTER_PORT="${KBACKUP_STACK_WEED_MASTER_PORT:-19333}"
WEED_VOLUME_PORT="${KBACKUP_STACK_WEED_VOLUME_PORT:-18080}"
WEED_FILER_PORT="${KBACKUP_STACK_WEED_FILER_PORT:-18888}"
REGISTRY_PORT="${KBACKUP_STACK_REGISTRY_PORT:-18081}"
REGISTRY_MANAGEMENT_PORT="${KBACKUP_STACK_REGISTRY_MANAGEMENT_PORT:-19081}"
ACCESS_KEY="${KBACKUP_STACK_ACCESS_KEY:-kbackup}"
SECRET_KEY="${KBACKUP_STACK_SECRET_KEY:-kbackup-secret}"
# The bucket the scoped S3 identities (kbackup-backup: read and write, kbackup-restore: read) may use.
SECURE_BUCKET="${KBACKUP_STACK_SECURE_BUCKET:-kbackup-secure}"
PYTHON="${PYTHON:-$repo/.venv/bin/python}"
TLS_DIR="$STACK_DIR/tls"
SECRETS_DIR="$STACK_DIR/secrets"

mkdir -p "$STACK_DIR/logs" "$STACK_DIR/pids"
running() { [[ -f "$STACK_DIR/pids/$1.pid" ]] && kill -0 "$(cat "$STACK_DIR/pids/$1.pid")" 2>/dev/null; }

# --- Secrets and TLS material, made once per stack folder ---------------------------------
mkdir -p "$SECRETS_DIR" && chmod 700 "$SECRETS_DIR"
secret() {  # secret NAME: a random value kept in $SECRETS_DIR/NAME
  [[ -s "$SECRETS_DIR/$1" ]] || (umask 077 && openssl rand -hex 16 > "$SECRETS_DIR/$1")
  cat "$SECRETS_DIR/$1"
}
SASL_ADMIN_PASSWORD=$(secret sasl-admin-password)
BACKUP_SECRET_KEY=$(secret s3-backup-secret-key)
RESTORE_SECRET_KEY=$(secret s3-restore-secret-key)
# SeaweedFS's key-encryption key for SSE-S3 (AES256): without one it refuses such uploads (500).
# Kept like the other secrets, so objects written before a restart stay readable after it.
S3_SSE_KEY=$(secret s3-sse-key)
if [[ ! -s "$TLS_DIR/ca.pem" || ! -s "$TLS_DIR/broker.pem" ]]; then
  # A CA of the stack's own and a broker certificate for 127.0.0.1 and localhost, signed by it.
  # The broker reads the PEM keystore (unencrypted PKCS#8 key + certificate chain) directly.
  mkdir -p "$TLS_DIR"
  (
    cd "$TLS_DIR" && umask 077
    openssl req -x509 -newkey rsa:2048 -noenc -days 3650 -subj "/CN=kbackup local stack CA" \
      -keyout ca.key -out ca.pem 2>/dev/null
    openssl req -newkey rsa:2048 -noenc -subj "/CN=127.0.0.1" -keyout broker.key -out broker.csr 2>/dev/null
    printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=digitalSignature,keyEncipherment" \
      "extendedKeyUsage=serverAuth" "subjectAltName=IP:127.0.0.1,DNS:127.0.0.1,DNS:localhost" > broker.ext
    openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile broker.ext -out broker.crt 2>/dev/null
    cat broker.key broker.crt ca.pem > broker.pem.tmp && mv broker.pem.tmp broker.pem
    chmod 644 ca.pem
    rm -f broker.csr broker.ext broker.key broker.crt ca.key ca.srl
  ) || { echo "stack: generating the CA and broker certificate with openssl failed" >&2; exit 1; }
  echo "stack: generated a CA and a broker certificate in $TLS_DIR"
fi

render() {  # render TEMPLATE > OUT, replacing @NAME@ with the shell variable NAME
  sed -e "s|@KAFKA_PORT@|$KAFKA_PORT|g" -e "s|@CONTROLLER_PORT@|$CONTROLLER_PORT|g" \
      -e "s|@SASL_PORT@|$SASL_PORT|g" -e "s|@TLS_DIR@|$TLS_DIR|g" \
      -e "s|@DATA_DIR@|$STACK_DIR/kafka/data|g" -e "s|@ACCESS_KEY@|$ACCESS_KEY|g" \
      -e "s|@SECRET_KEY@|$SECRET_KEY|g" -e "s|@SECURE_BUCKET@|$SECURE_BUCKET|g" \
      -e "s|@BACKUP_SECRET_KEY@|$BACKUP_SECRET_KEY|g" -e "s|@RESTORE_SECRET_KEY@|$RESTORE_SECRET_KEY|g" "$1"
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
  echo "stack: started kafka (pid $!) on 127.0.0.1:$KAFKA_PORT (SASL_SSL on $SASL_PORT)"
fi

# --- SeaweedFS S3 ------------------------------------------------------------------------
if running seaweedfs; then
  echo "stack: seaweedfs already running (pid $(cat "$STACK_DIR/pids/seaweedfs.pid"))"
else
  weed=$("$repo/scripts/install-seaweedfs.sh")
  mkdir -p "$STACK_DIR/seaweedfs/data"
  render "$repo/stack/seaweedfs-s3.json.template" > "$STACK_DIR/seaweedfs/s3.json"
  # One new volume per bucket (collection) instead of seven: tests make many small buckets.
  # WEED_S3_SSE_KEY: the KEK of SSE-S3; the s3.json's "kms" block is SSE-KMS's local provider.
  # -s3.port.lance=0: no Lance listener (it would take 127.0.0.1:9101 in every stack).
  WEED_S3_SSE_KEY="$S3_SSE_KEY" WEED_MASTER_VOLUME_GROWTH_COPY_1=1 setsid nohup "$weed" server -ip=127.0.0.1 -ip.bind=127.0.0.1 -dir="$STACK_DIR/seaweedfs/data" \
    -master.port="$WEED_MASTER_PORT" -master.volumeSizeLimitMB=64 -volume.port="$WEED_VOLUME_PORT" \
    -volume.max=2000 -filer.port="$WEED_FILER_PORT" \
    -s3 -s3.port="$S3_PORT" -s3.config="$STACK_DIR/seaweedfs/s3.json" -s3.autoCreateBucket=false \
    -s3.port.iceberg=0 -s3.port.lance=0 \
    > "$STACK_DIR/logs/seaweedfs.log" 2>&1 < /dev/null &
  echo $! > "$STACK_DIR/pids/seaweedfs.pid"
  echo "stack: started seaweedfs (pid $!) with S3 on 127.0.0.1:$S3_PORT"
fi

# --- Apicurio Registry (Confluent-compatible API under /apis/ccompat/v7) ------------------
# In-memory storage (2.6's default, an in-memory H2 database): every stack (and so every test session's own stack) starts with an empty
# registry, and nothing is left behind. Both its HTTP and its management port are on loopback.
if running registry; then
  echo "stack: registry already running (pid $(cat "$STACK_DIR/pids/registry.pid"))"
else
  registry_jar=$("$repo/scripts/install-registry.sh")
  setsid nohup java -Xms64m -Xmx256m -XX:+UseSerialGC -Djava.awt.headless=true \
    -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$REGISTRY_PORT" \
    -Dquarkus.management.host=127.0.0.1 -Dquarkus.management.port="$REGISTRY_MANAGEMENT_PORT" \
    -jar "$registry_jar" > "$STACK_DIR/logs/registry.log" 2>&1 < /dev/null &
  echo $! > "$STACK_DIR/pids/registry.pid"
  echo "stack: started registry (pid $!) on http://127.0.0.1:$REGISTRY_PORT/apis/ccompat/v7"
fi

cat > "$STACK_DIR/env" <<ENV
export KBACKUP_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_PORT
export KBACKUP_S3_ENDPOINT_URL=http://127.0.0.1:$S3_PORT
export AWS_ACCESS_KEY_ID=$ACCESS_KEY
export AWS_SECRET_ACCESS_KEY=$SECRET_KEY
export AWS_REGION=us-east-1
export KBACKUP_STACK_SASL_BOOTSTRAP=127.0.0.1:$SASL_PORT
export KBACKUP_STACK_CA_FILE=$TLS_DIR/ca.pem
export KBACKUP_STACK_SASL_ADMIN_USER=admin
export KBACKUP_STACK_SASL_ADMIN_PASSWORD=$SASL_ADMIN_PASSWORD
export KBACKUP_STACK_SECURE_BUCKET=$SECURE_BUCKET
export KBACKUP_STACK_S3_BACKUP_ACCESS_KEY=kbackup-backup
export KBACKUP_STACK_S3_BACKUP_SECRET_KEY=$BACKUP_SECRET_KEY
export KBACKUP_STACK_S3_RESTORE_ACCESS_KEY=kbackup-restore
export KBACKUP_STACK_S3_RESTORE_SECRET_KEY=$RESTORE_SECRET_KEY
export KBACKUP_SCHEMA_REGISTRY_URL=http://127.0.0.1:$REGISTRY_PORT/apis/ccompat/v7
ENV
chmod 600 "$STACK_DIR/env"

# Wait until each answers a real request: a Kafka metadata request and an S3 ListBuckets.
"$PYTHON" "$repo/scripts/wait_for_stack.py" --env "$STACK_DIR/env" --logs "$STACK_DIR/logs"
# And the registry answers its Confluent-compatible API.
"$PYTHON" "$repo/scripts/wait_for_registry.py" --env "$STACK_DIR/env" --log "$STACK_DIR/logs/registry.log" \
  --pid "$(cat "$STACK_DIR/pids/registry.pid")"
# The SASL_SSL listener's admin user (a super user), created through PLAINTEXT, then a login.
"$PYTHON" "$repo/scripts/stack_sasl_admin.py" --env "$STACK_DIR/env"
echo "stack: ready; source $STACK_DIR/env"
