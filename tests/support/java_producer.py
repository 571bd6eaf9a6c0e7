"""Records with timestamps confluent-kafka cannot write (0: librdkafka reads it as "now"),
produced by Apache Kafka's Java client: the stack's own jars (scripts/install-kafka.sh, cached)
and tests/support/ProduceTimestamps.java run as a single source file. Bounded by a timeout."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOURCE = Path(__file__).with_name("ProduceTimestamps.java")
TIMEOUT_S = 120  # compiling the source and the producer's own bounded waits (40 s per record at most)
JARS = ("kafka-clients-", "slf4j-api-", "lz4-java-", "snappy-java-", "zstd-jni-")


@cache
def class_path() -> str:
    """The producer's jars from the stack's cached Kafka libraries (resolved once if absent)."""
    found = subprocess.run(
        [str(REPO / "scripts" / "install-kafka.sh")], capture_output=True, text=True, check=True, timeout=600
    )
    libs = Path(found.stdout.strip().splitlines()[-1])
    jars = [jar for jar in sorted(libs.glob("*.jar")) if jar.name.startswith(JARS)]
    assert any(j.name.startswith("kafka-clients-") for j in jars), f"no kafka-clients jar in {libs}"
    return ":".join(str(j) for j in jars)


def produce_timestamps(
    bootstrap: str, topic: str, records: Sequence[tuple[int, int]]
) -> list[tuple[int, int, int]]:
    """Produce one record per (partition, timestamp) — the i-th keyed `k<i>`, valued `v<i>` — and
    return each one's (partition, offset, timestamp) as the broker acknowledged it."""
    done = subprocess.run(
        [
            "java",
            "-XX:TieredStopAtLevel=1",
            "-XX:+UseSerialGC",
            "-cp",
            class_path(),
            str(SOURCE),
            bootstrap,
            topic,
            *(f"{partition}:{timestamp}" for partition, timestamp in records),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert done.returncode == 0, f"ProduceTimestamps failed ({done.returncode}): {done.stderr[-2000:]}"
    acknowledged = [tuple(int(part) for part in line.split()) for line in done.stdout.splitlines() if line]
    assert len(acknowledged) == len(records), done.stdout
    return [(p, o, t) for p, o, t in acknowledged]
