"""`kbackup ls s3://bucket/prefix`: the backups under a prefix, their windows, topics and sizes."""

from __future__ import annotations

import argparse

from kbackup.cli import EXIT_OK
from kbackup.console import human_bytes, parse_s3_url, table


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("ls", help="list the backups under a prefix")
    parser.add_argument("location", help="s3://bucket/prefix")
    parser.add_argument("--objects", action="store_true", help="also list every object of every backup")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from tasks.manifest_store import read_chain
    from tasks.s3 import check_bucket, s3_client

    # A KbackupError (a bad location, a missing bucket, a bad manifest) is reported by kbackup.cli.
    bucket, prefix = parse_s3_url(args.location)
    s3 = s3_client()
    check_bucket(s3, bucket)
    manifests = read_chain(s3, bucket, prefix)
    rows = []
    for m in manifests:
        windows = ", ".join(
            f"{p.topic}/{p.partition}:{p.start_offset}-{p.end_offset}" for p in m.partitions[:4]
        )
        more = f" (+{len(m.partitions) - 4})" if len(m.partitions) > 4 else ""
        rows.append(
            {
                "backup": m.backup_id,
                "previous": m.previous_backup_id or "-",
                "finished": m.finished_at.strftime("%Y-%m-%d %H:%M:%S"),
                "format": m.format,
                "topics": ",".join(t.name for t in m.topics),
                "records": m.record_count,
                "size": human_bytes(m.byte_count),
                "windows": windows + more,
            }
        )
    print(table(rows))
    if args.objects and manifests:
        objects = [
            {
                "backup": m.backup_id,
                "object": f"s3://{bucket}/{o.key}",
                "offsets": f"{o.first_offset}-{o.last_offset}",
                "records": o.record_count,
                "size": human_bytes(o.size),
            }
            for m in manifests
            for p in m.partitions
            for o in p.objects
        ]
        print()
        print(table(objects))
    return EXIT_OK
