"""`kbackup restore --kcql "INSERT INTO target SELECT * FROM bucket:prefix …"`: run the restore flow
here and now. Exit 0 on success, 1 on a failed run, 2 on bad input (KCQL errors show the caret)."""

from __future__ import annotations

import argparse
import shlex
import sys

from kbackup.cli import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, add_task_runner_argument
from kbackup.console import human_bytes, progress_bar, table


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("restore", help="restore topics from an S3 backup as the KCQL says")
    parser.add_argument("--kcql", required=True, help="INSERT INTO topic SELECT * FROM bucket[:prefix] …")
    parser.add_argument("--target", help="target topic (overrides the statement's)")
    parser.add_argument("--from", dest="restore_from", help="window start: ISO-8601 time or offset:N")
    parser.add_argument("--to", dest="restore_to", help="window end (exclusive): ISO-8601 time or offset:N")
    parser.add_argument("--partitions", help="source partitions, e.g. 0,2,5")
    parser.add_argument("--filter", help="partition-key values, e.g. region=EMEA")
    parser.add_argument("--group-prefix", default="", help="prefix for translated consumer-group names")
    parser.add_argument("--no-groups", action="store_true", help="do not translate consumer-group offsets")
    parser.add_argument(
        "--no-check", action="store_true", help="skip consuming the restored records to compare digests"
    )
    parser.add_argument("--dry-run", action="store_true", help="plan and report only")
    parser.add_argument("--concurrency", type=int, default=4, help="partitions restored at once (default 4)")
    add_task_runner_argument(parser)
    parser.add_argument(
        "--no-flow", action="store_true", help="run the steps as plain functions, without a Prefect flow run"
    )
    parser.set_defaults(handler=run)


def _print_report(report: object) -> None:
    from flows.restore import RestoreReport

    assert isinstance(report, RestoreReport)
    rows = [
        {
            "unit": u.unit,
            "source": u.source,
            "target": u.target,
            "status": u.status,
            "records": u.records,
            "resumed": u.resumed_after,
            "objects": u.objects,
            "bytes": human_bytes(u.bytes),
            "MB/s": u.mb_per_s if u.mb_per_s is not None else "",
            "error": u.error or "",
        }
        for u in report.units
    ]
    print(
        f"restore {report.restore_id}{' (dry run)' if report.dry_run else ''} from s3://{report.bucket}/{report.prefix}"
    )
    print(table(rows))
    checked = [c for c in report.checks if c.ok]
    print(
        f"{report.records} records, {human_bytes(report.bytes)} in {report.seconds:.1f} s; "
        f"checked {len(checked)}/{len(report.checks)} partitions"
    )
    for group in report.groups:
        print(
            f"group {group.group}: {group.topic}/{group.partition} {group.source_offset} → {group.target_offset}"
        )
    print(f"pre-flight: {report.preflight}")
    for note in report.notes:
        print(f"note: {note}")


def _print_failure(report: object, cause: BaseException) -> None:
    """The report, then what is committed where and the exact command that resumes."""
    from flows.restore import RestoreReport

    assert isinstance(report, RestoreReport)
    _print_report(report)
    if report.progress:
        print("committed in the target:")
        for progress in report.progress:
            print(f"  {progress.describe()}")
    print(f"kbackup restore: the restore failed: {cause}", file=sys.stderr)
    if report.resume:
        print(f"kbackup restore: {report.resume}", file=sys.stderr)
        print(f"kbackup restore: resume with: {shlex.join(['kbackup', *sys.argv[1:]])}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from flows.restore import RestoreFailed, RestoreParameters, restore_flow, run_restore, selection_of
    from kcql import KcqlError

    try:
        params = RestoreParameters(
            kcql=args.kcql,
            target=args.target,
            restore_from=args.restore_from,
            restore_to=args.restore_to,
            partitions=[int(p) for p in args.partitions.split(",") if p.strip()] if args.partitions else None,
            filter=args.filter,
            group_prefix=args.group_prefix,
            translate_groups=not args.no_groups,
            dry_run=args.dry_run,
            check=not args.no_check,
            concurrency=args.concurrency,
            task_runner=args.task_runner,
        )
        selection_of(params)  # bad input is reported here, before any flow runs
    except (KcqlError, ValueError) as exc:
        print(f"kbackup restore: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.no_flow:
        try:
            with progress_bar():
                report = run_restore(params)
        except RestoreFailed as failed:
            _print_failure(failed.report, failed.cause)
            return EXIT_FAILED
        except Exception as exc:  # noqa: BLE001 - report whatever failed the run
            print(f"kbackup restore: the restore failed: {exc}", file=sys.stderr)
            return EXIT_FAILED
        _print_report(report)
        return EXIT_OK
    with progress_bar():
        state = restore_flow(params, return_state=True)
    if not state.is_completed():
        try:
            state.result()
        except RestoreFailed as failed:
            _print_failure(failed.report, failed.cause)
        except Exception as exc:  # noqa: BLE001 - report whatever failed the run
            print(f"kbackup restore: the restore failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    _print_report(state.result())
    return EXIT_OK
