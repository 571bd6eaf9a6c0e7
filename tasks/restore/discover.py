"""Discovering what a restore reads: `plan_restore` reads the prefix and hands it to discovery
with the restore's Selection (built from its statement and overrides in kcql/selection.py); the
plan's models are layout.restore.plan's.

Discovery is by stage: from the manifest chain under the prefix (the normal case,
layout.restore.from_manifests), or — for data written by Lenses Stream Reactor, which writes no
manifest — from the listing of the prefix, read as its source connector reads it
(tasks.restore.discover_listing). Both build their units with layout.restore.units. Objects that no
manifest commits are never restored silently.

`plan_restore` is the plain function (the S3 reads, then pure discovery, then the pre-flight);
`plan_restore_task` its thin retryable task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prefect import task
from prefect.cache_policies import NO_CACHE

from kcql.selection import Selection
from layout.chains import ChainError, chain_of
from layout.keys import is_bookkeeping_key
from layout.manifest import join_key
from layout.restore.errors import NothingToRestoreError
from layout.restore.from_manifests import plan_from_manifests
from layout.restore.plan import RestorePlan
from layout.restore.timestamps import PROPERTY
from layout.schemas import merged
from tasks.restore.discover_listing import plan_from_listing, refuse_uncommitted_backup
from tasks.restore.preflight import preflight, zero_timestamps
from tasks.runtime.retry import RETRY_OPTIONS
from tasks.services.manifest_store import read_chain

if TYPE_CHECKING:
    from tasks.services.object_store import ObjectStore


def plan_restore(store: ObjectStore, selection: Selection) -> RestorePlan:
    """Find what to restore under s3://bucket/prefix and run the pre-flight; raise before anything
    is produced when the backup is incomplete, an object is missing or not as the manifest says
    (PreflightError, naming every such object), a selected record has timestamp 0 and
    'restore.timestamp.zero' is 'refuse' (UnwritableTimestampError), or a filter names an unknown
    key."""
    bucket, prefix = selection.bucket, selection.prefix
    store.check_bucket(bucket)
    folder = join_key(prefix) + "/" if join_key(prefix) else ""
    listed = {o.key: o for o in store.list_objects(bucket, folder) if not is_bookkeeping_key(o.key)}
    chain = read_chain(store, bucket, prefix)
    if chain:
        point = selection.point or chain[-1].backup_id
        chain = chain_of(chain, point)  # the point's chain alone, its base first
        plan = plan_from_manifests(selection, chain, listed)
        plan = plan.model_copy(update={"schemas": merged(*(m.schemas for m in chain))})
    elif listed:
        if selection.point:
            raise ChainError(f"restore point {selection.point!r}: s3://{bucket}/{prefix} holds no manifest")
        refuse_uncommitted_backup(store, bucket, prefix, listed)
        plan = plan_from_listing(selection, listed)
    else:
        raise NothingToRestoreError(bucket, prefix, "no objects and no manifest under the prefix")
    if not plan.units:
        raise NothingToRestoreError(
            bucket, prefix, "the selection (topic, partitions, filter, window) matches no object"
        )
    checked = preflight(store, plan, listed, selection.preflight)
    zeros = zero_timestamps(store, plan)
    if zeros is not None:
        if plan.timestamp_zero == "refuse":
            raise zeros
        checked += f"; {zeros.count} records with timestamp 0, written with timestamp 1 ({PROPERTY})"
    return plan.model_copy(update={"preflight": checked})


@task(name="discover-objects", cache_policy=NO_CACHE, **RETRY_OPTIONS)
def plan_restore_task(selection: Selection) -> RestorePlan:
    from tasks.services.object_store import open_store

    return plan_restore(open_store(), selection)
