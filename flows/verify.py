"""The verify flow: check every backup of a prefix (or one) against its manifest.

Composition only: the parameters are in flows/parameters.py, the tasks in
tasks/backup/verify_chain.py and tasks/backup/verify.py."""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.parameters import VerifyParameters
from tasks.backup.verify import Depth, VerifyReport, list_prefix_task
from tasks.backup.verify_chain import check_backup_task, read_manifests_task
from tasks.services.errors import VerificationError

__all__ = ["VerifyParameters", "VerifyReport", "verify_flow"]


@flow(name="verify")
def verify_flow(params: VerifyParameters) -> list[VerifyReport]:
    """Check the backups under a prefix against their manifests: every object listed with its size
    and checksum, and with `deep` decoded, every partition's records digest recomputed."""
    logger = get_run_logger()
    bucket, prefix = params.bucket, params.prefix
    manifests = read_manifests_task(bucket, prefix)
    if params.backup_id:
        manifests = [m for m in manifests if m.backup_id == params.backup_id]
    if not manifests:
        raise VerificationError(
            bucket, params.backup_id or "(any)", [f"no manifest under s3://{bucket}/{prefix}"]
        )
    listing = list_prefix_task(bucket, prefix)  # one listing for every manifest, as restore lists
    depth: Depth = "full" if params.deep else "quick"
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
