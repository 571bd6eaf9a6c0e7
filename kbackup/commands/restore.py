"""`kbackup restore --kcql "INSERT INTO target SELECT * FROM bucket:prefix …"`: run the restore flow
here and now. Exit 0 on success, 1 on a failed run, 2 on bad input (KCQL errors show the caret)."""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import TYPE_CHECKING

from kbackup.cli import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_OK,
    add_concurrency_argument,
    add_credentials_block_arguments,
    add_full_table_argument,
    add_task_runner_argument,
    failed_run,
    invalid_parameters,
)
from kbackup.console import long_table, progress_bar

if TYPE_CHECKING:
    from tasks.restore.report import RestoreReport


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("restore", help="restore topics from an S3 backup as the KCQL says")
    parser.add_argument("--kcql", required=True, help="INSERT INTO topic SELECT * FROM bucket[:prefix] …")
    parser.add_argument("--target", help="target topic (overrides the statement's)")
    parser.add_argument("--from", dest="restore_from", help="window start: ISO-8601 time or offset:N")
    parser.add_argument("--to", dest="restore_to", help="window end (exclusive): ISO-8601 time or offset:N")
    parser.add_argument("--partitions", help="source partitions, e.g. 0,2,5")
    parser.add_argument("--filter", help="partition-key values, e.g. region=EMEA")
    parser.add_argument(
        "--point", help="the restore point: a backup id from kbackup ls (default: the newest)"
    )
    parser.add_argument("--group-prefix", default="", help="prefix for translated consumer-group names")
    parser.add_argument("--no-groups", action="store_true", help="do not translate consumer-group offsets")
    parser.add_argument(
        "--acls",
        nargs="?",
        const="literal",
        choices=("literal", "all"),
        help="recreate the backup's ACL bindings after the records (restore.acls): the literal ones of the "
        "restored topics and groups, renamed; 'all': also prefixed and wildcard ones as recorded",
    )
    parser.add_argument(
        "--users",
        action="store_true",
        help="create the backup's SCRAM users missing on the target (restore.users), with passwords from "
        "--users-secret-block or KBACKUP_RESTORE_USER_PASSWORDS (JSON user → password)",
    )
    parser.add_argument(
        "--users-secret-block",
        metavar="NAME",
        help="a Prefect Secret block holding JSON user → password for --users (its name, never a secret)",
    )
    parser.add_argument(
        "--no-check", action="store_true", help="skip consuming the restored records to compare digests"
    )
    parser.add_argument("--dry-run", action="store_true", help="plan and report only")
    add_concurrency_argument(parser, "units of partitions restored")
    add_task_runner_argument(parser)
    add_full_table_argument(parser)
    add_credentials_block_arguments(parser)
    parser.set_defaults(handler=run)


# The overrides' flags, as errors in their values name them.
FLAGS = {
    "target": "--target",
    "restore_from": "--from",
    "restore_to": "--to",
    "filter": "--filter",
    "acls": "--acls",
}


def _print_report(report: RestoreReport, full_table: bool) -> None:
    """The report as the flow's artifacts have it: the unit table (past MANY_ROWS units, unless
    `full_table`, per-topic totals, the failed, slowest and largest units), then the summary."""
    from tasks.restore.report import condensed_rows, summary, unit_rows

    short = None if full_table else condensed_rows(report)
    print(long_table(unit_rows(report), short, "failed, slowest, largest; --full-table prints all", "units"))
    print(summary(report, full=full_table))


def _print_failure(report: RestoreReport, cause: BaseException, full_table: bool) -> None:
    """The report (with what is committed where), then the cause and the exact command that resumes."""
    _print_report(report, full_table)
    print(f"kbackup restore: the restore failed: {cause}", file=sys.stderr)
    if report.resume:
        print(f"kbackup restore: {report.resume}", file=sys.stderr)
        print(f"kbackup restore: resume with: {shlex.join(['kbackup', *sys.argv[1:]])}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from flows.restore import RestoreFailed, RestoreParameters, restore_flow, selection_of
    from kcql.properties import partition_list
    from kcql.selection import parse_override

    try:
        params = RestoreParameters(
            kcql=args.kcql,
            target=args.target,
            restore_from=args.restore_from,
            restore_to=args.restore_to,
            partitions=list(parse_override("--partitions", args.partitions, partition_list))
            if args.partitions
            else None,
            filter=args.filter,
            point=args.point,
            group_prefix=args.group_prefix,
            translate_groups=not args.no_groups,
            acls=args.acls,
            users=args.users,
            users_secret_block=args.users_secret_block,
            dry_run=args.dry_run,
            check=not args.no_check,
            concurrency=args.concurrency,
            task_runner=args.task_runner,
            s3_credentials_block=args.s3_credentials_block,
            kafka_password_block=args.kafka_password_block,
        )
        selection_of(params, FLAGS)  # bad input is reported here, before any flow runs
    except ValidationError as exc:  # the parameters' own checks
        print(f"kbackup restore: {invalid_parameters(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ValueError as exc:  # the statement or an override (KcqlError), or several statements
        print(f"kbackup restore: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    with progress_bar():
        state = restore_flow(params, return_state=True)
    if not state.is_completed():
        failure = state.result(raise_on_failure=False)
        if isinstance(failure, RestoreFailed):  # with its report: what is committed, how to resume
            _print_failure(failure.report, failure.cause, args.full_table)
            return EXIT_FAILED
        return failed_run("restore", state, "the restore", "the restore failed: ")
    _print_report(state.result(), args.full_table)
    return EXIT_OK
