"""`kbackup backup --kcql … | --connector-config FILE`: run the backup flow here and now."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from kbackup.cli import (
    EXIT_BAD_INPUT,
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
    from tasks.backup.report import BackupResult


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("backup", help="back up topics to S3 as the KCQL says")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--kcql", help="KCQL statements (INSERT INTO bucket[:prefix] SELECT * FROM topic …)")
    source.add_argument("--connector-config", type=Path, help="a Kafka Connect S3 sink .properties file")
    parser.add_argument(
        "--verify", choices=["quick", "sampled", "full"], default="sampled", help="verification depth"
    )
    add_concurrency_argument(parser, "work units of partitions exported")
    parser.add_argument(
        "--full", action="store_true", help="a full backup: start a new chain from the earliest offsets"
    )
    add_task_runner_argument(parser)
    add_full_table_argument(parser)
    add_credentials_block_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from flows.backup import BackupParameters, backup_flow, specs_and_transforms

    if not (args.kcql or args.connector_config):  # an empty --kcql: the flow would read the Variable
        print("kbackup backup: --kcql is empty", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        config_text = args.connector_config.read_text() if args.connector_config else None
        params = BackupParameters(
            kcql=args.kcql,
            connector_config=config_text,
            verify=args.verify,
            concurrency=args.concurrency,
            task_runner=args.task_runner,
            full=args.full,
            s3_credentials_block=args.s3_credentials_block,
            kafka_password_block=args.kafka_password_block,
        )
        specs_and_transforms(params)  # bad input is reported here, before any flow runs
    except OSError as exc:  # the connector config file
        print(f"kbackup backup: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ValidationError as exc:  # the parameters' own checks
        print(f"kbackup backup: {invalid_parameters(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    with progress_bar():
        state = backup_flow(params, return_state=True)
    if not state.is_completed():
        return failed_run("backup", state, "the backup", "the backup failed: ")
    print_results(state.result(), full_table=args.full_table)
    return EXIT_OK


def print_results(results: Sequence[BackupResult], full_table: bool = False) -> None:
    """Each statement's backup as the flow run's artifacts have it: the partition table (past
    MANY_ROWS partitions, unless `full_table`, per-topic totals and the slowest and largest), then
    the summary."""
    from tasks.backup.report import condensed_rows, partition_rows, summary

    for number, result in enumerate(results):
        if number:
            print()
        where = f"slowest, largest; all in the manifest {result.manifest_key}, --full-table prints them"
        print(long_table(partition_rows(result), None if full_table else condensed_rows(result), where))
        print(summary(result))
