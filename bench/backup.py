"""Backup throughput against the raw consume ceiling on the same broker, in the same run.

    python bench/backup.py [--scale 1.0]

Data sets (at scale 1): 1M records of 1 KB and 2M of 100 B, 6 partitions, 3 headers each.
Each backup runs in its own process (`kbackup backup`), so peak RSS is that of one backup.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import PARTITIONS, bench_topic_name, ensure_topic, machine, run_measured, write_section  # noqa: E402

FORMATS = ["PARQUET", "AVRO", "JSON"]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the full data sets")
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    from tasks.s3 import s3_client

    s3 = s3_client()
    rows = []
    for records, size in ((int(1_000_000 * args.scale), 1024), (int(2_000_000 * args.scale), 100)):
        topic = bench_topic_name(records, size)
        data_bytes = ensure_topic(topic, records, size)
        wall, rss, out = run_measured(
            [sys.executable, "-c", f"from bench.common import raw_consume; print(raw_consume({topic!r}))"]
        )
        assert int(out.strip()) == records, out
        ceiling = records / wall
        rows.append(
            (
                f"{records:,} × {size} B",
                "raw consume (ceiling)",
                wall,
                records / wall,
                data_bytes / wall / 1e6,
                rss,
                1.0,
            )
        )
        for fmt in FORMATS:
            bucket = f"bench-{uuid.uuid4().hex[:8]}"
            s3.create_bucket(Bucket=bucket)
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
                    "--concurrency",
                    str(args.concurrency),
                ]
            )
            rows.append(
                (
                    f"{records:,} × {size} B",
                    f"backup {fmt}",
                    wall,
                    records / wall,
                    data_bytes / wall / 1e6,
                    rss,
                    records / wall / ceiling,
                )
            )
    table = [
        "| data | run | wall s | records/s | MB/s | peak RSS MB | ratio to ceiling |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    table += [
        f"| {d} | {r} | {w:.1f} | {rps:,.0f} | {mbs:.1f} | {rss / 1e6:.0f} | {ratio:.0%} |"
        for d, r, w, rps, mbs, rss, ratio in rows
    ]
    body = (
        f"Machine: {machine()}; {PARTITIONS} partitions, 3 headers per record, `--concurrency {args.concurrency}`, "
        f"verification `quick`, scale {args.scale}. Wall time includes process start and the flow's "
        "Prefect overhead (ephemeral API).\n\n" + "\n".join(table)
    )
    write_section("Backup", body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
