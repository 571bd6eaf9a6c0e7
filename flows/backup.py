"""The backup flow: snapshot offsets → export (one task per work unit of partitions) → verification →
manifest.

Composition only: the parameters are parsed in flows/parameters.py, the work is in tasks/, the
report in tasks/backup/report.py. The manifest — the commit point — is written only
after every partition was exported and the objects verified, so a failed run leaves nothing
that looks like a complete backup.
"""

from __future__ import annotations

from typing import Literal, TypeVar, cast

from prefect import flow, get_run_logger
from prefect.utilities.annotations import quote
from prefect.variables import Variable

from core.connections import credential_blocks
from flows.parameters import DEFAULT_CONCURRENCY, KCQL_VARIABLE, BackupParameters, specs_and_transforms
from formats import get_codec
from kcql import BackupSpec
from layout.manifest import PartitionEntry
from layout.schemas import Side, StoredSchema
from tasks.backup.export import export_unit_task, export_units
from tasks.backup.manifest import build_manifest, write_manifest_task
from tasks.backup.plan import BackupPlan, plan_backup_task
from tasks.backup.report import BackupResult, publish, retention_gaps
from tasks.backup.verify import verify_backup_task
from tasks.runtime.run_dir import run_dir
from tasks.runtime.shutdown import stop_tasks_when_terminated
from tasks.runtime.task_runners import run_tasks
from tasks.services.locks import Lease, exclusive
from tasks.services.schema_registry import fetch_schemas_task

__all__ = ["KCQL_VARIABLE", "BackupParameters", "BackupResult", "backup_flow", "specs_and_transforms"]
T = TypeVar("T")


def _export_all(plan: BackupPlan, transforms: tuple, params: BackupParameters) -> list[PartitionEntry]:
    """One task run per work unit (layout.work_units: the partitions packed for the run's
    workers), each exporting its partitions through one consumer; one entry per partition."""
    units = export_units(plan, params.concurrency)
    outcomes = run_tasks(
        export_unit_task,
        [{"unit": u, "transforms": transforms} for u in units],
        choice=params.task_runner,
        concurrency=params.concurrency,
        records=sum(w.end - w.start for w in plan.windows),
        description=f"Backup {plan.backup_id}: records exported",
    )
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    if failures:
        # Raise the first failure; the others are in the run's logs. No manifest is written.
        raise failures[0]
    return [entry for entries in outcomes for entry in entries]


@flow(name="backup", log_prints=True)
def backup_flow(
    kcql: str | None = None,
    connector_config: str | None = None,
    verify: Literal["quick", "sampled", "full"] = "sampled",
    concurrency: int = DEFAULT_CONCURRENCY,
    task_runner: str = "auto",
    s3_credentials_block: str | None = None,
    kafka_password_block: str | None = None,
    full: bool = False,
) -> list[BackupResult]:
    """Back up Kafka topics to S3 as the KCQL (or connector config) says; with neither, as the
    Prefect Variable `kbackup_backup_kcql` says when the run starts. The two blocks, when named,
    are an AwsCredentials block for S3 and a Secret block for the Kafka SASL password."""
    if not kcql and not connector_config:
        kcql = kcql_from_variable()
    params = BackupParameters(
        kcql=kcql,
        connector_config=connector_config,
        verify=verify,
        concurrency=concurrency,
        task_runner=task_runner,
        s3_credentials_block=s3_credentials_block,
        kafka_password_block=kafka_password_block,
        full=full,
    )
    specs, transforms, topics = specs_and_transforms(params)
    results = []
    blocks = credential_blocks(params.s3_credentials_block, params.kafka_password_block)
    with run_dir(), stop_tasks_when_terminated(), blocks:
        for spec in specs:
            with exclusive("backup", spec.bucket, spec.prefix) as lease:
                results.append(_backup_one(spec, transforms, topics, params, lease))
    return results


def unwalked(value: T) -> T:
    """`value` as a task argument Prefect does not walk for upstream futures and task inputs
    (prefect.utilities.annotations.quote): a manifest of 600 partitions took 1 s a task on the
    2-core machine. The task gets `value` itself."""
    return cast(T, quote(value))


def kcql_from_variable() -> str:
    """The KCQL held by the Prefect Variable, or a clear error naming it."""
    value = Variable.get(KCQL_VARIABLE, default=None)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(
            f"no KCQL given: pass the kcql parameter or set the Prefect Variable {KCQL_VARIABLE!r} "
            f"(now {value!r})"
        )
    logger = get_run_logger()
    logger.info("KCQL from the Prefect Variable %s: %s", KCQL_VARIABLE, value)
    return value


def _schemas(spec: BackupSpec, partitions: list[PartitionEntry]) -> tuple[StoredSchema, ...]:
    """The registry schemas the exported records name, with those they reference (none unless a
    converter is `avro`); keys and values not in the wire format are said in the log."""
    ids: dict[Side, list[int]] = {}
    for entry in partitions:
        for side, side_ids in entry.schema_ids.items():
            ids.setdefault("key" if side == "key" else "value", []).extend(side_ids)
        if entry.not_wire_format:
            get_run_logger().warning(
                "%s[%s]: %s keys or values are not in the Confluent wire format (converter avro): "
                "kept byte for byte, with no schema id",
                entry.topic,
                entry.partition,
                entry.not_wire_format,
            )
    if not ids:
        return ()
    return fetch_schemas_task(spec.schema_registry_url, {side: sorted(set(v)) for side, v in ids.items()})


def _backup_one(
    spec: BackupSpec, transforms: tuple, topics: tuple[str, ...], params: BackupParameters, lease: Lease
) -> BackupResult:
    logger = get_run_logger()
    plan = plan_backup_task(spec, topics if spec.topics == ("*",) else (), full=params.full)
    if plan.previous_backup_id is None:
        logger.info("backup %s is full: it starts a new chain (%s)", plan.backup_id, plan.full_reason)
    for warning in retention_gaps(plan):
        logger.warning(warning)
    partitions = _export_all(plan, transforms, params)
    schemas = _schemas(spec, partitions)
    manifest = build_manifest(plan, partitions, get_codec(spec.format.value).spec.extension, schemas)
    report = verify_backup_task(spec.bucket, unwalked(manifest), params.verify)
    lease.check()  # fencing: still this run's lock, or LockLostError and no manifest
    key = write_manifest_task(unwalked(manifest), spec.bucket, spec.prefix)
    logger.info("backup %s committed: %s records in %s", manifest.backup_id, manifest.record_count, key)
    result = BackupResult(manifest_key=key, manifest=manifest, verification=report)
    publish(result)
    return result
