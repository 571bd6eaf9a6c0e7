"""The verify flow's tasks: read a prefix's manifest chain, and check one backup's objects against
its manifest (the checks themselves are tasks/backup/verify.py's `verify_backup`)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from layout.manifest import Manifest
from tasks.backup.verify import Depth, Listing, VerifyReport, verify_backup
from tasks.runtime.retry import RETRY_OPTIONS
from tasks.services.manifest_store import read_chain


@task(name="read-manifests", cache_policy=NO_CACHE, **RETRY_OPTIONS)
def read_manifests_task(bucket: str, prefix: str) -> list[Manifest]:
    from tasks.services.object_store import open_store

    store = open_store()
    store.check_bucket(bucket)
    return read_chain(store, bucket, prefix)


@task(name="verify-objects", cache_policy=NO_CACHE, **RETRY_OPTIONS)
def check_backup_task(bucket: str, manifest: Manifest, depth: Depth, listing: Listing) -> VerifyReport:
    from tasks.services.object_store import open_store

    return verify_backup(open_store(), bucket, manifest, depth, listing=listing)
