#!/usr/bin/env bash
# Build the SeaweedFS `weed` binary (Apache-2.0) from the Go module proxy, once.
# The binary is cached under $KBACKUP_CACHE (default ~/.cache/kafka-s3-backup) by version;
# Go's own module and build caches make a rebuild cheap.
set -euo pipefail
VERSION="${SEAWEEDFS_VERSION:-v0.0.0-20261109003541-7506e5f91cd6}"
MODULE="github.com/seaweedfs/seaweedfs"
CACHE="${KBACKUP_CACHE:-$HOME/.cache/kafka-s3-backup}"
BIN="$CACHE/seaweedfs/$VERSION/weed"

if [[ -x "$BIN" ]]; then
  echo "$BIN"
  exit 0
fi

command -v go >/dev/null || { echo "install-seaweedfs: Go is required (https://go.dev) and was not found on PATH" >&2; exit 1; }
echo "install-seaweedfs: building $MODULE@$VERSION (first run only; takes a few minutes)" >&2
dir=$(cd /tmp && go mod download -json "$MODULE@$VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
cp -r "$dir/." "$work/"
chmod -R u+w "$work"
mkdir -p "$(dirname "$BIN")"
# The module's go.mod carries replace directives, so build inside it rather than `go install`.
(cd "$work" && GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$BIN.tmp" ./weed) >&2
mv "$BIN.tmp" "$BIN"
echo "$BIN"
