"""Planning a backup: which partitions, from which offset to which, continuing which chain."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict

from kcql import BackupSpec
from layout.chains import chain_base, chain_suffix
from layout.manifest import GapCause, GroupOffsets, Manifest, TopicEntry, backup_time, new_backup_id
from tasks.runtime.retry import RETRY_OPTIONS
from tasks.services.kafka.admin import (
    PartitionWindow,
    admin_client,
    cluster_id,
    committed_group_offsets,
    describe_topics,
    resolve_topics,
    snapshot_windows,
)
from tasks.services.manifest_store import latest_manifest, read_chain

if TYPE_CHECKING:
    from tasks.services.object_store import ObjectStore


class BackupPlan(BaseModel):
    model_config = ConfigDict(frozen=True)

    spec: BackupSpec
    backup_id: str
    previous_backup_id: str | None
    chain_id: str
    chain_suffix: str = ""
    """What this chain's object names end with (layout.chains.chain_suffix; "" for the first chain)."""
    full_reason: str = ""
    started_at: datetime
    cluster_id: str | None
    topics: tuple[TopicEntry, ...]
    windows: tuple[PartitionWindow, ...]
    consumer_groups: tuple[GroupOffsets, ...]

    @property
    def record_upper_bound(self) -> int:
        return sum(w.end - w.start for w in self.windows)


def gap_cause(topic: TopicEntry) -> GapCause:
    """What an offset hole in this topic most likely is (read_committed also skips aborted records)."""
    return (
        "compaction-or-transaction-markers"
        if "compact" in topic.configs.get("cleanup.policy", "")
        else "transaction-markers"
    )


def plan_backup(
    spec: BackupSpec,
    kafka_config: dict[str, Any],
    store: ObjectStore,
    topics_override: tuple[str, ...] = (),
    full: bool = False,
) -> BackupPlan:
    """The snapshot: an incremental backup continues the newest backup's chain from where it
    ended; a full one (asked for, the first, or when the chain is older than
    `backup.full.every`) starts a new chain from each partition's earliest offset."""
    store.check_bucket(spec.bucket)
    admin = admin_client(kafka_config)
    started_at = datetime.now(UTC)
    names = resolve_topics(admin, kafka_config, topics_override or spec.topics)
    topics = describe_topics(admin, kafka_config, names)
    previous = latest_manifest(store, spec.bucket, spec.prefix)
    backup_id = new_backup_id(started_at)
    chain_id = _chain_id(store, spec, previous) if previous else backup_id
    reason = full_backup_reason(spec, previous, chain_id, started_at, full)
    suffix = previous.chain_suffix if previous else ""
    if reason:
        # a new chain beside older ones names its objects apart (layout.chains.chain_suffix)
        suffix = chain_suffix(backup_id) if previous else ""
        previous, chain_id = None, backup_id
    windows = snapshot_windows(admin, kafka_config, topics, previous, spec.isolation_level)
    return BackupPlan(
        spec=spec,
        backup_id=backup_id,
        chain_id=chain_id,
        chain_suffix=suffix,
        full_reason=reason,
        previous_backup_id=previous.backup_id if previous else None,
        started_at=started_at,
        cluster_id=cluster_id(admin, kafka_config),
        topics=tuple(topics),
        windows=tuple(windows),
        consumer_groups=tuple(committed_group_offsets(admin, kafka_config, names)),
    )


def _chain_id(store: ObjectStore, spec: BackupSpec, previous: Manifest) -> str:
    """The chain the newest backup belongs to (followed link by link for manifests without one)."""
    if previous.chain_id:
        return previous.chain_id
    return chain_base(read_chain(store, spec.bucket, spec.prefix), previous.backup_id)


def full_backup_reason(
    spec: BackupSpec, previous: Manifest | None, chain_id: str, started_at: datetime, full: bool
) -> str:
    """Why this backup is full (empty: it is incremental)."""
    if previous is None:
        return "the first backup under the prefix"
    if full:
        return "asked for"
    if spec.full_every_s is not None:
        age = started_at - backup_time(chain_id)
        if age >= timedelta(seconds=spec.full_every_s):
            return f"the chain began {age} ago; 'backup.full.every' is {timedelta(seconds=spec.full_every_s)}"
    return ""


@task(name="snapshot-offsets", cache_policy=NO_CACHE, **RETRY_OPTIONS)
def plan_backup_task(
    spec: BackupSpec, topics_override: tuple[str, ...] = (), full: bool = False
) -> BackupPlan:
    from tasks.services.kafka.clients import client_config
    from tasks.services.object_store import open_store

    return plan_backup(spec, client_config(), open_store(), topics_override, full)
