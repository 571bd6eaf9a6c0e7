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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    PARTITIONS,
    VALUE_SIZE,
    bench_topic_name,
    ensure_topic,
    machine,
    measured_backup,
    run_measured,
    scratch_bucket,
    write_section,
)


def _backup(
    store: object, topic: str, fmt: str, runner: str, workers: int, records: int
) -> tuple[float, int]:
    """One backup in its own process into a bucket of its own: (wall seconds, peak tree RSS).
    Raises unless its manifest holds all `records` records."""
    options = ["--verify", "quick", "--task-runner", runner, "--concurrency", str(workers)]
    with scratch_bucket(store) as bucket:
        wall, rss, _ = measured_backup(
            store, [sys.executable, "-m", "kbackup.cli"], bucket, "", topic, fmt, records, options
        )
    return wall, rss


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the full data sets")
    parser.add_argument("--workers", default="1,2", help="worker counts (the runner's max workers)")
    parser.add_argument("--task-runner", default="processes")
    parser.add_argument("--formats", default="PARQUET,AVRO")
    parser.add_argument("--no-readme", action="store_true", help="print the table only")
    args = parser.parse_args()
    from tasks.services.object_store import S3Store

    store = S3Store.from_settings()
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
                wall, rss = _backup(store, topic, fmt, args.task_runner, count, records)
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
