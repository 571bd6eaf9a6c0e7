"""`kbackup backup --kcql … | --connector-config FILE`: run the backup flow here and now."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.errors import KbackupError
from kbackup.cli import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_OK,
    add_task_runner_argument,
    invalid_parameters,
    report_error,
)
from kbackup.console import human_bytes, progress_bar, table


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("backup", help="back up topics to S3 as the KCQL says")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--kcql", help="KCQL statements (INSERT INTO bucket[:prefix] SELECT * FROM topic …)")
    source.add_argument("--connector-config", type=Path, help="a Kafka Connect S3 sink .properties file")
    parser.add_argument(
        "--verify", choices=["quick", "sampled", "full"], default="sampled", help="verification depth"
    )
    parser.add_argument("--concurrency", type=int, default=4, help="partitions exported at once (default 4)")
    add_task_runner_argument(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from flows.backup import BackupParameters, backup_flow, specs_and_transforms

    try:
        config_text = args.connector_config.read_text() if args.connector_config else None
        params = BackupParameters(
            kcql=args.kcql,
            connector_config=config_text,
            verify=args.verify,
            concurrency=args.concurrency,
            task_runner=args.task_runner,
        )
        specs_and_transforms(params)  # bad input is reported here, before any flow runs
    except OSError as exc:  # the connector config file
        print(f"kbackup backup: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ValidationError as exc:  # the parameters' own checks
        print(f"kbackup backup: {invalid_parameters(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    with progress_bar():
        state = backup_flow(**params.model_dump(), return_state=True)
    if not state.is_completed():
        try:
            state.result()  # raises what failed the run; anything but a KbackupError is a bug
        except KbackupError as error:
            return report_error("backup", error, "the backup failed: ")
        print(f"kbackup backup: the backup ended {state.name}", file=sys.stderr)
        return EXIT_FAILED
    for result in state.result():
        manifest = result.manifest
        print(f"backup {manifest.backup_id} → {result.manifest_key}")
        rows = [
            {
                "topic": p.topic,
                "partition": p.partition,
                "offsets": f"{p.start_offset}-{p.end_offset}",
                "records": p.record_count,
                "objects": len(p.objects),
                "bytes": human_bytes(p.byte_count),
                "gaps": len(p.gaps),
            }
            for p in manifest.partitions
        ]
        print(table(rows))
        print(
            f"{manifest.record_count} records, {human_bytes(manifest.byte_count)}, verified ({result.verification.depth}); "
            f"previous backup: {manifest.previous_backup_id or 'none'}"
        )
    return EXIT_OK
