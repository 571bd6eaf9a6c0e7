"""`kbackup prune s3://bucket/prefix --keep-within 30d [--keep-last N] [--dry-run]`: delete the
backups a retention policy drops, keeping every kept restore point restorable."""

from __future__ import annotations

import argparse
import sys

from kbackup.cli import EXIT_BAD_INPUT, EXIT_OK, failed_run, invalid_parameters
from kbackup.console import parse_s3_url


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("prune", help="delete the backups a retention policy drops")
    parser.add_argument("location", help="s3://bucket/prefix")
    parser.add_argument(
        "--keep-within", metavar="DURATION", help="keep restore points younger than this: 30d, 12h"
    )
    parser.add_argument("--keep-last", metavar="N", type=int, help="keep the newest N restore points")
    parser.add_argument("--dry-run", action="store_true", help="say what would be deleted; delete nothing")
    parser.add_argument(
        "--s3-credentials-block", metavar="NAME", help="name of a prefect-aws AwsCredentials block for S3"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from flows.prune import PruneParameters, prune_flow
    from tasks.lifecycle.prune import summary

    bucket, prefix = parse_s3_url(args.location)  # a LocationError is reported by kbackup.cli
    try:
        params = PruneParameters(
            bucket=bucket,
            prefix=prefix,
            keep_last=args.keep_last,
            keep_within=args.keep_within,
            dry_run=args.dry_run,
            s3_credentials_block=args.s3_credentials_block,
        )
        params.keep_within_seconds("--keep-within")  # a bad duration is reported here, before any flow runs
    except ValidationError as exc:
        print(f"kbackup prune: {invalid_parameters(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    state = prune_flow(params, return_state=True)
    if not state.is_completed():
        return failed_run("prune", state, "the prune", "the prune failed: ")
    print(summary(state.result()))
    return EXIT_OK
