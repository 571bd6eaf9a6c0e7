"""Backup throughput against the raw consume ceiling on the same broker, in the same run.

    python bench/backup.py [--scale 1.0] [--workers 1,2] [--task-runner processes]

Data sets (at scale 1): 1M records of 1 KB for every format at each worker count, and 3M records
of 1 KB for PARQUET (peak memory must not grow with the record count); 6 partitions, 3 headers
each. Each backup runs in its own process (`python -m kbackup.cli backup`); peak RSS is that of
its whole process tree (the CLI, its temporary Prefect API and the task runner's workers). Every
run is checked: its manifest must hold every record of the topic.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    PARTITIONS,
    bench_topic_name,
    drop_bucket,
    ensure_topic,
    machine,
    run_measured,
    write_section,
)

VALUE_SIZE = 1024


def _backup(s3: object, topic: str, fmt: str, runner: str, workers: int) -> tuple[float, int, int]:
    """One backup in its own process: (wall seconds, peak tree RSS, records in its manifest)."""
    from tasks.manifest_store import latest_manifest

    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    kcql = f"INSERT INTO {bucket} SELECT * FROM `{topic}` STOREAS {fmt} PROPERTIES('store.envelope'=true)"
    wall, rss, _ = run_measured(
        [
            sys.executable,
            "-m",
            "kbackup.cli",
            "backup",
            "--kcql",
            kcql,
            "--verify",
            "quick",
            "--task-runner",
            runner,
            "--concurrency",
            str(workers),
        ]
    )
    manifest = latest_manifest(s3, bucket, "")
    drop_bucket(s3, bucket)
    return wall, rss, manifest.record_count if manifest else 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the full data sets")
    parser.add_argument("--workers", default="1,2", help="worker counts (the runner's max workers)")
    parser.add_argument("--task-runner", default="processes")
    parser.add_argument("--formats", default="PARQUET,AVRO")
    parser.add_argument("--no-readme", action="store_true", help="print the table only")
    args = parser.parse_args()
    from tasks.s3 import s3_client

    s3 = s3_client()
    workers = [int(w) for w in args.workers.split(",")]
    formats = args.formats.split(",")
    plans = [(int(1_000_000 * args.scale), formats), (int(3_000_000 * args.scale), formats[:1])]
    rows = []
    for records, plan_formats in plans:
        topic = bench_topic_name(records, VALUE_SIZE)
        data_bytes = ensure_topic(topic, records, VALUE_SIZE)
        wall, rss, out = run_measured(
            [sys.executable, "-c", f"from bench.common import raw_consume; print(raw_consume({topic!r}))"]
        )
        assert int(out.strip()) == records, out
        ceiling = records / wall
        data = f"{records:,} × {VALUE_SIZE} B"
        rows.append((data, "raw consume (ceiling)", "1", wall, ceiling, data_bytes / wall / 1e6, rss, 1.0))
        for fmt in plan_formats:
            for count in workers:
                wall, rss, backed_up = _backup(s3, topic, fmt, args.task_runner, count)
                if backed_up != records:
                    raise RuntimeError(
                        f"backup {fmt} of {topic}: its manifest holds {backed_up} of {records} records"
                    )
                rate = records / wall
                rows.append(
                    (
                        data,
                        f"backup {fmt}",
                        str(count),
                        wall,
                        rate,
                        data_bytes / wall / 1e6,
                        rss,
                        rate / ceiling,
                    )
                )
    table = [
        "| data | run | workers | wall s | records/s | MB/s | peak RSS MB (process tree) | ratio to ceiling |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    table += [
        f"| {d} | {r} | {w} | {wall:.1f} | {rps:,.0f} | {mbs:.1f} | {rss / 1e6:.0f} | {ratio:.0%} |"
        for d, r, w, wall, rps, mbs, rss, ratio in rows
    ]
    body = (
        f"Machine: {machine()}; {PARTITIONS} partitions, 3 headers per record, `--task-runner {args.task_runner}`, "
        f"verification `quick`, scale {args.scale}. Wall time includes process start and the flow's Prefect "
        "overhead (a temporary API); the ceiling is one Python process consuming every partition "
        "(bench/common.py raw_consume), measured in the same run.\n\n" + "\n".join(table)
    )
    if not args.no_readme:
        write_section("Backup", body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
