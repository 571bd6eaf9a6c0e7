"""Restore throughput against the ceiling of a plain confluent-kafka idempotent producer sending
the same records to the same broker, in the same run.

    python bench/restore.py [--records 1000000] [--format AVRO] [--concurrency 6]

Data set: N records of 1 KB over 6 partitions, 3 headers each (bench.common.ensure_topic),
backed up once with `kbackup backup` (reused when the prefix already holds a manifest), then
restored into a fresh topic with `kbackup restore` in its own process. The restore figure
includes discovery, the transactional produce and the final check (consuming everything back).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    PARTITIONS,
    VALUE_SIZE,
    bench_topic_name,
    drop_topic,
    ensure_topic,
    machine,
    measured_backup,
    raw_consume,
    run_measured,
    write_section,
)

_CEILING = """
import os, sys, time
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from bench.common import kafka_config, PARTITIONS
topic, records, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
config = kafka_config()
admin = AdminClient(config)
admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(60)
time.sleep(1)
producer = Producer({**config, "enable.idempotence": True, "acks": "all", "linger.ms": 20,
                     "batch.size": 1_000_000, "queue.buffering.max.kbytes": 512 * 1024})
import random
rng = random.Random(size)
first_timestamp = int(time.time() * 1000) - records
for i in range(records):
    # the same kind of records as the benchmark topic (bench.common.ensure_topic)
    value = rng.randbytes(size // 2 + 1).hex().encode()[:size]
    headers = [(f"h{h}", rng.randbytes(8).hex().encode()) for h in range(3)]
    while True:
        try:
            producer.produce(topic, value, f"key-{i:012d}".encode(), partition=i % PARTITIONS,
                             headers=headers, timestamp=first_timestamp + i)
            break
        except BufferError:
            producer.poll(0.05)
    if i % 10_000 == 0:
        producer.poll(0)
assert producer.flush(120) == 0
"""


def _ensure_backup(store: Any, bucket: str, prefix: str, topic: str, fmt: str, records: int) -> None:
    from tasks.services.manifest_store import list_backup_ids

    with contextlib.suppress(Exception):  # it exists
        store.create_bucket(bucket)
    if list_backup_ids(store, bucket, prefix):
        return
    measured_backup(
        store,
        [sys.executable, "-m", "kbackup.cli"],
        bucket,
        prefix,
        topic,
        fmt,
        records,
        ["--verify", "quick"],
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--format", default="PARQUET")
    parser.add_argument("--workers", default="1,2", help="worker counts (the task runner's max workers)")
    parser.add_argument("--task-runner", default="processes")
    parser.add_argument("--no-readme", action="store_true", help="print the table only")
    args = parser.parse_args()
    from tasks.services.object_store import S3Store

    store = S3Store.from_settings()
    records = args.records
    topic = bench_topic_name(records, VALUE_SIZE)
    data_bytes = ensure_topic(topic, records, VALUE_SIZE)
    bucket, prefix = "kbackup-bench", f"restore/{topic}/{args.format.lower()}"
    _ensure_backup(store, bucket, prefix, topic, args.format, records)

    ceiling_topic = f"bench-ceiling-{uuid.uuid4().hex[:8]}"
    ceiling_wall, _, _ = run_measured(
        [sys.executable, "-c", _CEILING, ceiling_topic, str(records), str(VALUE_SIZE)]
    )
    drop_topic(ceiling_topic)

    target = f"bench-restored-{uuid.uuid4().hex[:8]}"
    kcql = f"INSERT INTO `{target}` SELECT * FROM {bucket}:{prefix}"
    rows = []
    for workers in [int(w) for w in args.workers.split(",")]:
        for label, extra in (("produce + check", []), ("produce only, --no-check", ["--no-check"])):
            name = f"{target}-{len(rows)}"
            wall, rss, _ = run_measured(
                [
                    sys.executable,
                    "-m",
                    "kbackup.cli",
                    "restore",
                    "--kcql",
                    kcql.replace(target, name),
                    "--task-runner",
                    args.task_runner,
                    "--concurrency",
                    str(workers),
                    *extra,
                ]
            )
            restored = raw_consume(name)  # the high watermarks also count transaction markers
            drop_topic(name)
            if restored != records:
                raise RuntimeError(f"restore into {name} wrote {restored} of {records} records")
            rows.append((f"restore ({label}), {workers} worker{'s' if workers > 1 else ''}", wall, rss))
    ceiling_rate = records / ceiling_wall
    lines = [
        f"{records:,} records of {VALUE_SIZE} B (+ 3 headers) over {PARTITIONS} partitions, {args.format} envelope "
        f"backup; {machine()}; `--task-runner {args.task_runner}`; broker and S3 on loopback. Ratio = records/s "
        "÷ the ceiling's records/s; peak RSS is that of the restore's whole process tree. Wall time includes "
        "process start and a temporary Prefect API.",
        "",
        "| run | seconds | records/s | MB/s | ratio to ceiling | peak RSS |",
        "|---|---|---|---|---|---|",
        f"| ceiling: plain idempotent producer, same records | {ceiling_wall:.1f} | {ceiling_rate:,.0f} | "
        f"{data_bytes / 1e6 / ceiling_wall:.1f} | 1.00 | |",
    ]
    for label, wall, rss in rows:
        lines.append(
            f"| {label} | {wall:.1f} | {records / wall:,.0f} | {data_bytes / 1e6 / wall:.1f} | "
            f"{(records / wall) / ceiling_rate:.2f} | {rss / 1e6:.0f} MB |"
        )
    table = "\n".join(lines)
    print(table)
    print(json.dumps({"records": records, "ceiling_s": ceiling_wall, "runs": rows}))
    if not args.no_readme:
        write_section("Restore", table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
