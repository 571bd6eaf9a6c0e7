"""The verify flow's tasks: read a prefix's manifest chain, and check one backup's objects against
its manifest (the checks themselves are tasks/backup_verify.py's `verify_backup`)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from layout.manifest import Manifest
from tasks.backup_verify import Depth, Listing, VerifyReport, verify_backup
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
