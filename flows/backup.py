"""The backup flow: snapshot offsets → per-partition export → verification → manifest.

Composition only: the work is in tasks/. The manifest — the commit point — is written only
after every partition was exported and the objects verified, so a failed run leaves nothing
that looks like a complete backup.
"""

from __future__ import annotations

from typing import Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.variables import Variable
from pydantic import BaseModel, Field, field_validator, model_validator

from flows.runners import TASK_RUNNERS, check_task_runner, run_tasks
from formats import get_codec
from kcql import BackupSpec, parse_backup, parse_connector_config
from layout.manifest import Manifest, PartitionEntry
from tasks.backup_export import ExportRequest, export_partition_task
from tasks.backup_manifest import build_manifest, write_manifest_task
from tasks.backup_plan import BackupPlan, gap_cause, plan_backup_task
from tasks.backup_verify import VerifyReport, verify_backup_task
from tasks.locks import Lease, exclusive
from tasks.run_dir import run_dir
from tasks.shutdown import stop_tasks_when_terminated

# The Prefect Variable the scheduled deployment's KCQL comes from, read when each run starts (so an
# edit in the UI reaches the next run without a redeploy) unless the run names its own KCQL.
KCQL_VARIABLE = "kbackup_backup_kcql"


class BackupParameters(BaseModel):
    """What one backup run does; rendered as a form in the Prefect UI."""

    kcql: str | None = Field(
        default=None,
        description="KCQL statements, e.g. INSERT INTO bucket:prefix SELECT * FROM topic STOREAS AVRO "
        f"PROPERTIES('store.envelope'=true). Empty: the Prefect Variable {KCQL_VARIABLE}, read when the run starts.",
    )
    connector_config: str | None = Field(
        default=None,
        description="Alternatively, a Kafka Connect S3 sink .properties text (connect.s3.kcql=…).",
    )
    verify: Literal["quick", "sampled", "full"] = Field(
        default="sampled",
        description="quick: sizes and checksums; sampled: also decode a sample of objects; full: decode everything "
        "and recompute every partition's records digest.",
    )
    concurrency: int = Field(
        default=4, ge=1, le=64, description="Partitions exported at the same time: the task runner's workers."
    )
    task_runner: str = Field(
        default="auto",
        description=f"Where the exports run: {', '.join(TASK_RUNNERS)} (see the README).",
    )

    @field_validator("task_runner")
    @classmethod
    def _known_runner(cls, value: str) -> str:
        return check_task_runner(value)

    @model_validator(mode="after")
    def _one_source(self) -> BackupParameters:
        if bool(self.kcql) == bool(self.connector_config):
            raise ValueError("give exactly one of kcql and connector_config")
        return self


class BackupResult(BaseModel):
    manifest_key: str
    manifest: Manifest
    verification: VerifyReport


def specs_and_transforms(params: BackupParameters) -> tuple[list[BackupSpec], tuple, tuple[str, ...]]:
    """The statements to run, the connector config's transforms, and its `topics` list."""
    if params.kcql:
        return parse_backup(params.kcql), (), ()
    assert params.connector_config is not None
    config = parse_connector_config(params.connector_config)
    return list(config.specs), tuple(config.transforms), tuple(config.topics)


def _export_all(plan: BackupPlan, transforms: tuple, params: BackupParameters) -> list[PartitionEntry]:
    causes = {t.name: gap_cause(t) for t in plan.topics}
    requests = [
        ExportRequest(spec=plan.spec, window=w, backup_id=plan.backup_id, gap_cause=causes[w.topic])
        for w in plan.windows
    ]
    outcomes = run_tasks(
        export_partition_task,
        [{"request": r, "transforms": transforms} for r in requests],
        choice=params.task_runner,
        concurrency=params.concurrency,
        records=sum(w.end - w.start for w in plan.windows),
        description=f"Backup {plan.backup_id}: records exported",
    )
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    if failures:
        # Raise the first failure; the others are in the run's logs. No manifest is written.
        raise failures[0]
    return outcomes


def _publish(result: BackupResult) -> None:
    manifest = result.manifest
    rows = [
        {
            "topic": p.topic,
            "partition": p.partition,
            "offsets": f"{p.start_offset}–{p.end_offset}",
            "records": p.record_count,
            "bytes": p.byte_count,
            "objects": len(p.objects),
            "gaps": len(p.gaps),
            "seconds": p.seconds,
            "MB/s": round(p.byte_count / 1e6 / p.seconds, 2) if p.seconds else None,
        }
        for p in manifest.partitions
    ]
    create_table_artifact(table=rows, key="backup-partitions", description=f"Backup {manifest.backup_id}")
    gaps = [
        f"- {p.topic}/{p.partition}: offsets {g.first}–{g.last} ({g.cause})"
        for p in manifest.partitions
        for g in p.gaps
    ]
    create_markdown_artifact(
        key="backup-summary",
        markdown="\n".join(
            [
                f"# Backup {manifest.backup_id}",
                f"- manifest: `{result.manifest_key}` (previous: {manifest.previous_backup_id or 'none'})",
                f"- format: {manifest.format}, lossless: {manifest.lossless}",
                f"- records: {manifest.record_count}, bytes: {manifest.byte_count}, "
                f"objects: {sum(len(p.objects) for p in manifest.partitions)}",
                f"- verification ({result.verification.depth}): {result.verification.objects_checked} objects checked, "
                f"{result.verification.objects_decoded} decoded",
                *(["", "## Offset gaps", *gaps] if gaps else []),
            ]
        ),
    )


@flow(name="backup", log_prints=True)
def backup_flow(
    kcql: str | None = None,
    connector_config: str | None = None,
    verify: Literal["quick", "sampled", "full"] = "sampled",
    concurrency: int = 4,
    task_runner: str = "auto",
) -> list[BackupResult]:
    """Back up Kafka topics to S3 as the KCQL (or connector config) says; with neither, as the
    Prefect Variable `kbackup_backup_kcql` says when the run starts."""
    if not kcql and not connector_config:
        kcql = kcql_from_variable()
    params = BackupParameters(
        kcql=kcql,
        connector_config=connector_config,
        verify=verify,
        concurrency=concurrency,
        task_runner=task_runner,
    )
    specs, transforms, topics = specs_and_transforms(params)
    results = []
    with run_dir(), stop_tasks_when_terminated():
        for spec in specs:
            with exclusive("backup", spec.bucket, spec.prefix) as lease:
                results.append(_backup_one(spec, transforms, topics, params, lease))
    return results


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


def _backup_one(
    spec: BackupSpec, transforms: tuple, topics: tuple[str, ...], params: BackupParameters, lease: Lease
) -> BackupResult:
    logger = get_run_logger()
    plan = plan_backup_task(spec, topics if spec.topics == ("*",) else ())
    for window in plan.windows:
        if window.retention_gap:
            gap = window.retention_gap
            logger.warning(
                "%s/%s: offsets %s–%s were deleted by retention before they were backed up",
                window.topic,
                window.partition,
                gap.first,
                gap.last,
            )
    partitions = _export_all(plan, transforms, params)
    manifest = build_manifest(plan, partitions, get_codec(spec.format.value).spec.extension)
    report = verify_backup_task(spec.bucket, manifest, params.verify)
    lease.check()  # fencing: still this run's lock, or LockLostError and no manifest
    key = write_manifest_task(manifest, spec.bucket, spec.prefix)
    logger.info("backup %s committed: %s records in %s", manifest.backup_id, manifest.record_count, key)
    result = BackupResult(manifest_key=key, manifest=manifest, verification=report)
    _publish(result)
    return result
