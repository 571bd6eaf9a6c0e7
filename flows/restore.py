"""The restore flow: selection → discover the objects (plan) → the access diff and its permission
check (restore.acls / restore.users only) → prepare the targets → restore each unit, exactly once
and resumable → check → translate consumer groups → create the access rules → report.

Composition only. The statement and the parameters' overrides are parsed once (kcql/selection.py,
through flows/parameters.py); the work is in tasks/restore/ (the check where several units share a
target partition in check.py, the report, its rendering and RestoreFailed in report.py).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger

from core.connections import credential_blocks
from flows.parameters import RestoreParameters, selection_of
from tasks.restore.access import access_diff_task, apply_access_task
from tasks.restore.check import PartitionCheck, check_restored, committed_progress_task
from tasks.restore.discover import plan_restore_task
from tasks.restore.errors import RestoreCheckError
from tasks.restore.groups import translate_groups_task
from tasks.restore.produce import UnitResult
from tasks.restore.report import (
    RestoreFailed,
    RestoreReport,
    planned_units,
    publish,
    restore_report,
    substitution_notes,
    target_progress,
    unit_reports,
)
from tasks.restore.target import prepare_targets_task, schemas_to_register
from tasks.restore.work import restore_units
from tasks.runtime.run_dir import run_dir
from tasks.runtime.shutdown import stop_tasks_when_terminated
from tasks.runtime.task_runners import shared_runners
from tasks.services.schema_registry import register_schemas_task

__all__ = [
    "RestoreFailed",
    "RestoreParameters",
    "RestoreReport",
    "restore_flow",
    "run_restore",
    "selection_of",
]


@flow(name="restore", log_prints=True)
def restore_flow(params: RestoreParameters) -> RestoreReport:
    """Restore Kafka topics from an S3 backup as the KCQL says, exactly once and resumable."""
    logger = get_run_logger()
    try:
        blocks = credential_blocks(params.s3_credentials_block, params.kafka_password_block)
        with run_dir(), stop_tasks_when_terminated(), blocks:
            report = run_restore(params)
    except RestoreFailed as failed:
        publish(failed.report)
        raise
    for note in report.notes:
        logger.warning(note)
    publish(report)
    targets = ", ".join(t.name for t in report.targets)
    logger.info("restore %s: %s records into %s", report.restore_id, report.records, targets)
    return report


def run_restore(params: RestoreParameters) -> RestoreReport:
    """The restore's body, in the caller's run directory and credential blocks (the restore
    flow's, the drill's: flows/drill.py). The report, or RestoreFailed (with the report and the first failure as `cause`) when a
    partition or a check failed. Errors found before anything is produced (bad input, a missing
    manifest or object, too few target partitions) are raised as themselves."""
    started_at, started = datetime.now(UTC), time.monotonic()
    plan = plan_restore_task(selection_of(params))
    # before anything is created: a principal that may not create the access rules fails here
    access = access_diff_task(plan, params.users_secret_block) if plan.acls != "off" or plan.users else None
    targets = prepare_targets_task(plan, params.dry_run)

    def report(units: Any, **outcome: Any) -> RestoreReport:
        seconds = time.monotonic() - started
        outcome.setdefault("access", access)
        return restore_report(
            plan, targets, units, dry_run=params.dry_run, started_at=started_at, seconds=seconds, **outcome
        )

    if params.dry_run:
        return report(planned_units(plan))
    if schemas := schemas_to_register(plan):  # each record's schema id is rewritten as it is produced
        mapping = register_schemas_task(plan.schema_registry_url, schemas)
        changes = ", ".join(f"{old} → {new}" for old, new in sorted(mapping.items()))
        get_run_logger().info(
            "schemas registered in the target registry (source id → target id): %s", changes
        )
        plan = plan.model_copy(update={"schema_id_map": mapping})
    with shared_runners():  # the check's tasks start in the work units' worker processes
        outcomes = restore_units(plan, targets, choice=params.task_runner, concurrency=params.concurrency)
        units = unit_reports(plan, outcomes)
        results = [o for o in outcomes if isinstance(o, UnitResult)]
        notes = substitution_notes(results)
        failed = [(u, o) for u, o in zip(plan.units, outcomes, strict=True) if isinstance(o, BaseException)]
        if failed:
            read = committed_progress_task(plan, [unit for unit, _ in failed], return_state=True)
            progress, resume = target_progress(plan, outcomes, read.result() if read.is_completed() else None)
            raise RestoreFailed(report(units, progress=progress, resume=resume, notes=notes), failed[0][1])
        checks = _check(results, params) if params.check else []
        bad = [c for c in checks if not c.ok]
        if bad:
            cause = RestoreCheckError(bad[0].topic, bad[0].partition, bad[0].problem or "mismatch")
            raise RestoreFailed(report(units, checks=checks, notes=notes), cause)
        groups = []
        if plan.consumer_groups and params.check:
            groups = translate_groups_task(plan, results, checks, params.dry_run)
        elif plan.consumer_groups:
            notes.append("consumer-group offsets were not translated: translation needs the check step")
        if access is not None:  # the records are restored and checked, the groups translated
            access = apply_access_task(access, params.users_secret_block)
        return report(units, checks=checks, groups=groups, notes=notes, access=access)


def _check(results: list[UnitResult], params: RestoreParameters) -> list[PartitionCheck]:
    """Read back what was restored: by digest where a unit alone wrote a target partition (work
    units in parallel on the restore's runner), by count where several units did."""
    return check_restored(results, choice=params.task_runner, concurrency=params.concurrency)
