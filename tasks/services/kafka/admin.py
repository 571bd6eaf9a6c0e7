"""Cluster facts a backup records and the offsets it snapshots, through Kafka's admin API."""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, wait
from typing import Any, TypeVar

from confluent_kafka import (
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaError,
    KafkaException,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, ConfigResource, ConfigSource, OffsetSpec, ResourceType
from pydantic import BaseModel, ConfigDict

from layout.manifest import CommittedOffset, GroupOffsets, Manifest, OffsetGap, TopicEntry
from tasks.runtime import shutdown
from tasks.services.errors import BrokerUnavailableError, KafkaOperationError, TopicNotFoundError
from tasks.services.kafka.calls import ADMIN_TIMEOUT_S
from tasks.services.kafka.clients import last_connection_error, security_error

# How long each metadata request of the connection check waits before the admin client is polled
# for what librdkafka reported meanwhile (an authentication or TLS failure is raised from there).
CONNECT_POLL_S = 1.0
LIST_OFFSETS_RETRY_S = 10.0  # how long partition_offsets asks again after a retryable error
# How long commit_group_offsets asks again for a partition a coordinator refuses for now.
COMMIT_RETRY_S = 30.0
_UNREACHABLE_CODES = {KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT}
_RETRYABLE_CODES = {
    KafkaError._TRANSPORT,
    KafkaError._TIMED_OUT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.NOT_COORDINATOR,
}


class PartitionWindow(BaseModel):
    """The offsets one partition's export covers: [start, end)."""

    model_config = ConfigDict(frozen=True)

    topic: str
    partition: int
    start: int
    end: int
    retention_gap: OffsetGap | None = None


def admin_client(config: dict[str, Any]) -> AdminClient:
    """An AdminClient that has reached a broker: see `connect`."""
    try:
        admin = AdminClient({**config, "log_level": 3})
    except KafkaException as exc:
        raise kafka_failure("create admin client", config, exc) from exc
    connect(admin, config)
    return admin


def connect(admin: AdminClient, config: dict[str, Any], timeout: float = ADMIN_TIMEOUT_S) -> None:
    """Wait until a broker answers a metadata request. An authentication or TLS failure is raised
    at once (from admin.poll(), which serves the client's error_cb); brokers that do not answer
    within `timeout` are reported unreachable, with the last connection error."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            admin.list_topics(timeout=CONNECT_POLL_S)
        except KafkaException as exc:
            admin.poll(0)
            error = exc.args[0] if exc.args else None
            retry = isinstance(error, KafkaError) and error.code() in _UNREACHABLE_CODES
            if not retry or time.monotonic() >= deadline:
                raise kafka_failure("metadata request", config, exc) from exc
        else:
            admin.poll(0)
            return


def kafka_failure(operation: str, config: dict[str, Any], exc: BaseException) -> Exception:
    """A KafkaException as one of ours: authentication, authorization and TLS failures say so
    (never retried), unreachable brokers are named (with the last connection error librdkafka
    reported), transient codes are retryable."""
    error = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
    code = error.code() if isinstance(error, KafkaError) else None
    if isinstance(error, KafkaError):
        failure = security_error(error, config, operation)
        if failure is not None:
            return failure
    if code in _UNREACHABLE_CODES:
        last = last_connection_error(config)
        reason = f"{operation}: {error}" + (f"; last connection error: {last}" if last else "")
        return BrokerUnavailableError(str(config.get("bootstrap.servers")), reason)
    return KafkaOperationError(operation, str(error or exc), retryable=code in _RETRYABLE_CODES)


_T = TypeVar("_T")


def admin_result(admin: AdminClient, future: Future[_T], timeout: float = ADMIN_TIMEOUT_S) -> _T:
    """A future's result, polling the admin client meanwhile: that serves its error_cb (raising
    what a retry cannot fix) and passes librdkafka's log lines on to Python logging."""
    deadline = time.monotonic() + timeout
    while not future.done() and time.monotonic() < deadline:
        wait([future], timeout=0.05)  # wakes as soon as the result is in
        admin.poll(0)
    admin.poll(0)
    return future.result(timeout=max(0.0, deadline - time.monotonic()))


def commit_group_offsets(
    admin: AdminClient,
    config: dict[str, Any],
    offsets: Mapping[str, Sequence[TopicPartition]],
    timeout: float = ADMIN_TIMEOUT_S,
) -> None:
    """Commit each group's offsets, every group's request in flight together. AlterConsumerGroupOffsets
    succeeds as a request while a partition carries its own error, and nothing is committed for
    it: a partition a coordinator refuses for now (a fresh broker's still loading:
    COORDINATOR_LOAD_IN_PROGRESS, or moving) is asked again at once for up to
    COMMIT_RETRY_S; any other refusal, or one that outlasts it, is raised naming the group and
    the partition."""
    deadline = time.monotonic() + COMMIT_RETRY_S
    pending = {group: list(partitions) for group, partitions in offsets.items() if partitions}
    while pending:
        futures = {
            group: admin.alter_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group, partitions)], request_timeout=timeout
            )[group]
            for group, partitions in pending.items()
        }
        again: dict[str, list[TopicPartition]] = {}
        for group, future in futures.items():
            operation = f"commit offsets of group {group}"
            try:
                committed = admin_result(admin, future, timeout)
            except KafkaException as exc:
                raise kafka_failure(operation, config, exc) from exc
            refused = [tp for tp in committed.topic_partitions or () if tp.error is not None]
            if refused:
                where = f"{operation} ({refused[0].topic}[{refused[0].partition}])"
                failure = kafka_failure(where, config, KafkaException(refused[0].error))
                if not (isinstance(failure, KafkaOperationError) and failure.retryable):
                    raise failure
                if time.monotonic() >= deadline:
                    raise failure
                again[group] = pending[group]
        pending = again
        if pending:
            shutdown.sleep(0.2)


def cluster_metadata(admin: AdminClient, config: dict[str, Any]) -> Any:
    try:
        metadata = admin.list_topics(timeout=ADMIN_TIMEOUT_S)
    except KafkaException as exc:
        admin.poll(0)
        raise kafka_failure("metadata request", config, exc) from exc
    admin.poll(0)
    return metadata


def _check_topic_access(admin: AdminClient, config: dict[str, Any], topic: str) -> None:
    """Raise why a topic is missing from the metadata: it does not exist, or (the broker hides
    topics a principal may not Describe) it is not ours to see."""
    future = admin.describe_topics(TopicCollection([topic]), request_timeout=ADMIN_TIMEOUT_S)[topic]
    try:
        admin_result(admin, future)
    except KafkaException as exc:
        failure = kafka_failure(f"describe topic {topic!r}", config, exc)
        if not isinstance(failure, KafkaOperationError):
            raise failure from exc
    raise TopicNotFoundError(topic, str(config.get("bootstrap.servers")))


def resolve_topics(admin: AdminClient, config: dict[str, Any], patterns: Sequence[str]) -> list[str]:
    """Topic names for the KCQL's topics: `*` (or a glob) means every matching non-internal topic."""
    existing = sorted(t for t in cluster_metadata(admin, config).topics if not t.startswith("__"))
    selected: list[str] = []
    for pattern in patterns:
        if any(ch in pattern for ch in "*?["):
            selected.extend(t for t in existing if fnmatch.fnmatchcase(t, pattern) and t not in selected)
        elif pattern not in existing:
            _check_topic_access(admin, config, pattern)
        elif pattern not in selected:
            selected.append(pattern)
    return selected


def describe_topics(admin: AdminClient, config: dict[str, Any], topics: Iterable[str]) -> list[TopicEntry]:
    metadata = cluster_metadata(admin, config)
    topics = list(topics)
    resources = [ConfigResource(ResourceType.TOPIC, topic) for topic in topics]
    entries = []
    try:
        described = admin.describe_configs(resources, request_timeout=ADMIN_TIMEOUT_S) if resources else {}
        for resource, topic in zip(resources, topics, strict=True):
            configs = admin_result(admin, described[resource])
            non_default = {
                name: str(entry.value)
                for name, entry in sorted(configs.items())
                if entry.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value and entry.value is not None
            }
            partitions = metadata.topics[topic].partitions
            replication = max((len(p.replicas) for p in partitions.values()), default=0)
            entries.append(
                TopicEntry(
                    name=topic,
                    partition_count=len(partitions),
                    replication_factor=replication,
                    configs=non_default,
                )
            )
    except KafkaException as exc:
        raise kafka_failure("describe configs", config, exc) from exc
    return entries


def _list_offsets(
    admin: AdminClient,
    config: dict[str, Any],
    partitions: list[TopicPartition],
    spec: OffsetSpec,
    isolation: str,
) -> dict[tuple[str, int], int]:
    level = (
        IsolationLevel.READ_COMMITTED if isolation == "read_committed" else IsolationLevel.READ_UNCOMMITTED
    )
    if not partitions:
        return {}
    try:
        futures = admin.list_offsets(
            {tp: spec for tp in partitions}, isolation_level=level, request_timeout=ADMIN_TIMEOUT_S
        )
        return {
            (tp.topic, tp.partition): admin_result(admin, future).offset for tp, future in futures.items()
        }
    except KafkaException as exc:
        raise kafka_failure("list offsets", config, exc) from exc


def partition_offsets(
    admin: AdminClient,
    config: dict[str, Any],
    partitions: Iterable[tuple[str, int]],
    which: str = "latest",
    isolation: str = "read_uncommitted",
) -> dict[tuple[str, int], int]:
    """Each (topic, partition)'s `which` ("earliest" or "latest") offset in one batched ListOffsets
    request (one per partition leader): under read_uncommitted, its low or high watermark."""
    spec = OffsetSpec.earliest() if which == "earliest" else OffsetSpec.latest()
    wanted = [TopicPartition(topic, partition) for topic, partition in dict.fromkeys(partitions)]
    # A topic created a moment ago may not have its leaders everywhere yet (NOT_LEADER_FOR_PARTITION):
    # asked again at once for a while, instead of failing the task into its retry back-off.
    deadline = time.monotonic() + LIST_OFFSETS_RETRY_S
    while True:
        try:
            return _list_offsets(admin, config, wanted, spec, isolation)
        except KafkaOperationError as exc:
            if not exc.retryable or time.monotonic() > deadline:
                raise
        shutdown.sleep(0.2)


def snapshot_windows(
    admin: AdminClient,
    config: dict[str, Any],
    topics: Sequence[TopicEntry],
    previous: Manifest | None,
    isolation_level: str,
) -> list[PartitionWindow]:
    """For every partition: start at the previous backup's end (else the earliest offset), end at
    the last stable offset now. Records deleted by retention past the previous end become a gap."""
    partitions = [TopicPartition(t.name, p) for t in topics for p in range(t.partition_count)]
    earliest = _list_offsets(admin, config, partitions, OffsetSpec.earliest(), isolation_level)
    latest = _list_offsets(admin, config, partitions, OffsetSpec.latest(), isolation_level)
    windows = []
    for tp in partitions:
        where = (tp.topic, tp.partition)
        start = earliest[where]
        gap = None
        previous_entry = previous.partition(tp.topic, tp.partition) if previous else None
        if previous_entry is not None:
            if previous_entry.end_offset < start:
                gap = OffsetGap(first=previous_entry.end_offset, last=start - 1, cause="retention")
            else:
                start = previous_entry.end_offset
        windows.append(
            PartitionWindow(
                topic=tp.topic,
                partition=tp.partition,
                start=start,
                end=max(start, latest[where]),
                retention_gap=gap,
            )
        )
    return windows


def committed_group_offsets(
    admin: AdminClient, config: dict[str, Any], topics: Iterable[str]
) -> list[GroupOffsets]:
    """Every consumer group's committed offsets on the given topics."""
    wanted = set(topics)
    groups: list[GroupOffsets] = []
    try:
        listing = admin_result(admin, admin.list_consumer_groups(request_timeout=ADMIN_TIMEOUT_S))
        for group in sorted(g.group_id for g in listing.valid):
            if group.startswith("kbackup-"):
                continue  # our own export/restore bookkeeping
            future = admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group)], request_timeout=ADMIN_TIMEOUT_S
            )[group]
            offsets = tuple(
                CommittedOffset(
                    topic=tp.topic, partition=tp.partition, offset=tp.offset, metadata=tp.metadata or ""
                )
                for tp in sorted(
                    admin_result(admin, future).topic_partitions, key=lambda t: (t.topic, t.partition)
                )
                if tp.topic in wanted and tp.offset >= 0
            )
            if offsets:
                groups.append(GroupOffsets(group=group, offsets=offsets))
    except KafkaException as exc:
        raise kafka_failure("list consumer group offsets", config, exc) from exc
    return groups


def cluster_id(admin: AdminClient, config: dict[str, Any]) -> str | None:
    try:
        return admin_result(admin, admin.describe_cluster(request_timeout=ADMIN_TIMEOUT_S)).cluster_id
    except KafkaException as exc:
        raise kafka_failure("describe cluster", config, exc) from exc
