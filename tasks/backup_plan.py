"""Planning a backup: which partitions, from which offset to which, continuing which chain."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict

from kcql import BackupSpec
from layout.manifest import GapCause, GroupOffsets, TopicEntry, new_backup_id
from tasks.kafka_admin import (
    PartitionWindow,
    admin_client,
    cluster_id,
    committed_group_offsets,
    describe_topics,
    resolve_topics,
    snapshot_windows,
)
from tasks.manifest_store import latest_manifest
from tasks.retry import RETRY_OPTIONS
from tasks.s3 import check_bucket

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class BackupPlan(BaseModel):
    model_config = ConfigDict(frozen=True)

    spec: BackupSpec
    backup_id: str
    previous_backup_id: str | None
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
    spec: BackupSpec, kafka_config: dict[str, Any], s3: S3Client, topics_override: tuple[str, ...] = ()
) -> BackupPlan:
    check_bucket(s3, spec.bucket)
    admin = admin_client(kafka_config)
    started_at = datetime.now(UTC)
    names = resolve_topics(admin, kafka_config, topics_override or spec.topics)
    topics = describe_topics(admin, kafka_config, names)
    previous = latest_manifest(s3, spec.bucket, spec.prefix)
    windows = snapshot_windows(admin, kafka_config, topics, previous, spec.isolation_level)
    return BackupPlan(
        spec=spec,
        backup_id=new_backup_id(started_at),
        previous_backup_id=previous.backup_id if previous else None,
        started_at=started_at,
        cluster_id=cluster_id(admin, kafka_config),
        topics=tuple(topics),
        windows=tuple(windows),
        consumer_groups=tuple(committed_group_offsets(admin, kafka_config, names)),
    )


@task(name="snapshot-offsets", cache_policy=NO_CACHE, **RETRY_OPTIONS)
def plan_backup_task(spec: BackupSpec, topics_override: tuple[str, ...] = ()) -> BackupPlan:
    from tasks.kafka_clients import client_config
    from tasks.s3 import s3_client

    return plan_backup(spec, client_config(), s3_client(), topics_override)
