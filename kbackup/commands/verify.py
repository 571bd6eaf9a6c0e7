"""`kbackup verify s3://bucket/prefix [--deep]`: check backups against their manifests."""

from __future__ import annotations

import argparse

from kbackup.cli import EXIT_OK, failed_run
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
    from flows.verify import VerifyParameters, verify_flow

    bucket, prefix = parse_s3_url(args.location)  # a LocationError is reported by kbackup.cli
    params = VerifyParameters(bucket=bucket, prefix=prefix, deep=args.deep, backup_id=args.backup_id)
    state = verify_flow(params, return_state=True)
    if not state.is_completed():
        return failed_run("verify", state, "the verification")
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
