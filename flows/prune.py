"""The prune flow: apply a retention policy to the backups under one bucket/prefix.

Composition only: the plan is layout/chains.py's, the deletions tasks/lifecycle/prune.py's. It holds the
prefix's backup lock (tasks/services/locks.py) while it deletes, so a backup never runs meanwhile; the
report is the run's `prune-summary` artifact and its log.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from pydantic import BaseModel, Field, model_validator

from core.connections import credential_blocks
from kcql.properties import PropertyProblem, duration_seconds
from kcql.selection import OverrideError
from tasks.lifecycle.prune import PruneReport, prune_task, summary
from tasks.services.locks import exclusive

__all__ = ["PruneParameters", "PruneReport", "prune_flow"]


class PruneParameters(BaseModel):
    """A prune's policy; rendered as a form in the Prefect UI."""

    bucket: str = Field(description="The bucket of the backups.")
    prefix: str = Field(default="", description="Their prefix (as in the backup's KCQL: bucket:prefix).")
    keep_last: int | None = Field(default=None, ge=1, description="Keep the newest N restore points.")
    keep_within: str | None = Field(
        default=None, description="Keep every restore point younger than this: 30d, 12h, 2w."
    )
    dry_run: bool = Field(default=False, description="Say what would be deleted; delete nothing.")
    s3_credentials_block: str | None = Field(
        default=None, description="Name of a prefect-aws AwsCredentials block for S3 (else the environment)."
    )

    @model_validator(mode="after")
    def _a_policy(self) -> PruneParameters:
        if self.keep_last is None and not self.keep_within:
            raise ValueError("a retention policy is needed: keep_last and/or keep_within")
        return self

    def keep_within_seconds(self, name: str = "keep_within") -> int | None:
        """keep_within in seconds; a bad duration is an OverrideError naming `name`."""
        if not self.keep_within:
            return None
        try:
            return duration_seconds(self.keep_within)
        except PropertyProblem as problem:
            raise OverrideError(name, self.keep_within, problem.expected) from None


@flow(name="prune", log_prints=True)
def prune_flow(params: PruneParameters) -> PruneReport:
    """Delete the backups a retention policy drops, keeping every kept point restorable."""
    from prefect.artifacts import create_markdown_artifact

    logger = get_run_logger()
    within = params.keep_within_seconds()
    with credential_blocks(params.s3_credentials_block), exclusive("backup", params.bucket, params.prefix):
        report = prune_task(params.bucket, params.prefix, params.keep_last, within, params.dry_run)
    text = summary(report)
    create_markdown_artifact(key="prune-summary", markdown=text)
    for line in report.not_deleted:
        logger.warning("not deleted yet: %s", line)
    logger.info(
        "prune of s3://%s/%s: %s %s restore points, %s objects (%s bytes)",
        params.bucket,
        params.prefix,
        "dry run, nothing deleted; would remove" if params.dry_run else "removed",
        len(report.deleted_manifests),
        report.deleted_objects,
        report.deleted_bytes,
    )
    return report
