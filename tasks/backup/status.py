"""Reading a prefix's status: its manifests and its drills' evidence, straight from the bucket (no
Prefect API), turned into per-topic rows by layout/status.py."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from prefect import task
from prefect.cache_policies import NO_CACHE

from layout.status import PrefixStatus, prefix_status
from tasks.runtime.retry import RETRY_OPTIONS
from tasks.services.drill_store import read_drills
from tasks.services.manifest_store import read_chain

if TYPE_CHECKING:
    from tasks.services.object_store import ObjectStore


def read_status(store: ObjectStore, bucket: str, prefix: str, now: datetime | None = None) -> PrefixStatus:
    """The prefix's status at `now` (default: the time of the read). A missing bucket raises
    BucketNotFoundError; a prefix without a backup has no topic."""
    store.check_bucket(bucket)
    manifests = read_chain(store, bucket, prefix)
    drills = read_drills(store, bucket, prefix)
    return prefix_status(bucket, prefix, manifests, drills, now or datetime.now(UTC))


@task(name="read-status", cache_policy=NO_CACHE, **RETRY_OPTIONS)
def read_status_task(bucket: str, prefix: str) -> PrefixStatus:
    from tasks.services.object_store import open_store

    return read_status(open_store(), bucket, prefix)
