"""Consumer-group translation: each backed-up consumer group's committed offsets, moved onto the
offsets its records have in the restored topic (read by the check), so that consumers resume
where they were. Every group's offsets are committed at once (one request each, all in flight
together).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from confluent_kafka import TopicPartition
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from layout.restore.plan import RestorePlan
from tasks.restore.check import PartitionCheck
from tasks.restore.produce import UnitResult
from tasks.runtime.retry import RETRY_OPTIONS
from tasks.services.kafka.admin import admin_client, commit_group_offsets
from tasks.services.kafka.calls import LOOKUP_TIMEOUT_S
from tasks.services.kafka.clients import client_config


class GroupTranslation(BaseModel):
    group: str
    topic: str
    partition: int
    source_offset: int
    target_offset: int


def translate_groups(
    plan: RestorePlan,
    results: Sequence[UnitResult],
    checks: Sequence[PartitionCheck],
    kafka_config: dict[str, Any],
    dry_run: bool = False,
) -> list[GroupTranslation]:
    """Commit each backed-up group's offsets onto the restored records: a group that had
    committed source offset N resumes at the restored record that was N."""
    by_unit = {(r.source_topic, r.source_partition): r for r in results if r.routing == "preserve"}
    check_of = {(c.topic, c.partition): c for c in checks}
    translations: list[GroupTranslation] = []
    for group in plan.consumer_groups:
        new_group = f"{plan.group_prefix}{group.group}"
        for committed in group.offsets:
            result = by_unit.get((committed.topic, committed.partition))
            if result is None or committed.offset not in result.translate_points:
                continue
            partition = next(iter(result.partitions), committed.partition)
            check = check_of.get((result.target_topic, partition))
            if check is None:
                continue
            index = result.translate_points[committed.offset]
            target_offset = check.target_offsets.get(index, check.end_offset)
            translations.append(
                GroupTranslation(
                    group=new_group,
                    topic=result.target_topic,
                    partition=partition,
                    source_offset=committed.offset,
                    target_offset=target_offset,
                )
            )
    if translations and not dry_run:
        _commit(plan, results, translations, kafka_config)
    return translations


def _commit(
    plan: RestorePlan,
    results: Sequence[UnitResult],
    translations: Sequence[GroupTranslation],
    kafka_config: dict[str, Any],
) -> None:
    """Commit the translated offsets, every group's request sent at once."""
    admin = admin_client(kafka_config)
    # keyed by source topic; a unit without one (None) finds no committed metadata
    metadata_of: dict[tuple[str, str | None, int], str] = {
        (f"{plan.group_prefix}{g.group}", c.topic, c.partition): c.metadata
        for g in plan.consumer_groups
        for c in g.offsets
    }
    source_of: dict[tuple[str, int], str | None] = {}  # target partition -> the first unit's source topic
    for result in results:
        for partition in result.partitions:
            source_of.setdefault((result.target_topic, partition), result.source_topic)
    by_group: dict[str, list[TopicPartition]] = {}
    for t in translations:
        source_topic = source_of.get((t.topic, t.partition), t.topic)
        meta = metadata_of.get((t.group, source_topic, t.partition), "")
        by_group.setdefault(t.group, []).append(
            # confluent-kafka refuses metadata=None: leave it out when the group had none
            TopicPartition(t.topic, t.partition, t.target_offset, metadata=meta)
            if meta
            else TopicPartition(t.topic, t.partition, t.target_offset)
        )
    commit_group_offsets(admin, kafka_config, by_group, LOOKUP_TIMEOUT_S)


@task(name="translate-consumer-groups", cache_policy=NO_CACHE, **RETRY_OPTIONS)
def translate_groups_task(
    plan: RestorePlan, results: list[UnitResult], checks: list[PartitionCheck], dry_run: bool = False
) -> list[GroupTranslation]:
    return translate_groups(plan, results, checks, client_config(), dry_run)
