"""The verify flow: check every backup of a prefix (or one) against its manifest.

Composition only: the tasks are in tasks/backup/verify_chain.py and tasks/backup/verify.py."""

from __future__ import annotations

from prefect import flow, get_run_logger

from tasks.backup.verify import Depth, VerifyReport, list_prefix_task
from tasks.backup.verify_chain import check_backup_task, read_manifests_task
from tasks.services.errors import VerificationError


@flow(name="verify")
def verify_flow(
    bucket: str, prefix: str = "", deep: bool = False, backup_id: str | None = None
) -> list[VerifyReport]:
    logger = get_run_logger()
    manifests = read_manifests_task(bucket, prefix)
    if backup_id:
        manifests = [m for m in manifests if m.backup_id == backup_id]
    if not manifests:
        raise VerificationError(bucket, backup_id or "(any)", [f"no manifest under s3://{bucket}/{prefix}"])
    listing = list_prefix_task(bucket, prefix)  # one listing for every manifest, as restore lists
    depth: Depth = "full" if deep else "quick"
    reports = [check_backup_task(bucket, manifest, depth, listing) for manifest in manifests]
    problems = [problem for report in reports for problem in report.problems]
    for report in reports:
        logger.info(
            "backup %s: %s objects checked, %s decoded, %s problems",
            report.backup_id,
            report.objects_checked,
            report.objects_decoded,
            len(report.problems),
        )
    if problems:
        raise VerificationError(bucket, ", ".join(r.backup_id for r in reports if r.problems), problems)
    return reports
