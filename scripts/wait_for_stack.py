"""Wait until the local stack answers: a Kafka metadata request and an S3 ListBuckets.

Reads the `export NAME=value` lines that scripts/stack-up.sh wrote; on failure prints where
the service's log is and its last lines, and exits 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def load_env(path: Path) -> None:
    for line in path.read_text().splitlines():
        if line.startswith("export ") and "=" in line:
            name, value = line[len("export ") :].split("=", 1)
            os.environ[name] = value


def kafka_ready() -> str | None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": os.environ["KBACKUP_KAFKA_BOOTSTRAP_SERVERS"], "log_level": 0})
    try:
        metadata = admin.list_topics(timeout=2)
    except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
        return str(exc)
    return None if metadata.brokers else "no brokers in metadata"


def s3_ready() -> str | None:
    import boto3

    client = boto3.client("s3", endpoint_url=os.environ["KBACKUP_S3_ENDPOINT_URL"])
    try:
        client.list_buckets()
    except Exception as exc:  # noqa: BLE001
        return str(exc)
    return None


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--env", type=Path, required=True)
    parser.add_argument("--logs", type=Path, required=True)
    parser.add_argument("--timeout", type=float, default=180)
    args = parser.parse_args()
    load_env(args.env)
    checks = {"kafka": (kafka_ready, "kafka.log"), "seaweedfs": (s3_ready, "seaweedfs.log")}
    deadline = time.monotonic() + args.timeout
    pending = dict(checks)
    last_error: dict[str, str] = {}
    while pending and time.monotonic() < deadline:
        for name, (check, _) in list(pending.items()):
            error = check()
            if error is None:
                print(f"stack: {name} answers")
                del pending[name]
            else:
                last_error[name] = error
        if pending:
            time.sleep(1)
    for name, (_, log_name) in pending.items():
        log = args.logs / log_name
        tail = log.read_text(errors="replace").splitlines()[-20:] if log.exists() else []
        print(
            f"stack: {name} did not answer within {args.timeout:.0f} s: {last_error.get(name)}",
            file=sys.stderr,
        )
        print(f"stack: its log is {log}; last lines:", *tail, sep="\n  ", file=sys.stderr)
    return 1 if pending else 0


if __name__ == "__main__":
    sys.exit(main())
