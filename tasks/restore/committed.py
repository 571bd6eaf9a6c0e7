"""Committed restore progress: where each unit of a restore resumes, read back through the admin
API (`committed`, `committed_progress`), and what a transaction commits with its records
(`GroupCommit`, one send_offsets_to_transaction per group: `by_group`, `group_metadata`). Where a
unit's progress lives is layout.restore.progress; the producer that commits it is
tasks.restore.writer."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from layout.restore.plan import RestorePlan, RestoreUnit
from layout.restore.progress import (
    ProgressKey,
    anchor,
    progress_keys,
    progress_layout,
    restore_group,
)
from tasks.runtime import shutdown
from tasks.services.errors import KafkaOperationError
from tasks.services.kafka.admin import admin_client, admin_result, kafka_failure, partition_offsets
from tasks.services.kafka.calls import (
    LOOKUP_TIMEOUT_S,
    close_consumer,
)

# --- committed progress: where a unit resumes ----------------------------------------------

Progress = tuple[int, dict[str, Any]]  # (records restored, metadata; {}: the unit never began)


def read_progress(
    admin: Any, config: dict[str, Any], keys: Sequence[ProgressKey], require_stable: bool
) -> list[Progress | None]:
    """The committed progress at each of `keys`, through the admin API (which, unlike a
    consumer's committed(), reports a missing group ACL at once as an authorization error): one
    request per group with all its partitions, every group asked at once; None where an open
    transaction holds the offset (UNSTABLE_OFFSET_COMMIT, only with `require_stable`)."""
    wanted: dict[str, dict[tuple[str, int], None]] = {}
    for group, topic, partition in keys:
        wanted.setdefault(group, {})[(topic, partition)] = None
    futures = {
        group: admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group, [TopicPartition(t, p) for t, p in partitions])],
            require_stable=require_stable,
            request_timeout=LOOKUP_TIMEOUT_S,
        )[group]
        for group, partitions in wanted.items()
    }
    found: dict[str, dict[tuple[str, int], Progress | None]] = {}
    for group, future in futures.items():
        try:
            answer = admin_result(admin, future, LOOKUP_TIMEOUT_S).topic_partitions
        except KafkaException as exc:
            if _unstable(exc.args[0] if exc.args else None):
                found[group] = dict.fromkeys(wanted[group])
                continue
            raise kafka_failure(f"read committed offsets of {group}", config, exc) from exc
        found[group] = {
            (tp.topic, tp.partition): None if _unstable(tp.error) else _decode(group, tp) for tp in answer
        }
    return [found[group].get((topic, partition), (0, {})) for group, topic, partition in keys]


def _unstable(error: Any) -> bool:
    return isinstance(error, KafkaError) and error.code() == KafkaError.UNSTABLE_OFFSET_COMMIT


_REFUSALS = frozenset({KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED})


def _partition_failure(group: str, tp: Any) -> KafkaOperationError:
    """A committed offset the coordinator answered with an error of its own: never taken as "no
    progress" (a unit would produce again what it committed); retryable unless it is a refusal."""
    error = tp.error
    return KafkaOperationError(
        f"read committed offsets of {group} on {tp.topic}[{tp.partition}]",
        f"{error.name()}: {error.str()}" if isinstance(error, KafkaError) else str(error),
        retryable=not (isinstance(error, KafkaError) and error.code() in _REFUSALS),
    )


def committed(config: dict[str, Any], keys: Sequence[ProgressKey], admin: Any = None) -> list[Progress]:
    """(records restored so far, metadata) at each of `keys`, read concurrently. Call it after
    fencing (tasks.restore.fence) and `init_transactions`, which abort a killed run's open
    transactions: until then their offsets hold the stable read back. Offsets still settling are
    asked again for a while."""
    admin = admin or admin_client(config)
    found: list[Progress | None] = [None] * len(keys)
    waiting = list(range(len(keys)))
    deadline = time.monotonic() + LOOKUP_TIMEOUT_S
    while True:
        answers = read_progress(admin, config, [keys[i] for i in waiting], require_stable=True)
        for index, answer in zip(waiting, answers, strict=True):
            found[index] = answer
        waiting = [i for i in waiting if found[i] is None]
        if not waiting:
            return [progress for progress in found if progress is not None]
        if time.monotonic() >= deadline:
            group, topic, partition = keys[waiting[0]]
            raise KafkaOperationError(
                f"read committed offsets of {group} on {topic}[{partition}]",
                "an open transaction still holds them (UNSTABLE_OFFSET_COMMIT)",
                retryable=True,
            )
        shutdown.sleep(0.2)


def _decode(group: str, tp: Any) -> Progress:
    """(offset, metadata) of a partition the coordinator answered; (0, {}) where nothing is
    committed. A partition error raises (_partition_failure)."""
    if tp.error:
        raise _partition_failure(group, tp)
    if tp.offset < 0:
        return 0, {}
    try:
        metadata = json.loads(tp.metadata or "{}")
    except ValueError:
        metadata = {}
    return tp.offset, metadata if isinstance(metadata, dict) else {}


@dataclass(frozen=True)
class CommittedProgress:
    """What a unit has committed: records restored, and where in the target it began (partition
    -> offset; empty for a unit that never began)."""

    records: int
    starts: dict[int, int]


def with_progress_layout(admin: Any, config: dict[str, Any], plan: RestorePlan) -> RestorePlan:
    """The plan with its progress layout: as it says, or as the restore's own group recorded it
    (its units' own groups when nothing is recorded: the progress group holds nothing before)."""
    if plan.progress is not None:
        return plan
    where = anchor(plan)
    recorded = restore_group_offsets(admin, config, plan, [where]).get(where)
    return plan.model_copy(update={"progress": progress_layout(recorded[1] if recorded else None)})


def committed_progress(
    kafka_config: dict[str, Any], plan: RestorePlan, units: Sequence[RestoreUnit]
) -> dict[str, CommittedProgress]:
    """Each unit's last *committed* progress, through the admin API without waiting for open
    transactions (require_stable=False), every group asked at once: what a rerun would at least
    resume from."""
    admin = admin_client(kafka_config)
    keys = progress_keys(with_progress_layout(admin, kafka_config, plan))
    reads = [keys[(unit.target_topic, unit.unit_id)] for unit in units]
    result: dict[str, CommittedProgress] = {}
    for unit, found in zip(units, read_progress(admin, kafka_config, reads, False), strict=True):
        records, metadata = found or (0, {})
        starts = {int(p): int(o) for p, o in (metadata.get("starts") or {}).items()}
        result[unit.unit_id] = CommittedProgress(records=records, starts=starts)
    return result


def restore_group_offsets(
    admin: Any, config: dict[str, Any], plan: RestorePlan, partitions: Sequence[tuple[str, int]]
) -> dict[tuple[str, int], Progress]:
    """The restore's own group's committed (offset, metadata) on each of `partitions` that has
    one: where in each target partition the restore began (tasks.restore.fence)."""
    if not partitions:
        return {}
    group = restore_group(plan)
    request = ConsumerGroupTopicPartitions(
        group, [TopicPartition(t, p) for t, p in dict.fromkeys(partitions)]
    )
    try:
        future = admin.list_consumer_group_offsets([request], request_timeout=LOOKUP_TIMEOUT_S)[group]
        found = admin_result(admin, future, LOOKUP_TIMEOUT_S).topic_partitions
    except KafkaException as exc:
        raise kafka_failure(f"read committed offsets of {group}", config, exc) from exc
    return {(tp.topic, tp.partition): _decode(group, tp) for tp in found if tp.error or tp.offset >= 0}


def high_watermarks(
    config: dict[str, Any], partitions: Sequence[tuple[str, int]], admin: Any = None
) -> dict[tuple[str, int], int]:
    """The high watermark of each (topic, partition), in one batched ListOffsets."""
    if not partitions:
        return {}
    return partition_offsets(admin or admin_client(config), config, partitions, "latest")


@dataclass(frozen=True)
class GroupCommit:
    """One unit's progress, committed with a transaction: `count` records restored, as the
    offset at `key` (layout.restore.progress), with `metadata`."""

    key: ProgressKey
    count: int
    metadata: str


def by_group(offsets: Sequence[GroupCommit]) -> dict[str, list[TopicPartition]]:
    """The offsets to send, each group's together (groups in the order they first come)."""
    grouped: dict[str, list[TopicPartition]] = {}
    for offset in offsets:
        group, topic, partition = offset.key
        grouped.setdefault(group, []).append(
            TopicPartition(topic, partition, offset.count, metadata=offset.metadata)
        )
    return grouped


_PROBE_GROUP = "kbackup-restore-probe"
_template: list[bytes] = []
_template_lock = threading.Lock()


def group_metadata(config: dict[str, Any], group: str) -> Any:
    """The consumer-group metadata `send_offsets_to_transaction` takes for `group`, without a
    consumer per group: librdkafka serialises it (generation -1, no member, as a consumer that never
    joined has) with the group id NUL-terminated, so one consumer's metadata serves as a template.
    A consumer of the group itself when the template is not what that expects."""
    with _template_lock:
        if not _template:
            _template.append(_consumer_group_metadata(config, _PROBE_GROUP))
    template, probe = _template[0], _PROBE_GROUP.encode() + b"\0"
    if isinstance(template, bytes) and template.count(probe) == 1 and "\0" not in group:
        return template.replace(probe, group.encode() + b"\0")
    return _consumer_group_metadata(config, group)


def _consumer_group_metadata(config: dict[str, Any], group: str) -> Any:
    consumer = Consumer({**config, "group.id": group, "enable.auto.commit": False, "log_level": 3})
    try:
        return consumer.consumer_group_metadata()
    finally:
        close_consumer(consumer)
