"""The target side of a restore, before anything is produced: create the target topics (with the
backed-up partition count and configs) or check the existing ones, refuse records that are not
this restore's own, and say which schemas the target's registry must be given. The check
afterwards is tasks.restore.check; consumer-group translation, tasks.restore.groups.

Plain functions with thin retryable tasks at the bottom.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import ConfigResource, NewTopic, ResourceType
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from core.connections import RegistrySettings
from core.errors import InputError
from layout.restore.plan import RestorePlan
from layout.schemas import StoredSchema
from tasks.restore.committed import committed_progress, restore_group_offsets
from tasks.restore.errors import TargetNotEmptyError, TargetPartitionsError
from tasks.restore.topic_configs import SkippedConfig, configs_to_create, kept_configs, refused_configs
from tasks.runtime import shutdown
from tasks.runtime.retry import RETRY_OPTIONS
from tasks.services.kafka.admin import admin_client, cluster_metadata, kafka_failure, partition_offsets
from tasks.services.kafka.calls import LOOKUP_TIMEOUT_S


def schemas_to_register(plan: RestorePlan) -> tuple[StoredSchema, ...]:
    """The backup's registry schemas to register in the target's registry, so that each record's
    schema id is rewritten to the target's as it is produced: none when the backup holds none, its
    records name none, or the ids are kept. InputError when there are some and no registry."""
    if not plan.schemas or not plan.wire_sides or plan.schema_ids == "keep":
        return ()
    if not (plan.schema_registry_url or RegistrySettings().url):
        raise InputError(
            f"the backup holds {len(plan.schemas)} registry schemas that its records name: set "
            "KBACKUP_SCHEMA_REGISTRY_URL (or 'schema.registry.url') to the target's registry, or "
            "restore with 'restore.schema.ids'='keep' into a registry that has the same ids"
        )
    return plan.schemas


class TargetInfo(BaseModel):
    name: str
    partitions: int
    created: bool
    warnings: list[str] = Field(default_factory=list)
    configs_not_recreated: list[SkippedConfig] = Field(
        default_factory=list, description="Backed-up topic configs the target does not have as backed up."
    )


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
    preserving = {u.target_topic for u in plan.units if u.routing in ("preserve", "metadata")}
    counts: dict[str, int] = {}  # the existing targets' partition counts
    for target in plan.targets:
        existing = metadata.topics.get(target.name)
        if existing is not None and not existing.error:
            if target.name in preserving and len(existing.partitions) < target.partitions_needed:
                raise TargetPartitionsError(target.name, target.partitions_needed, len(existing.partitions))
            counts[target.name] = len(existing.partitions)
    if plan.target_nonempty == "refuse":
        refuse_foreign_records(plan, kafka_config, counts)
    infos = []
    existing_names = list(counts)
    existing_configs = _described_configs(admin, existing_names)
    to_create: list[NewTopic] = []
    for target in plan.targets:
        existing = metadata.topics.get(target.name)
        skipped: list[SkippedConfig] = []
        created = False
        if target.name in counts:
            partitions = counts[target.name]
            skipped = kept_configs(target.configs, existing_configs.get(target.name))
        else:
            partitions = max(target.partition_count, target.partitions_needed)
            if plan.partitioner != "preserve" and existing is None:
                partitions = max(target.partition_count, 1)
            replication = min(target.replication_factor or brokers, brokers)
            configs, skipped = configs_to_create(
                target.configs,
                replication,
                target.oldest_timestamp,
                int(time.time() * 1000),
                keys_kept=plan.envelope and plan.codec.envelope.key,
            )
            try:
                refused = refused_configs(admin, target.name, partitions, replication, configs)
            except KafkaException as exc:
                raise kafka_failure(f"validate topic {target.name}", kafka_config, exc) from exc
            skipped = sorted([*skipped, *refused], key=lambda s: s.name)
            configs = {k: v for k, v in configs.items() if k not in {r.name for r in refused}}
            to_create.append(NewTopic(target.name, partitions, replication, config=configs))
            created = not dry_run  # below, all in one request; a failure raises before any report
        infos.append(
            TargetInfo(
                name=target.name,
                partitions=partitions,
                created=created,
                warnings=[s.describe(target.name) for s in skipped],
                configs_not_recreated=skipped,
            )
        )
    if to_create and not dry_run:
        _create_topics(admin, kafka_config, to_create)
    # Every target's retention (a dry run's targets to be created: as planned).
    planned_only = {t.name for t in plan.targets if dry_run and metadata.topics.get(t.name) is None}
    new_names = [t.name for t in plan.targets if t.name not in existing_names and t.name not in planned_only]
    described = {**existing_configs, **_described_configs(admin, new_names)}
    for target, info in zip(plan.targets, infos, strict=True):
        retention = (
            _planned_retention_ms(target.configs)
            if target.name in planned_only
            else _retention_ms(described.get(target.name))
        )
        if retention is not None and retention >= 0 and target.oldest_timestamp is not None:
            deadline = target.oldest_timestamp + retention
            if deadline < time.time() * 1000:
                info.warnings.append(
                    f"{target.name}: retention.ms={retention} will delete restored records older than "
                    f"{retention} ms soon after the restore (the oldest restored record is from "
                    f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(target.oldest_timestamp / 1000))}); "
                    "set retention.ms=-1 on the target to keep them"
                )
    return infos


def refuse_foreign_records(plan: RestorePlan, kafka_config: dict[str, Any], counts: dict[str, int]) -> None:
    """Raise TargetNotEmptyError when a partition this restore writes, of the existing targets
    `counts` (topic: partition count), holds records it did not write. Every target's watermarks
    are read in one batched ListOffsets per bound; the rest only for targets that hold records.
    Its own records (a rerun resuming after a kill) lie at or after where the restore began, which
    its group records before any record is produced (tasks.restore.fence), and where each unit
    began, which the unit's progress commits with its first records (tasks.restore.produce, where
    layout.restore.progress keeps it; restores by older versions committed it before); anything
    below both is someone else's. Counted by offsets (transaction markers and aborted records
    included)."""
    # a target that any unit routes other than 'preserve' may be written in every partition
    everywhere = {u.target_topic for u in plan.units if u.routing != "preserve"}
    written: dict[str, set[int]] = {
        topic: set(range(count)) if topic in everywhere else set() for topic, count in counts.items()
    }
    for unit in plan.units:
        if unit.target_topic in counts and unit.routing == "preserve" and unit.target_partition is not None:
            written[unit.target_topic].add(unit.target_partition)
    wanted = [(topic, p) for topic, partitions in written.items() for p in sorted(partitions)]
    if not wanted:
        return
    admin = admin_client(kafka_config)
    low = partition_offsets(admin, kafka_config, wanted, "earliest")
    high = partition_offsets(admin, kafka_config, wanted, "latest")
    for topic in counts:
        occupied = {
            p: (low[(topic, p)], high[(topic, p)])
            for p in sorted(written[topic])
            if high[(topic, p)] > low[(topic, p)]
        }
        if occupied:
            _refuse_foreign_in(plan, kafka_config, admin, topic, occupied)


def _refuse_foreign_in(
    plan: RestorePlan,
    kafka_config: dict[str, Any],
    admin: Any,
    topic: str,
    occupied: dict[int, tuple[int, int]],
) -> None:
    """refuse_foreign_records for one target whose partitions `occupied` hold records (low, high)."""
    units = [u for u in plan.units if u.target_topic == topic]
    recorded = restore_group_offsets(admin, kafka_config, plan, [(topic, p) for p in sorted(occupied)])
    began: dict[int, int] = {p: offset for (_, p), (offset, _) in recorded.items()}
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


def _create_topics(admin: Any, config: dict[str, Any], topics: Sequence[NewTopic]) -> None:
    """Create the NewTopics in one CreateTopics request (one that exists by now is left as it is),
    then wait until every partition of all of them has a leader."""
    futures = admin.create_topics(list(topics), operation_timeout=30)
    for topic in topics:
        try:
            futures[topic.topic].result(timeout=LOOKUP_TIMEOUT_S)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise kafka_failure(f"create topic {topic.topic}", config, exc) from exc
    waiting = {t.topic: t.num_partitions for t in topics}
    for _ in range(100):
        shutdown.raise_if_stopping()
        found = cluster_metadata(admin, config).topics
        waiting = {name: count for name, count in waiting.items() if not _has_leaders(found.get(name), count)}
        if not waiting:
            return
        shutdown.sleep(0.2)


def _has_leaders(found: Any, partitions: int) -> bool:
    """Whether a topic's metadata shows at least `partitions` partitions, each with a leader."""
    return (
        found is not None
        and not found.error
        and len(found.partitions) >= partitions
        and all(p.leader >= 0 for p in found.partitions.values())
    )


def _planned_retention_ms(planned: dict[str, str]) -> int:
    value = planned.get("retention.ms")
    return int(value) if value is not None else 7 * 24 * 3600 * 1000


def _described_configs(admin: Any, topics: Sequence[str]) -> dict[str, dict[str, str] | None]:
    """Each topic's configs (None: not readable), described in one request."""
    resources = [ConfigResource(ResourceType.TOPIC, topic) for topic in topics]
    if not resources:
        return {}
    futures = admin.describe_configs(resources, request_timeout=LOOKUP_TIMEOUT_S)
    found: dict[str, dict[str, str] | None] = {}
    for resource, topic in zip(resources, topics, strict=True):
        try:
            configs = futures[resource].result(timeout=LOOKUP_TIMEOUT_S)
        except KafkaException:
            found[topic] = None
            continue
        found[topic] = {name: str(e.value) for name, e in configs.items() if e.value is not None}
    return found


def _retention_ms(configs: dict[str, str] | None) -> int | None:
    """A topic's time retention (None: none, not deleting, or not readable)."""
    if configs is None:
        return None
    cleanup = configs.get("cleanup.policy")
    if cleanup is not None and "delete" not in cleanup:
        return None
    value = configs.get("retention.ms")
    return int(value) if value is not None else None


# --- tasks -----------------------------------------------------------------------------------


@task(name="prepare-target", cache_policy=NO_CACHE, **RETRY_OPTIONS)
def prepare_targets_task(plan: RestorePlan, dry_run: bool = False) -> list[TargetInfo]:
    from tasks.services.kafka.clients import client_config

    return prepare_targets(plan, client_config(), dry_run)
