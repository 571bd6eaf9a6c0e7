"""The restore drill: restore a restore point into scratch topics, check what was read back against
the manifests, measure the recovery time, remove the scratch topics and groups whatever happened,
and leave evidence — the `kbackup-drill` artifact and `<prefix>/_drills/<drill id>.json`
(docs/operators-guide.md, "Restore drills").

Composition only: the restore is flows.restore's own body (`run_restore`: pre-flight, units, check)
with the drill's choices — every topic (`INSERT INTO *`) into `drill-<id>-<topic>`, the full
pre-flight (each object's sha256, so that a damaged object fails the drill before anything is
produced), schema ids kept (the drill registers nothing); the evidence is tasks/lifecycle/drill.py's,
the clean-up tasks/lifecycle/drill_cleanup.py's. The clean-up and the evidence run in the flow's
own process, not as tasks: they must run even while the run is being stopped.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from prefect import flow, get_run_logger

from core.connections import credential_blocks
from core.errors import KbackupError
from flows.parameters import DrillParameters, drill_restore_parameters, selection_of
from flows.restore import RestoreFailed, RestoreReport, run_restore
from layout.drills import DrillEvidence, new_drill_id, scratch_prefix
from layout.restore.plan import restore_id
from tasks.lifecycle.drill import ARTIFACT_KEY, DrillFailed, evidence_of, markdown, read_point_task
from tasks.lifecycle.drill_cleanup import clean_up_scratch, cluster_id_of
from tasks.runtime.run_dir import run_dir
from tasks.runtime.shutdown import stop_tasks_when_terminated

__all__ = ["DrillFailed", "DrillParameters", "drill_flow"]


@flow(name="drill", log_prints=True)
def drill_flow(params: DrillParameters) -> DrillEvidence:
    """Restore a restore point into scratch topics, check it, time it, clean up, leave evidence."""
    from prefect.artifacts import create_markdown_artifact

    from tasks.services.drill_store import write_drill
    from tasks.services.object_store import open_store

    logger = get_run_logger()
    blocks = credential_blocks(params.s3_credentials_block, params.kafka_password_block)
    with run_dir(), stop_tasks_when_terminated(), blocks:
        evidence, failure = _drill(params, new_drill_id())
        create_markdown_artifact(key=ARTIFACT_KEY, markdown=markdown(evidence), description="restore drill")
        key = write_drill(open_store(), params.bucket, params.prefix, evidence)
    for topic in evidence.topics:
        logger.info(
            "drill %s: %s → %s: %s records in %.2f s (%.0f records/s)",
            evidence.drill_id,
            topic.topic,
            topic.scratch_topic,
            topic.records,
            topic.seconds,
            topic.records_per_second,
        )
    if failure is not None and not isinstance(failure, KbackupError):
        raise failure  # a bug, or the run terminated: as it is, after the evidence
    if evidence.result == "failed":
        raise DrillFailed(evidence, key)
    logger.info(
        "drill %s of restore point %s passed: %s records in %.2f s; evidence s3://%s/%s",
        evidence.drill_id,
        evidence.backup_id,
        evidence.records,
        evidence.seconds,
        evidence.bucket,
        key,
    )
    return evidence


def _drill(params: DrillParameters, drill_id: str) -> tuple[DrillEvidence, BaseException | None]:
    """Run the drill's restore, always clean up, and build the evidence: (evidence, what failed
    the restore or None)."""
    from tasks.services.kafka.clients import client_config

    logger = get_run_logger()
    point = read_point_task(
        params.bucket, params.prefix, params.point, params.partitions
    )  # no restore point: nothing to prove, the run fails as it is
    scratch = scratch_prefix(drill_id)
    restore = drill_restore_parameters(params, drill_id, point.backup_id)
    config = client_config()
    cluster = str(config.get("bootstrap.servers", ""))
    logger.info(
        "drill %s: restore point %s of s3://%s/%s into %s*, on %s",
        drill_id,
        point.backup_id,
        params.bucket,
        params.prefix,
        scratch,
        cluster,
    )
    started_at, started = datetime.now(UTC), time.monotonic()
    report: RestoreReport | None = None
    failure: BaseException | None = None
    try:
        report = run_restore(restore)
    except RestoreFailed as failed:
        report, failure = failed.report, failed
    except BaseException as exc:  # noqa: BLE001 - recorded in the evidence; drill_flow raises it again
        failure = exc
    seconds = time.monotonic() - started
    cleanup = clean_up_scratch(config, scratch, restore_id(selection_of(restore), point.chain))
    evidence = evidence_of(
        drill_id=drill_id,
        point=point,
        scratch=scratch,
        sample=params.partitions,
        report=report,
        failure=failure,
        started_at=started_at,
        finished_at=datetime.now(UTC),
        seconds=seconds,
        cluster=cluster,
        cluster_id=cluster_id_of(config),
        cleanup=cleanup,
    )
    return evidence, failure
