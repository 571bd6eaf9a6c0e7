"""`kbackup status s3://bucket/prefix [--json]`: per topic, how old the newest restore point is
(the recovery point objective as it stands), how old the newest backed-up record is, the lag the
last backup left behind, the last restore drill and how many ACL bindings, principals and SCRAM
users of the topic the newest restore point captured ("not captured" without them) — read from the
bucket, no Prefect API."""

from __future__ import annotations

import argparse
import sys

from kbackup.cli import EXIT_FAILED, EXIT_OK
from kbackup.console import parse_s3_url, table


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "status", help="per topic: age of the newest restore point and record, lag, last drill, access rules"
    )
    parser.add_argument("location", help="s3://bucket/prefix")
    parser.add_argument(
        "--json", action="store_true", help="print the status as JSON (ages in seconds, times in ISO 8601)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from layout.status import status_rows
    from tasks.backup.status import read_status
    from tasks.services.object_store import open_store

    # A KbackupError (a bad location, a missing bucket, a bad manifest) is reported by kbackup.cli.
    bucket, prefix = parse_s3_url(args.location)
    status = read_status(open_store(), bucket, prefix)
    if args.json:
        print(status.model_dump_json(indent=2))
    elif status.topics:
        print(table(status_rows(status)))
    if not status.topics:
        # like a missing bucket: nothing there to restore is a failure to report
        print(f"kbackup status: no backup under s3://{bucket}/{prefix}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
