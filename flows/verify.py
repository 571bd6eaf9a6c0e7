"""The verify flow: check every backup of a prefix (or one) against its manifest."""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from layout.manifest import Manifest
from tasks.backup_verify import Depth, Listing, VerifyReport, list_prefix_task, verify_backup
from tasks.errors import VerificationError
from tasks.manifest_store import read_chain
from tasks.retry import RETRY_OPTIONS


@task(name="read-manifests", cache_policy=NO_CACHE, **RETRY_OPTIONS)
def read_manifests_task(bucket: str, prefix: str) -> list[Manifest]:
    from tasks.s3 import check_bucket, s3_client

    s3 = s3_client()
    check_bucket(s3, bucket)
    return read_chain(s3, bucket, prefix)


@task(name="verify-objects", cache_policy=NO_CACHE, **RETRY_OPTIONS)
def check_backup_task(bucket: str, manifest: Manifest, depth: Depth, listing: Listing) -> VerifyReport:
    from tasks.s3 import s3_client

    return verify_backup(s3_client(), bucket, manifest, depth, listing=listing)


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
