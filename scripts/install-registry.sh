#!/usr/bin/env bash
# Fetch Apicurio Registry (the Quarkus app, tar.gz classifier `all`) from Maven Central (through
# ~/.m2) and unpack it into the cache, once per version. Prints the path of its runner jar.
set -euo pipefail
CACHE="${KBACKUP_CACHE:-$HOME/.cache/kafka-s3-backup}"
# 2.6.13.Final runs on the machine's Java 17, like Kafka (3.x needs Java 21+).
VERSION=2.6.13.Final
DIR="$CACHE/apicurio-registry/$VERSION"

JAR="$DIR/apicurio-registry-app-$VERSION-runner.jar"
if [[ -f "$DIR/.complete" ]]; then
  echo "$JAR"
  exit 0
fi
command -v mvn >/dev/null || { echo "install-registry: Maven is required and was not found on PATH" >&2; exit 1; }
echo "install-registry: fetching io.apicurio:apicurio-registry-app:$VERSION (tar.gz, all)" >&2
rm -rf "$DIR"
mkdir -p "$DIR"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && mvn -q -B dependency:copy -Dartifact="io.apicurio:apicurio-registry-app:$VERSION:tar.gz:all" \
  -DoutputDirectory="$tmp") >&2
tar -xzf "$tmp/apicurio-registry-app-$VERSION-all.tar.gz" -C "$DIR"
[[ -f "$DIR/apicurio-registry-app-$VERSION-runner.jar" ]] \
  || { echo "install-registry: no apicurio-registry-app-$VERSION-runner.jar in the archive" >&2; exit 1; }
touch "$DIR/.complete"
echo "$JAR"
