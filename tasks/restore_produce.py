"""Producing one restore unit, exactly once and resumably.

One transactional producer per unit (idempotent, acks=all). Every `batch` records, one
transaction holds the records *and*, through `send_offsets_to_transaction`, the number of
selected records restored so far as the committed offset of a restore-specific consumer group
(metadata: the last source offset and where in the target the restore started). A restore that
is killed loses its open transaction (the next `init_transactions` aborts it); started again,
it reads the committed count back and continues after it: no duplicates, no holes.

`restore_unit` is the plain function; `restore_unit_task` its thin retryable task.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import NewPartitions
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from formats import RecordsDigest
from formats.envelope import TimestampType
from tasks.errors import KafkaOperationError
from tasks.kafka_admin import admin_client, kafka_failure
from tasks.restore_errors import CorruptObjectError, TargetPartitionsError, UnsupportedRestoreError
from tasks.restore_plan import RestorePlan, RestoreUnit
from tasks.restore_records import SegmentDigests, unit_records
from tasks.retry import RETRY_OPTIONS

ProgressCallback = Callable[[int, int], None]
TIMEOUT_S = 60
ANCHOR_PARTITION = 0  # the target partition each unit's bookkeeping offset is committed on


class PartitionOutcome(BaseModel):
    """What one unit put into one target partition (this run and earlier runs together)."""

    start_offset: int = Field(description="Target offset where the restore began (before its first record).")
    records: int = 0
    digest: str = Field(default="", description="Records digest of what was produced, in order.")


class UnitResult(BaseModel):
    unit_id: str
    source_topic: str | None
    source_partition: int | None
    target_topic: str
    routing: str
    selected: int = Field(description="Records selected from the backup (window and filter applied).")
    produced: int = Field(description="Records produced by this run (the rest were restored before).")
    resumed_after: int = Field(description="Records already restored when this run started.")
    decoded: int
    bytes: int
    objects: int
    seconds: float
    partitions: dict[int, PartitionOutcome]
    timestamps_kept: bool
    translate_points: dict[int, int] = Field(
        default_factory=dict,
        description="Source offset -> index of the first selected record at or after it.",
    )
    last_source_offset: int | None = None
    problems: list[str] = Field(default_factory=list)


def unit_names(plan: RestorePlan, unit: RestoreUnit) -> tuple[str, str]:
    """(transactional.id, consumer group) of a unit: stable across reruns of the same restore."""
    name = f"kbackup-restore-{plan.restore_id}-{unit.target_topic}-{unit.unit_id}"
    return name, name


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (Java `Utils.murmur2`), as a signed 32-bit int."""
    length = len(data)
    seed = 0x9747B28C
    m = 0x5BD1E995
    h = (seed ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    rest = length % 4
    tail = length - rest
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def murmur2_partition(key: bytes, partitions: int) -> int:
    """The partition Java's default partitioner picks for a non-null key."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def to_bytes(value: Any, converter: str = "bytes") -> bytes | None:
    """A decoded key/value/header back into the bytes a Kafka record holds."""
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str) and converter != "json":
        return value.encode()
    if converter == "avro":
        raise UnsupportedRestoreError("restoring with the avro converter (schema registry) is not supported")
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _header_bytes(value: Any) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, (int, float)):
        return str(value).encode()
    return to_bytes(value, "json")


def _committed(config: dict[str, Any], group: str, topic: str) -> tuple[int, dict[str, Any]]:
    """(records restored so far, metadata) of a unit, from its consumer group's committed offset."""
    consumer = Consumer({**config, "group.id": group, "enable.auto.commit": False, "log_level": 3})
    try:
        try:
            [tp] = consumer.committed([TopicPartition(topic, ANCHOR_PARTITION)], timeout=TIMEOUT_S)
        except KafkaException as exc:
            raise kafka_failure(f"read committed offsets of {group}", config, exc) from exc
        if tp.error or tp.offset < 0:
            return 0, {}
        try:
            metadata = json.loads(tp.metadata or "{}")
        except ValueError:
            metadata = {}
        return tp.offset, metadata
    finally:
        with contextlib.suppress(Exception):
            consumer.close()


def _high_watermarks(config: dict[str, Any], topic: str, partitions: list[int]) -> dict[int, int]:
    consumer = Consumer({**config, "group.id": "kbackup-restore-watermarks", "log_level": 3})
    try:
        result = {}
        for partition in partitions:
            try:
                _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=TIMEOUT_S)
            except KafkaException as exc:
                raise kafka_failure(f"watermarks of {topic}/{partition}", config, exc) from exc
            result[partition] = high
        return result
    finally:
        with contextlib.suppress(Exception):
            consumer.close()


def _grow_topic(config: dict[str, Any], producer: Producer, topic: str, partitions: int) -> int:
    """Add partitions to a topic this restore created; returns the new count once the producer
    sees them."""
    admin = admin_client(config)
    try:
        admin.create_partitions([NewPartitions(topic, partitions)])[topic].result(TIMEOUT_S)
    except KafkaException as exc:
        raise kafka_failure(f"add partitions to {topic}", config, exc) from exc
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        found = producer.list_topics(topic, timeout=TIMEOUT_S).topics.get(topic)
        if found is not None and len(found.partitions) >= partitions:
            return len(found.partitions)
        time.sleep(0.2)
    raise KafkaOperationError(
        f"add partitions to {topic}", "the new partitions did not appear", retryable=True
    )


def producer_config(config: dict[str, Any], transactional_id: str) -> dict[str, Any]:
    return {
        **config,
        "transactional.id": transactional_id,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 20,
        "batch.size": 1_000_000,
        "message.max.bytes": 16 * 1024 * 1024,
        "queue.buffering.max.kbytes": 512 * 1024,
        "queue.buffering.max.messages": 200_000,
        "transaction.timeout.ms": 120_000,
        "log_level": 3,
    }


def _kafka_call(config: dict[str, Any], operation: str, call: Callable[[], Any]) -> Any:
    try:
        return call()
    except KafkaException as exc:
        error = exc.args[0] if exc.args else None
        if isinstance(error, KafkaError) and error.retriable():
            raise KafkaOperationError(operation, str(error), retryable=True) from exc
        raise kafka_failure(operation, config, exc) from exc


def restore_unit(
    plan: RestorePlan,
    unit: RestoreUnit,
    kafka_config: dict[str, Any],
    s3: Any,
    target_partitions: int,
    on_progress: ProgressCallback | None = None,
    grow_target: bool = False,
) -> UnitResult:
    """Produce the unit's selected records into the target, resuming after what a previous run
    of the same restore committed. With `grow_target` (a topic this restore created, records
    routed by their metadata's partition), the topic gets the partitions the records name.
    Raises (naming the object) on corrupt objects and ordering violations; what was committed
    before stays and is resumed from."""
    started = time.monotonic()
    transactional_id, group = unit_names(plan, unit)
    topic = unit.target_topic
    producer = Producer(producer_config(kafka_config, transactional_id))
    # First fence a killed earlier run: init_transactions aborts its open transaction, which
    # otherwise holds the group's committed offset (read below) until the transaction times out.
    _kafka_call(
        kafka_config,
        f"init transactions of {transactional_id}",
        lambda: producer.init_transactions(TIMEOUT_S),
    )
    done, metadata = _committed(kafka_config, group, topic)
    if unit.routing == "preserve":
        assert unit.target_partition is not None
        partitions = [unit.target_partition]
    else:
        partitions = list(range(target_partitions))
    starts = {int(p): o for p, o in metadata.get("starts", {}).items()}
    if not starts:
        starts = _high_watermarks(kafka_config, topic, partitions)
    group_consumer = Consumer(
        {**kafka_config, "group.id": group, "enable.auto.commit": False, "log_level": 3}
    )
    group_metadata = group_consumer.consumer_group_metadata()
    errors: list[Any] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(err)

    key_converter = str(plan.codec_spec.get("key_converter") or "bytes")
    value_converter = str(plan.codec_spec.get("value_converter") or "bytes")
    window = plan.window
    digests = {p: RecordsDigest() for p in partitions}
    counts = dict.fromkeys(partitions, 0)
    segment_digests = SegmentDigests(unit)
    pending = sorted(unit.translate_offsets)
    points: dict[int, int] = {}
    selected = produced = decoded = written_bytes = 0
    in_transaction = 0
    timestamps_kept = True
    last_source: int | None = None
    objects_seen: set[str] = set()
    last_report = 0.0
    batch = max(1, plan.batch)

    def commit(count: int) -> None:
        nonlocal in_transaction
        offsets_metadata = json.dumps({"src": last_source, "starts": starts}, separators=(",", ":"))
        offsets = [TopicPartition(topic, ANCHOR_PARTITION, count, metadata=offsets_metadata)]
        _kafka_call(
            kafka_config,
            f"send offsets of {group}",
            lambda: producer.send_offsets_to_transaction(offsets, group_metadata, TIMEOUT_S),
        )
        _kafka_call(
            kafka_config,
            f"commit transaction of {transactional_id}",
            lambda: producer.commit_transaction(TIMEOUT_S),
        )
        if errors:
            raise KafkaOperationError(f"produce to {topic}", str(errors[0]), retryable=False)
        in_transaction = 0

    try:
        for item in unit_records(s3, plan, unit):
            decoded += 1
            objects_seen.add(item.object_key)
            record = item.record
            source_digest = segment_digests.add(item)
            if not window.admits(item.offset, record.timestamp):
                continue
            while pending and item.offset >= pending[0]:
                points[pending.pop(0)] = selected
            key = to_bytes(record.key, key_converter)
            value = to_bytes(record.value, value_converter)
            headers = [(name, _header_bytes(v)) for name, v in record.headers]
            if unit.routing == "preserve":
                partition = unit.target_partition
            elif unit.routing == "metadata":
                partition = record.partition
                if partition >= target_partitions:
                    if not grow_target:
                        raise TargetPartitionsError(topic, partition + 1, target_partitions)
                    target_partitions = _grow_topic(kafka_config, producer, topic, partition + 1)
                    for added in range(len(partitions), target_partitions):
                        partitions.append(added)
                        starts[added] = 0
                        digests[added] = RecordsDigest()
                        counts[added] = 0
            elif key is not None and unit.routing == "murmur2":
                partition = murmur2_partition(key, target_partitions)
            else:
                partition = selected % target_partitions
            assert partition is not None
            timestamp = record.timestamp
            if timestamp is None:
                timestamps_kept = False
            ts_type = int(TimestampType.CREATE_TIME) if timestamp is not None else 0
            restored_headers = tuple(headers)
            if (
                source_digest is not None
                and key is record.key
                and value is record.value
                and ts_type == record.timestamp_type
                and restored_headers == record.headers
            ):
                digests[partition].update_input(source_digest)  # the same bytes: hash them once
            else:
                digests[partition].update(key, value, restored_headers, timestamp, ts_type)
            counts[partition] += 1
            selected += 1
            last_source = item.offset
            if selected <= done:
                continue
            if in_transaction == 0:
                _kafka_call(
                    kafka_config, f"begin transaction of {transactional_id}", producer.begin_transaction
                )
            kwargs: dict[str, Any] = {"partition": partition, "on_delivery": on_delivery}
            if headers:
                kwargs["headers"] = headers
            if timestamp is not None:
                kwargs["timestamp"] = timestamp
            while True:
                try:
                    producer.produce(topic, value, key, **kwargs)
                    break
                except BufferError:
                    producer.poll(0.05)
            if produced % 256 == 0:
                producer.poll(0)  # delivery callbacks; often enough, not per record
            produced += 1
            in_transaction += 1
            written_bytes += (len(key) if key else 0) + (len(value) if value else 0)
            if in_transaction >= batch:
                commit(selected)
            if on_progress and time.monotonic() - last_report > 0.5:
                on_progress(selected, written_bytes)
                last_report = time.monotonic()
        if in_transaction:
            commit(selected)
    except BaseException:
        if in_transaction:
            with contextlib.suppress(Exception):
                producer.abort_transaction(TIMEOUT_S)
        raise
    finally:
        with contextlib.suppress(Exception):
            group_consumer.close()
    while pending:
        points[pending.pop(0)] = selected
    if selected < done:
        raise CorruptObjectError(
            plan.bucket,
            unit.objects[-1].key if unit.objects else plan.prefix,
            f"a previous run of this restore committed {done} records but the backup now yields only {selected}",
        )
    problems = segment_digests.mismatches()
    if problems:
        raise CorruptObjectError(
            plan.bucket, unit.objects[-1].key if unit.objects else plan.prefix, "; ".join(problems)
        )
    if on_progress:
        on_progress(selected, written_bytes)
    return UnitResult(
        unit_id=unit.unit_id,
        source_topic=unit.source_topic,
        source_partition=unit.source_partition,
        target_topic=topic,
        routing=unit.routing,
        selected=selected,
        produced=produced,
        resumed_after=min(done, selected),
        decoded=decoded,
        bytes=written_bytes,
        objects=len(objects_seen),
        seconds=round(time.monotonic() - started, 3),
        partitions={
            p: PartitionOutcome(
                start_offset=starts.get(p, 0), records=counts[p], digest=digests[p].hexdigest()
            )
            for p in partitions
            if counts[p]
        },
        timestamps_kept=timestamps_kept,
        translate_points=points,
        last_source_offset=last_source,
    )


@task(
    name="restore-partition",
    cache_policy=NO_CACHE,
    task_run_name="restore {unit.unit_id} → {unit.target_topic}",
    **RETRY_OPTIONS,
)
def restore_unit_task(
    plan: RestorePlan, unit: RestoreUnit, target_partitions: int, grow_target: bool = False
) -> UnitResult:
    from kbackup.settings import KafkaSettings
    from tasks.progress import report_progress
    from tasks.s3 import s3_client

    total = sum(o.record_count or 0 for o in unit.objects)

    def on_progress(records: int, written: int) -> None:
        report_progress(unit.target_topic, unit.source_partition or 0, records, max(total, records), written)

    return restore_unit(
        plan, unit, KafkaSettings().client_config(), s3_client(), target_partitions, on_progress, grow_target
    )
