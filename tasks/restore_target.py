"""The target side of a restore: create or check the target topics before anything is produced,
check what was restored afterwards, and translate consumer-group offsets onto the new offsets.

Plain functions with thin retryable tasks at the bottom.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import ConfigResource, NewTopic, ResourceType
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from formats.columns import from_messages, records_digest_inputs, update_digest
from tasks import shutdown
from tasks.kafka_admin import admin_client, cluster_metadata, kafka_failure
from tasks.kafka_calls import LOOKUP_TIMEOUT_S
from tasks.kafka_reader import consumed_batches
from tasks.restore_errors import RestoreCheckError, TargetNotEmptyError, TargetPartitionsError
from tasks.restore_plan import RestorePlan
from tasks.restore_produce import UnitResult
from tasks.restore_writer import committed_progress
from tasks.retry import RETRY_OPTIONS

# Configs that describe the source cluster's topic, not data placement: never copied.
_NOT_COPIED = {
    "min.insync.replicas",
    "leader.replication.throttled.replicas",
    "follower.replication.throttled.replicas",
}


class TargetInfo(BaseModel):
    name: str
    partitions: int
    created: bool
    warnings: list[str] = Field(default_factory=list)


def prepare_targets(
    plan: RestorePlan, kafka_config: dict[str, Any], dry_run: bool = False
) -> list[TargetInfo]:
    """Create missing target topics (the backed-up partition count and configs); refuse a target
    with too few partitions for 'preserve', or one that holds records this restore did not write
    (unless 'restore.target.nonempty'='append'), before any topic is created; warn when time
    retention would delete old records."""
    admin = admin_client(kafka_config)
    metadata = cluster_metadata(admin, kafka_config)
    brokers = max(1, len(metadata.brokers))
    for target in plan.targets:
        existing = metadata.topics.get(target.name)
        if existing is not None and not existing.error:
            needs_preserve = any(
                u.routing in ("preserve", "metadata") for u in plan.units if u.target_topic == target.name
            )
            if needs_preserve and len(existing.partitions) < target.partitions_needed:
                raise TargetPartitionsError(target.name, target.partitions_needed, len(existing.partitions))
            if plan.target_nonempty == "refuse":
                refuse_foreign_records(plan, kafka_config, target.name, len(existing.partitions))
    infos = []
    for target in plan.targets:
        existing = metadata.topics.get(target.name)
        created = False
        warnings = []
        if existing is not None and not existing.error:
            partitions = len(existing.partitions)
        else:
            partitions = max(target.partition_count, target.partitions_needed)
            if plan.partitioner != "preserve" and existing is None:
                partitions = max(target.partition_count, 1)
            if not dry_run:
                replication = min(target.replication_factor or brokers, brokers)
                configs = {k: v for k, v in target.configs.items() if k not in _NOT_COPIED}
                if configs.get("message.timestamp.type") == "LogAppendTime":
                    # With LogAppendTime the broker would stamp every restored record with the
                    # restore's own time; CreateTime keeps the backed-up timestamps.
                    configs["message.timestamp.type"] = "CreateTime"
                    warnings.append(
                        f"{target.name}: the source topic uses message.timestamp.type=LogAppendTime; the "
                        "target is created with CreateTime so the restored records keep their original "
                        "timestamps (switch it to LogAppendTime after the restore if new records should "
                        "get append time)"
                    )
                futures = admin.create_topics(
                    [NewTopic(target.name, partitions, replication, config=configs)], operation_timeout=30
                )
                try:
                    futures[target.name].result(timeout=LOOKUP_TIMEOUT_S)
                except KafkaException as exc:
                    if "TOPIC_ALREADY_EXISTS" not in str(exc):
                        raise kafka_failure(f"create topic {target.name}", kafka_config, exc) from exc
                _wait_for_topic(admin, kafka_config, target.name, partitions)
                created = True
        retention = _retention_ms(
            admin, kafka_config, target.name, target.configs, dry_run and not created and existing is None
        )
        if retention is not None and retention >= 0 and target.oldest_timestamp is not None:
            deadline = target.oldest_timestamp + retention
            if deadline < time.time() * 1000:
                warnings.append(
                    f"{target.name}: retention.ms={retention} will delete restored records older than "
                    f"{retention} ms soon after the restore (the oldest restored record is from "
                    f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(target.oldest_timestamp / 1000))}); "
                    "set retention.ms=-1 on the target to keep them"
                )
        infos.append(TargetInfo(name=target.name, partitions=partitions, created=created, warnings=warnings))
    return infos


def watermarks(
    kafka_config: dict[str, Any], topic: str, partitions: Sequence[int]
) -> dict[int, tuple[int, int]]:
    """(low, high) watermark of each partition."""
    consumer = Consumer({**kafka_config, "group.id": "kbackup-restore-watermarks", "log_level": 3})
    try:
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=LOOKUP_TIMEOUT_S)
            for p in partitions
        }
    except KafkaException as exc:
        raise kafka_failure(f"watermarks of {topic}", kafka_config, exc) from exc
    finally:
        with contextlib.suppress(Exception):
            consumer.close()


def refuse_foreign_records(
    plan: RestorePlan, kafka_config: dict[str, Any], topic: str, partition_count: int
) -> None:
    """Raise TargetNotEmptyError when a partition this restore writes holds records it did not
    write. Its own (a rerun resuming after a kill) lie at or after where each unit began, which
    the unit's group commits before its first record (tasks.restore_writer); anything below is
    someone else's. Counted by offsets (transaction markers included)."""
    units = [u for u in plan.units if u.target_topic == topic]
    written = {
        u.target_partition for u in units if u.routing == "preserve" and u.target_partition is not None
    }
    if any(u.routing != "preserve" for u in units):
        written |= set(range(partition_count))
    occupied = {
        p: (low, high)
        for p, (low, high) in watermarks(kafka_config, topic, sorted(written)).items()
        if high > low
    }
    if not occupied:
        return
    began: dict[int, int] = {}
    for progress in committed_progress(kafka_config, plan, units).values():
        for partition, start in progress.starts.items():
            began[partition] = min(start, began.get(partition, start))
    foreign = {}
    for partition, (low, high) in occupied.items():
        end = min(high, began.get(partition, high))
        if end > low:
            foreign[partition] = (low, end)
    if foreign:
        raise TargetNotEmptyError(topic, sum(end - low for low, end in foreign.values()), foreign)


def _wait_for_topic(admin: Any, config: dict[str, Any], topic: str, partitions: int) -> None:
    for _ in range(100):
        shutdown.raise_if_stopping()
        found = cluster_metadata(admin, config).topics.get(topic)
        if (
            found is not None
            and not found.error
            and len(found.partitions) >= partitions
            and all(p.leader >= 0 for p in found.partitions.values())
        ):
            return
        shutdown.sleep(0.2)


def _retention_ms(
    admin: Any, config: dict[str, Any], topic: str, planned: dict[str, str], planned_only: bool
) -> int | None:
    if planned_only:
        value = planned.get("retention.ms")
        return int(value) if value is not None else 7 * 24 * 3600 * 1000
    resource = ConfigResource(ResourceType.TOPIC, topic)
    try:
        configs = admin.describe_configs([resource], request_timeout=LOOKUP_TIMEOUT_S)[resource].result(
            timeout=LOOKUP_TIMEOUT_S
        )
    except KafkaException:
        return None
    entry = configs.get("retention.ms")
    cleanup = configs.get("cleanup.policy")
    if cleanup is not None and "delete" not in str(cleanup.value):
        return None
    return int(entry.value) if entry is not None and entry.value is not None else None


# --- check -----------------------------------------------------------------------------------


class PartitionCheck(BaseModel):
    topic: str
    partition: int
    expected_records: int
    records: int
    digest_compared: bool
    ok: bool
    target_offsets: dict[int, int] = Field(default_factory=dict, description="Record index -> target offset.")
    end_offset: int = Field(default=0, description="The target offset after the last restored record.")
    problem: str | None = None


def read_restored(
    kafka_config: dict[str, Any],
    topic: str,
    partition: int,
    start: int,
    limit: int | None,
    indexes: Sequence[int] = (),
    with_timestamps: bool = True,
) -> tuple[int, str, dict[int, int], int]:
    """Consume (read_committed) from `start`: up to `limit` records, or to the end when None.
    Returns (records, digest, {index: offset}, offset after the last record read)."""
    consumer = Consumer(
        {
            **kafka_config,
            "group.id": "kbackup-restore-check",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
            "fetch.message.max.bytes": 16 * 1024 * 1024,
            "max.partition.fetch.bytes": 16 * 1024 * 1024,
            "log_level": 3,
        }
    )
    digest = hashlib.sha256()
    wanted = set(indexes)
    offsets_at: dict[int, int] = {}
    count = 0
    end = start
    try:
        high = _high_watermark(consumer, topic, partition, start + (limit or 0))
        if high <= start or limit == 0:
            return 0, "sha256:" + digest.hexdigest(), offsets_at, start
        consumer.assign([TopicPartition(topic, partition, start)])
        for consumed, at_end in consumed_batches(consumer, kafka_config, f"check {topic}/{partition}"):
            records = consumed if limit is None else consumed[: limit - count]
            if records:
                batch = from_messages(records)
                offsets = batch.column("offset").to_pylist()
                for index in wanted.intersection(range(count, count + len(records))):
                    offsets_at[index] = offsets[index - count]
                if not with_timestamps:  # compared without timestamps: none, type 0
                    batch = batch.set_column(1, "timestamp", pa.nulls(batch.num_rows, pa.int64()))
                    batch = batch.set_column(2, "timestamp_type", pa.array(np.zeros(batch.num_rows, np.int8)))
                update_digest(digest, records_digest_inputs(batch))
                count += len(records)
                end = offsets[-1] + 1
                if limit is not None and count >= limit:
                    break
            if at_end and _caught_up(consumer, topic, partition, high):
                break
    except KafkaException as exc:
        raise kafka_failure(f"check {topic}/{partition}", kafka_config, exc) from exc
    finally:
        with contextlib.suppress(Exception):
            consumer.close()
    return count, "sha256:" + digest.hexdigest(), offsets_at, end


def _high_watermark(consumer: Consumer, topic: str, partition: int, at_least: int) -> int:
    """The partition's high watermark, asked again for a while when it is below what was just
    written: a partition created or added a moment ago can answer 0 at first."""
    deadline = time.monotonic() + 30
    while True:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=LOOKUP_TIMEOUT_S)
        if high >= at_least or time.monotonic() > deadline:
            return int(high)
        shutdown.sleep(0.2)


def _caught_up(consumer: Consumer, topic: str, partition: int, high: int) -> bool:
    """Whether an end-of-partition event means the end: read_committed stops at the last stable
    offset, which trails the high watermark until the transaction's commit markers are written."""
    [position] = consumer.position([TopicPartition(topic, partition)])
    return position.offset >= high


def check_unit(kafka_config: dict[str, Any], result: UnitResult) -> list[PartitionCheck]:
    """Consume what the unit restored and compare it, record for record (by digest), with what
    was selected from the backup. Only a partition that one unit alone writes is compared by
    digest; see check_shared for the others."""
    checks = []
    for partition, outcome in sorted(result.partitions.items()):
        indexes = sorted(set(result.translate_points.values())) if result.routing == "preserve" else []
        count, digest, offsets, end = read_restored(
            kafka_config,
            result.target_topic,
            partition,
            outcome.start_offset,
            outcome.records,
            indexes,
            with_timestamps=result.timestamps_kept,
        )
        expected_digest = outcome.digest
        if not result.timestamps_kept:
            expected_digest = ""  # new timestamps: compare counts and order of keys/values only below
        problem = None
        if count != outcome.records:
            problem = f"{count} records restored, {outcome.records} expected"
        elif expected_digest and digest != expected_digest:
            problem = f"records digest {digest} differs from the backup's selection {expected_digest}"
        checks.append(
            PartitionCheck(
                topic=result.target_topic,
                partition=partition,
                expected_records=outcome.records,
                records=count,
                digest_compared=bool(expected_digest),
                ok=problem is None,
                target_offsets=offsets,
                end_offset=end,
                problem=problem,
            )
        )
    return checks


def raise_on_failed(checks: Sequence[PartitionCheck]) -> None:
    for check in checks:
        if not check.ok:
            raise RestoreCheckError(check.topic, check.partition, check.problem or "mismatch")


# --- consumer groups -------------------------------------------------------------------------


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
        admin = admin_client(kafka_config)
        by_group: dict[str, list[TopicPartition]] = {}
        # keyed by source topic; a unit without one (None) finds no committed metadata
        metadata_of: dict[tuple[str, str | None, int], str] = {
            (f"{plan.group_prefix}{g.group}", c.topic, c.partition): c.metadata
            for g in plan.consumer_groups
            for c in g.offsets
        }
        for t in translations:
            source_topic = next(
                (
                    r.source_topic
                    for r in results
                    if r.target_topic == t.topic and t.partition in r.partitions
                ),
                t.topic,
            )
            meta = metadata_of.get((t.group, source_topic, t.partition), "")
            by_group.setdefault(t.group, []).append(
                # confluent-kafka refuses metadata=None: leave it out when the group had none
                TopicPartition(t.topic, t.partition, t.target_offset, metadata=meta)
                if meta
                else TopicPartition(t.topic, t.partition, t.target_offset)
            )
        for group_name, partitions in by_group.items():
            future = admin.alter_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group_name, partitions)], request_timeout=LOOKUP_TIMEOUT_S
            )[group_name]
            try:
                future.result(timeout=LOOKUP_TIMEOUT_S)
            except KafkaException as exc:
                raise kafka_failure(f"commit offsets of group {group_name}", kafka_config, exc) from exc
    return translations


# --- tasks -----------------------------------------------------------------------------------


@task(name="prepare-target", cache_policy=NO_CACHE, **RETRY_OPTIONS)
def prepare_targets_task(plan: RestorePlan, dry_run: bool = False) -> list[TargetInfo]:
    from tasks.kafka_clients import client_config

    return prepare_targets(plan, client_config(), dry_run)


@task(
    name="check-restored",
    cache_policy=NO_CACHE,
    task_run_name="check {result.unit_id} → {result.target_topic}",
    **RETRY_OPTIONS,
)
def check_unit_task(result: UnitResult) -> list[PartitionCheck]:
    from tasks.kafka_clients import client_config

    return check_unit(client_config(), result)


@task(name="translate-consumer-groups", cache_policy=NO_CACHE, **RETRY_OPTIONS)
def translate_groups_task(
    plan: RestorePlan, results: list[UnitResult], checks: list[PartitionCheck], dry_run: bool = False
) -> list[GroupTranslation]:
    from tasks.kafka_clients import client_config

    return translate_groups(plan, results, checks, client_config(), dry_run)
