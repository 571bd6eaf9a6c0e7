"""The status flow: `kbackup status` for the Prefect UI — per topic, the newest restore point's age
(the recovery point objective as it stands), the newest backed-up record's age, the lag left
behind, the last restore drill and the access rules captured, published as the `kbackup-status`
table artifact.

Composition only: the read is tasks/backup/status.py's, the rows layout/status.py's."""

from __future__ import annotations

from prefect import flow, get_run_logger
from pydantic import BaseModel, Field

from core.connections import credential_blocks
from layout.status import PrefixStatus, access_words, status_rows
from tasks.backup.status import read_status_task

__all__ = ["StatusParameters", "status_flow"]

ARTIFACT_KEY = "kbackup-status"


class StatusParameters(BaseModel):
    """Which prefix's status to show; rendered as a form in the Prefect UI."""

    bucket: str = Field(description="The bucket of the backups.")
    prefix: str = Field(default="", description="Their prefix (as in the backup's KCQL: bucket:prefix).")
    s3_credentials_block: str | None = Field(
        default=None, description="Name of a prefect-aws AwsCredentials block for S3 (else the environment)."
    )


@flow(name="status")
def status_flow(params: StatusParameters) -> PrefixStatus:
    """Read the prefix's manifests and drill evidence and publish its status per topic."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    logger = get_run_logger()
    where = f"s3://{params.bucket}/{params.prefix}"
    with credential_blocks(params.s3_credentials_block):
        status = read_status_task(params.bucket, params.prefix)
    if not status.topics:
        logger.warning("no backup under %s", where)
        create_markdown_artifact(key=ARTIFACT_KEY, markdown=f"No backup under `{where}`.")
        return status
    create_table_artifact(
        key=ARTIFACT_KEY,
        table=status_rows(status),
        description=f"Status of {where} at {status.at:%Y-%m-%d %H:%M:%S} UTC: {status.restore_points} "
        f"restore points, {status.drills} drills (lag bytes are estimated)",
    )
    for topic in status.topics:
        logger.info(
            "%s: restore point %s, %s s old; lag %s records; access rules: %s",
            topic.topic,
            topic.restore_point,
            topic.restore_point_age_s,
            "unknown" if topic.lag_records is None else topic.lag_records,
            access_words(topic.access),
        )
    return status
