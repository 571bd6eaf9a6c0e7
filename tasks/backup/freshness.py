"""A backup's freshness per topic, measured just before its manifest is written: the log-end
offsets of all its partitions in one batched ListOffsets (latest, under the snapshot's isolation
level, so that a topic nobody wrote to since the snapshot has no lag), turned into the manifest's
entries by layout/freshness.py. A failure to read them never fails the backup: the lag is
recorded as unknown and a warning logged."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from layout.freshness import topic_freshness
from layout.manifest import PartitionEntry, TopicFreshness
from tasks.backup.plan import BackupPlan
from tasks.services.kafka.admin import admin_client, partition_offsets


def log_end_offsets(
    config: dict[str, Any], partitions: list[tuple[str, int]], isolation: str
) -> dict[tuple[str, int], int]:
    """Every partition's log end (latest offset: under read_committed, the last stable offset) in one
    batched request; each call bounded by the admin timeout (tasks.services.kafka.calls)."""
    return partition_offsets(admin_client(config), config, partitions, "latest", isolation)


def measure_freshness(
    plan: BackupPlan, partitions: list[PartitionEntry], config: dict[str, Any], logger: Any
) -> tuple[TopicFreshness, ...]:
    """The manifest's freshness entries; with the log ends unreadable, each topic's lag unknown."""
    wanted = [(p.topic, p.partition) for p in partitions]
    ends: dict[tuple[str, int], int] | None
    try:
        ends = log_end_offsets(config, wanted, plan.spec.isolation_level)
    except Exception as exc:  # a KbackupError or a bug alike: freshness is never worth a failed backup
        logger.warning(
            "backup %s: could not read the log-end offsets of its %s partitions (%s): its lag is recorded "
            "as unknown",
            plan.backup_id,
            len(wanted),
            exc,
        )
        ends = None
    names = [t.name for t in plan.topics]
    return topic_freshness(names, partitions, plan.started_at, datetime.now(UTC), ends)


@task(name="measure-freshness", cache_policy=NO_CACHE)
def measure_freshness_task(plan: BackupPlan, partitions: list[PartitionEntry]) -> tuple[TopicFreshness, ...]:
    """No retries: a failure is recorded as an unknown lag, never retried into a later commit."""
    from tasks.services.kafka.clients import client_config

    return measure_freshness(plan, partitions, client_config(), get_run_logger())
