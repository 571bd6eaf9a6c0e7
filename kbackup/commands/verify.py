"""`kbackup verify s3://bucket/prefix [--deep]`: check backups against their manifests."""

from __future__ import annotations

import argparse
import sys

from kbackup.cli import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from kbackup.console import parse_s3_url, table


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("verify", help="check the backups under a prefix against their manifests")
    parser.add_argument("location", help="s3://bucket/prefix")
    parser.add_argument(
        "--deep", action="store_true", help="decode every object and recompute the records digests"
    )
    parser.add_argument("--backup-id", help="verify this backup only")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from flows.verify import verify_flow

    try:
        bucket, prefix = parse_s3_url(args.location)
    except ValueError as exc:
        print(f"kbackup verify: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    state = verify_flow(bucket, prefix, args.deep, args.backup_id, return_state=True)
    if not state.is_completed():
        try:
            state.result()
        except Exception as exc:  # noqa: BLE001
            print(f"kbackup verify: {exc}", file=sys.stderr)
        return EXIT_FAILED
    reports = state.result()
    print(
        table(
            [
                {
                    "backup": r.backup_id,
                    "depth": r.depth,
                    "objects": r.objects_checked,
                    "decoded": r.objects_decoded,
                    "records": r.records_decoded,
                    "problems": len(r.problems),
                }
                for r in reports
            ]
        )
    )
    print(f"OK: {len(reports)} backup(s) verified")
    return EXIT_OK
