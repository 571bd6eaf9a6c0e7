#!/usr/bin/env bash
# Resolve Apache Kafka's broker jars from Maven Central (through ~/.m2) into the cache, once.
# Prints the directory holding the jars.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
CACHE="${KBACKUP_CACHE:-$HOME/.cache/kafka-s3-backup}"
POM="$here/stack/kafka-pom.xml"
# Key the cache by the pom's content so a version bump resolves again.
key=$(sha256sum "$POM" | cut -c1-16)
LIBS="$CACHE/kafka/$key/libs"

if [[ -f "$LIBS/.complete" ]]; then
  echo "$LIBS"
  exit 0
fi
command -v mvn >/dev/null || { echo "install-kafka: Maven is required and was not found on PATH" >&2; exit 1; }
command -v java >/dev/null || { echo "install-kafka: Java 17+ is required and was not found on PATH" >&2; exit 1; }
echo "install-kafka: resolving org.apache.kafka:kafka_2.13 and its runtime dependencies" >&2
rm -rf "$LIBS"
mkdir -p "$LIBS"
mvn -q -B -f "$POM" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$LIBS" >&2
# Kafka's own slf4j-api 1.7 would shadow the 2.x that the Log4j binding needs.
find "$LIBS" -name 'slf4j-api-1.*.jar' -delete
touch "$LIBS/.complete"
echo "$LIBS"
