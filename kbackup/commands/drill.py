"""`kbackup drill s3://bucket/prefix [--point ID] [--partitions 0,1] [--concurrency N]`: run a restore
drill here and now — restore a restore point into scratch topics, check it against the manifests,
time it, remove the scratch topics — and print its result per topic and where its evidence is.
Exit 0 when the drill passed, 1 when it failed, 2 on bad input."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from kbackup.cli import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_OK,
    add_concurrency_argument,
    add_credentials_block_arguments,
    add_task_runner_argument,
    failed_run,
    invalid_parameters,
)
from kbackup.console import parse_s3_url, progress_bar, table

if TYPE_CHECKING:
    from layout.drills import DrillEvidence


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "drill", help="prove a backup restores: restore it into scratch topics, check, time, clean up"
    )
    parser.add_argument("location", help="s3://bucket/prefix of the backups")
    parser.add_argument(
        "--point", help="the restore point: a backup id from kbackup ls (default: the newest)"
    )
    parser.add_argument(
        "--partitions", help="a sample: these partitions of every topic, e.g. 0,1 (default: all)"
    )
    add_concurrency_argument(parser, "units of partitions restored")
    add_task_runner_argument(parser)
    add_credentials_block_arguments(parser)
    parser.set_defaults(handler=run)


def _print(evidence: DrillEvidence) -> None:
    from layout.drills import drill_key
    from tasks.lifecycle.drill import topic_rows

    print(table(topic_rows(evidence)))
    print(
        f"restore drill {evidence.drill_id} of restore point {evidence.backup_id}: {evidence.result}; "
        f"{evidence.records} records in {evidence.seconds:.2f} s ({evidence.records_per_second:.0f} records/s) "
        f"on {evidence.cluster}; scratch topics removed: {len(evidence.cleanup.deleted_topics)}"
    )
    for problem in evidence.cleanup.problems:
        print(f"not removed: {problem}")
    print(f"evidence: s3://{evidence.bucket}/{drill_key(evidence.prefix, evidence.drill_id)}")


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from flows.drill import DrillFailed, DrillParameters, drill_flow
    from kcql.properties import partition_list
    from kcql.selection import parse_override

    bucket, prefix = parse_s3_url(args.location)  # a LocationError is reported by kbackup.cli
    try:
        params = DrillParameters(
            bucket=bucket,
            prefix=prefix,
            point=args.point,
            partitions=list(parse_override("--partitions", args.partitions, partition_list))
            if args.partitions
            else None,
            concurrency=args.concurrency,
            task_runner=args.task_runner,
            s3_credentials_block=args.s3_credentials_block,
            kafka_password_block=args.kafka_password_block,
        )
    except ValidationError as exc:
        print(f"kbackup drill: {invalid_parameters(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ValueError as exc:  # --partitions (an OverrideError)
        print(f"kbackup drill: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    with progress_bar():
        state = drill_flow(params, return_state=True)
    if not state.is_completed():
        failure = state.result(raise_on_failure=False)
        if isinstance(failure, DrillFailed):  # with its evidence: the table, then the problem
            _print(failure.evidence)
            print(f"kbackup drill: {failure}", file=sys.stderr)
            return EXIT_FAILED
        return failed_run("drill", state, "the drill", "the drill failed: ")
    _print(state.result())
    return EXIT_OK
