"""The backup flow: snapshot offsets → export (one task per work unit of partitions) → verification →
manifest.

Composition only: the parameters are parsed in flows/parameters.py, the work is in tasks/backup/,
the report in tasks/backup/report.py. The manifest — the commit point — is written only
after every partition was exported and the objects verified, so a failed run leaves nothing
that looks like a complete backup.
"""

from __future__ import annotations

from typing import TypeVar, cast

from prefect import flow, get_run_logger
from prefect.utilities.annotations import quote

from core.connections import credential_blocks
from flows.parameters import KCQL_VARIABLE, BackupParameters, specs_and_transforms
from formats import get_codec
from kcql import BackupSpec
from tasks.backup.access import capture_access_task
from tasks.backup.export import earlier_keys_task, export_unit_task, export_units
from tasks.backup.freshness import measure_freshness_task
from tasks.backup.manifest import build_manifest, registry_schema_ids, write_manifest_task
from tasks.backup.plan import plan_backup_task
from tasks.backup.report import BackupResult, not_wire_format, publish, retention_gaps
from tasks.backup.verify import verify_backup_task
from tasks.runtime.progress import announce
from tasks.runtime.run_dir import run_dir
from tasks.runtime.shutdown import stop_tasks_when_terminated
from tasks.runtime.task_runners import results_or_first_failure, run_tasks
from tasks.services.locks import Lease, exclusive
from tasks.services.schema_registry import fetch_schemas_task

__all__ = ["KCQL_VARIABLE", "BackupParameters", "BackupResult", "backup_flow", "specs_and_transforms"]
T = TypeVar("T")


@flow(name="backup", log_prints=True)
def backup_flow(params: BackupParameters) -> list[BackupResult]:
    """Back up Kafka topics to S3 as the KCQL (or connector config) says; with neither, as the
    Prefect Variable `kbackup_backup_kcql` says when the run starts. The two blocks, when named,
    are an AwsCredentials block for S3 and a Secret block for the Kafka SASL password."""
    specs, transforms, topics = specs_and_transforms(params)
    results = []
    blocks = credential_blocks(params.s3_credentials_block, params.kafka_password_block)
    with run_dir(), stop_tasks_when_terminated(), blocks:
        for spec in specs:
            with exclusive("backup", spec.bucket, spec.prefix) as lease:
                results.append(_backup_one(spec, transforms, topics, params, lease))
    return results


def _backup_one(
    spec: BackupSpec, transforms: tuple, topics: tuple[str, ...], params: BackupParameters, lease: Lease
) -> BackupResult:
    logger = get_run_logger()
    plan = plan_backup_task(spec, topics if spec.topics == ("*",) else (), full=params.full)
    if plan.previous_backup_id is None:
        logger.info("backup %s is full: it starts a new chain (%s)", plan.backup_id, plan.full_reason)
    for warning in retention_gaps(plan):
        logger.warning(warning)
    access = capture_access_task(unwalked(plan))  # who may do what with the topics, at snapshot time
    units = export_units(plan, params.concurrency, earlier_keys_task(unwalked(plan)))
    announce((w.topic, w.partition, w.end - w.start) for w in plan.windows)  # waiting, in the display
    outcomes = run_tasks(  # one task run per work unit: its partitions through one consumer
        export_unit_task,
        [{"unit": unit, "transforms": transforms} for unit in units],
        choice=params.task_runner,
        concurrency=params.concurrency,
        records=plan.record_upper_bound,
        description=f"Backup {plan.backup_id}: records exported",
    )
    # a failure: no manifest is written; one entry per partition, in the plan's order
    partitions = [entry for entries in results_or_first_failure(outcomes) for entry in entries]
    for warning in not_wire_format(partitions):
        logger.warning(warning)
    ids = registry_schema_ids(partitions)
    schemas = fetch_schemas_task(spec.schema_registry_url, ids) if ids else ()
    manifest = build_manifest(plan, partitions, get_codec(spec.format.value).spec.extension, schemas)
    report = verify_backup_task(spec.bucket, unwalked(manifest), params.verify)
    # the lag left behind, measured just before the commit (a failure records it as unknown)
    freshness = measure_freshness_task(unwalked(plan), unwalked(partitions))
    manifest = manifest.model_copy(update={"freshness": freshness, "access": access})
    lease.check()  # fencing: still this run's lock, or LockLostError and no manifest
    key = write_manifest_task(unwalked(manifest), spec.bucket, spec.prefix)
    logger.info("backup %s committed: %s records in %s", manifest.backup_id, manifest.record_count, key)
    result = BackupResult(manifest_key=key, manifest=manifest, verification=report)
    publish(result)
    return result


def unwalked(value: T) -> T:
    """`value` as a task argument Prefect does not walk for upstream futures and task inputs
    (prefect.utilities.annotations.quote): a manifest of 600 partitions took 1 s a task on the
    2-core machine. The task gets `value` itself."""
    return cast(T, quote(value))
