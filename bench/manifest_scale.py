"""The manifest of a backup of many partitions: written (JSON) and read (validated) in how long.

    python bench/manifest_scale.py [--partitions 10000] [--objects 1]

A manifest is built in memory as a backup of N partitions with K objects each would write it
(layout.manifest), then timed: `model_dump_json` (what the backup puts), `model_validate_json`
(what restore, verify, ls and prune read) and a lookup of every partition (`Manifest.partition`,
as the next incremental backup's plan and the restore's discovery do). No services.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from layout.manifest import Manifest, ObjectEntry, PartitionEntry, TopicEntry  # noqa: E402


def manifest_of(partitions: int, objects: int) -> Manifest:
    entries = []
    for p in range(partitions):
        objs = tuple(
            ObjectEntry(
                key=f"backups/orders/{p}/{o * 50 + 49:012d}.avro",
                first_offset=o * 50,
                last_offset=o * 50 + 49,
                record_count=50,
                min_timestamp=1_700_000_000_000,
                max_timestamp=1_700_000_050_000,
                size=52_000,
                sha256="ab" * 32,
                records_digest="sha256:" + "cd" * 32,
            )
            for o in range(objects)
        )
        entries.append(
            PartitionEntry(
                topic="orders",
                partition=p,
                start_offset=0,
                end_offset=50 * objects,
                record_count=50 * objects,
                byte_count=52_000 * objects,
                records_digest="sha256:" + "ef" * 32,
                objects=objs,
            )
        )
    now = datetime.now(UTC)
    return Manifest(
        backup_id="20261207T000000Z-bench",
        previous_backup_id=None,
        started_at=now,
        finished_at=now,
        kcql="INSERT INTO b:p SELECT * FROM orders STOREAS AVRO",
        spec={},
        format="AVRO",
        extension="avro",
        lossless=True,
        cluster_id="bench",
        topics=(TopicEntry(name="orders", partition_count=partitions, replication_factor=1),),
        partitions=tuple(entries),
    )


def timed(label: str, action, runs: int = 3) -> float:
    best = min(_once(action) for _ in range(runs))
    print(f"{label:<40} {best * 1000:9.1f} ms")
    return best


def _once(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partitions", type=int, default=10_000)
    parser.add_argument("--objects", type=int, default=1)
    args = parser.parse_args()
    manifest = manifest_of(args.partitions, args.objects)
    text = manifest.model_dump_json(indent=2)
    print(f"{args.partitions} partitions × {args.objects} objects: manifest of {len(text) / 1e6:.1f} MB")
    timed("write (model_dump_json)", lambda: manifest.model_dump_json(indent=2))
    timed("read (model_validate_json)", lambda: Manifest.model_validate_json(text))
    read = Manifest.model_validate_json(text)
    timed(
        "every partition looked up",
        lambda: [read.partition("orders", p) for p in range(args.partitions)],
        runs=1,
    )


if __name__ == "__main__":
    main()
