"""Producing one restore unit, exactly once and resumably.

One transactional producer per unit (idempotent, acks=all). Every `batch` records, one
transaction holds the records *and*, through `send_offsets_to_transaction`, the number of
selected records restored so far as the committed offset of a restore-specific consumer group
(metadata: the last source offset and where in the target the restore started). A restore that
is killed loses its open transaction (the next `init_transactions` aborts it); started again,
it reads the committed count back and continues after it: no duplicates, no holes.

Before its first record a unit commits an empty transaction with count 0: from then on its
group's metadata says where in the target it began, so a rerun (and the check that refuses a
non-empty target) can tell the unit's own records from records that were there before.

Faults. librdkafka does not always return from a transactional call within the timeout it is
given: after a broker restart, `send_offsets_to_transaction` can wait forever (py-spy: blocked
in rd_kafka_txn_op_req0) for its TxnOffsetCommit, queued for a group coordinator the client
decommissioned when it re-bootstrapped (librdkafka issues 5456 and 5511). So every blocking
call runs under a watchdog (`bounded_call`): a call that has not returned some seconds after its
own timeout marks the producer wedged; it is abandoned (never destroyed: rd_kafka_destroy would
wait on it too) and the unit starts again with a fresh producer under the same transactional id,
whose `init_transactions` fences the old one and aborts its open transaction. Retriable errors
are retried; `txn_requires_abort()` errors abort; either way a fresh attempt reads the committed
count back and re-produces everything after it, so nothing is produced twice. Fatal errors, and a
unit that makes no progress (no commit, no delivered record) for `RECOVERY_S`, fail naming the
target and what is committed.

Records go from decoded columns (tasks.restore_records) to `produce` in a tight loop, without a
Python callback per record: the producer reports failed deliveries only
(delivery.report.only.error), and a failed delivery also fails the transaction's commit, so
nothing is committed past one. Delivered records show as the producer's queue getting shorter
(`len(producer)`), looked at every CHECK_EVERY records and while waiting on a full queue. Every loop also checks `tasks.shutdown`: a stop request aborts the
open transaction and ends the unit within seconds.

`restore_unit` is the plain function; `restore_unit_task` its thin retryable task.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import NewPartitions
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from formats.columns import header_lists, records_digest_inputs
from formats.envelope import TimestampType
from tasks import shutdown
from tasks.errors import KafkaOperationError, KbackupError, is_retryable
from tasks.kafka_admin import admin_client, admin_result, kafka_failure
from tasks.restore_errors import (
    CorruptObjectError,
    RestoreStalledError,
    TargetPartitionsError,
    TransactionFatalError,
    UnsupportedRestoreError,
)
from tasks.restore_plan import RestorePlan, RestoreUnit, Window
from tasks.restore_records import SegmentDigests, hash_rows, unit_records
from tasks.retry import RETRY_OPTIONS

ProgressCallback = Callable[[int, int], None]
T = TypeVar("T")
TIMEOUT_S = 60  # offset and metadata look-ups
TXN_TIMEOUT_S = 30  # the timeout each transactional call is given
WATCHDOG_GRACE_S = 15  # a call still running this long after its own timeout has wedged its client
STOP_GRACE_S = 5  # after a stop request, how long a call in flight may still finish
CLOSE_TIMEOUT_S = 10
RECOVERY_S = 120  # how long a unit retries without progress (a commit or a delivered record)
IN_PLACE_RETRIES = 3  # retriable errors of one call before the unit starts again with a new producer
CHECK_EVERY = 256  # records between stop checks (and looks at the producer's queue)
POLL_EVERY = 8192  # records between polls of the producer's events
CREATE_TIME = int(TimestampType.CREATE_TIME)
ANCHOR_PARTITION = 0  # the target partition each unit's bookkeeping offset is committed on

log = logging.getLogger(__name__)
# Clients wedged in a call that never returns: kept referenced so that they are never destroyed
# (rd_kafka_destroy would block on them); their daemon threads end with the process.
_ABANDONED: list[Any] = []


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


# --- bounded calls ---------------------------------------------------------------------------


class CallStalledError(KafkaOperationError):
    """A blocking call that did not return within its timeout plus WATCHDOG_GRACE_S: its client
    is wedged and must be replaced."""

    def __init__(self, operation: str, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(operation, f"no answer after {seconds:.0f} s (client wedged)", retryable=True)


class AbortRequiredError(KafkaOperationError):
    """The open transaction failed in a way that needs an abort (`txn_requires_abort()`)."""

    def __init__(self, operation: str, reason: str) -> None:
        super().__init__(
            operation, f"{reason} (the transaction is aborted and produced again)", retryable=True
        )


def bounded_call(operation: str, call: Callable[[], T], timeout_s: float) -> T:
    """Run a blocking client call in a daemon thread and wait at most `timeout_s` for it
    (`STOP_GRACE_S` once a stop was requested); raise CallStalledError when it has not returned,
    else return its result or raise its exception."""
    outcome: list[tuple[bool, Any]] = []
    finished = threading.Event()

    def run() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
            outcome.append((False, exc))
        finally:
            finished.set()

    threading.Thread(target=run, name=f"kbackup: {operation}", daemon=True).start()
    began = time.monotonic()
    deadline = began + timeout_s
    while not finished.wait(0.1):
        now = time.monotonic()
        if shutdown.stop_requested():
            deadline = min(deadline, now + STOP_GRACE_S)
        if now > deadline:
            raise CallStalledError(operation, now - began)
    ok, value = outcome[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


def _dispose(client: Any) -> None:
    """Let go of a client in a daemon thread: after a broker outage rd_kafka_destroy can wait on a
    broker thread that does not end, and the restore must not wait with it. The thread holds the
    last reference a moment, until the caller's own are gone, then destroys the client."""
    holder = [client]

    def release() -> None:
        time.sleep(1.0)
        holder.clear()

    threading.Thread(target=release, name="kbackup: dispose client", daemon=True).start()


def _close_consumer(consumer: Any) -> None:
    try:
        bounded_call("close consumer", consumer.close, CLOSE_TIMEOUT_S)
    except CallStalledError:
        _ABANDONED.append(consumer)
        return
    except Exception:  # noqa: BLE001 - closing is best effort
        pass
    _dispose(consumer)


# --- committed progress ------------------------------------------------------------------------


def _committed(config: dict[str, Any], group: str, topic: str) -> tuple[int, dict[str, Any]]:
    """(records restored so far, metadata) of a unit, from its consumer group's committed offset;
    ({} metadata: the unit never began). Call it after `init_transactions`, which aborts a killed
    run's open transaction: until then its offsets hold the stable read back."""
    admin = admin_client(config)
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        try:
            return _read_progress(admin, config, group, topic, require_stable=True)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            # The aborted transaction's offsets may still be settling at the group coordinator.
            unstable = isinstance(error, KafkaError) and error.code() == KafkaError.UNSTABLE_OFFSET_COMMIT
            if not unstable or time.monotonic() >= deadline:
                raise kafka_failure(f"read committed offsets of {group}", config, exc) from exc
            shutdown.sleep(0.2)


def _read_progress(
    admin: Any, config: dict[str, Any], group: str, topic: str, require_stable: bool
) -> tuple[int, dict[str, Any]]:
    """The unit's committed progress through the admin API, which (unlike a consumer's
    committed()) reports a missing group ACL at once as an authorization error."""
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, ANCHOR_PARTITION)])
    future = admin.list_consumer_group_offsets(
        [request], require_stable=require_stable, request_timeout=TIMEOUT_S
    )[group]
    [tp] = admin_result(admin, future).topic_partitions
    if tp.error is not None and tp.error.code() == KafkaError.UNSTABLE_OFFSET_COMMIT:
        raise KafkaException(tp.error)
    return _decode(tp)


def _decode(tp: Any) -> tuple[int, dict[str, Any]]:
    if tp.error or tp.offset < 0:
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


def committed_progress(
    kafka_config: dict[str, Any], plan: RestorePlan, units: Sequence[RestoreUnit]
) -> dict[str, CommittedProgress]:
    """Each unit's last *committed* progress, through the admin API without waiting for open
    transactions (require_stable=False): what a rerun would at least resume from."""
    admin = admin_client(kafka_config)
    result: dict[str, CommittedProgress] = {}
    for unit in units:
        _, group = unit_names(plan, unit)
        try:
            records, metadata = _read_progress(admin, kafka_config, group, unit.target_topic, False)
        except KafkaException as exc:
            raise kafka_failure(f"read committed offsets of {group}", kafka_config, exc) from exc
        starts = {int(p): int(o) for p, o in (metadata.get("starts") or {}).items()}
        result[unit.unit_id] = CommittedProgress(records=records, starts=starts)
    return result


def _high_watermarks(config: dict[str, Any], topic: str, partitions: list[int]) -> dict[int, int]:
    consumer = Consumer({**config, "group.id": "kbackup-restore-watermarks", "log_level": 3})
    try:
        result = {}
        for partition in partitions:
            operation = f"watermarks of {topic}/{partition}"
            try:
                where = TopicPartition(topic, partition)
                _, high = bounded_call(
                    operation,
                    lambda: consumer.get_watermark_offsets(where, timeout=TIMEOUT_S),  # noqa: B023 - called at once
                    TIMEOUT_S + WATCHDOG_GRACE_S,
                )
            except KafkaException as exc:
                raise kafka_failure(operation, config, exc) from exc
            result[partition] = high
        return result
    finally:
        _close_consumer(consumer)


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
        shutdown.sleep(0.2)
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
        "queue.buffering.max.kbytes": 64 * 1024,
        "queue.buffering.max.messages": 200_000,
        "transaction.timeout.ms": 120_000,
        "log_level": 3,
    }


# --- one attempt's transactional producer -------------------------------------------------------


@dataclass
class _Progress:
    """A unit's progress across its attempts: what is committed, and when anything last moved."""

    topic: str
    unit_id: str
    recovery_s: float
    committed: int = 0
    committed_bytes: int = 0  # key and value bytes this run produced and committed
    resumed_from: int | None = None
    last_moved: float = field(default_factory=time.monotonic)

    def moved(self) -> None:
        self.last_moved = time.monotonic()

    def expired(self) -> bool:
        return time.monotonic() - self.last_moved > self.recovery_s

    def stalled(self, reason: str) -> RestoreStalledError:
        return RestoreStalledError(
            self.topic, self.unit_id, self.committed, time.monotonic() - self.last_moved, reason
        )


class _Transactions:
    """One attempt's transactional producer and group metadata; every call bounded, retriable
    errors retried in place a few times, the rest classified for restore_unit."""

    def __init__(
        self, kafka_config: dict[str, Any], transactional_id: str, group: str, progress: _Progress
    ) -> None:
        self.config = kafka_config
        self.transactional_id = transactional_id
        self.group = group
        self.progress = progress
        self.producer: Any = Producer(
            {
                **producer_config(kafka_config, transactional_id),
                "delivery.report.only.error": True,
                "on_delivery": self.on_delivery,
            }
        )
        self.queued = 0  # the producer's queue length at the last look (see produced)
        self.unpolled = 0  # records produced since the last poll
        self.group_consumer: Any = Consumer(
            {**kafka_config, "group.id": group, "enable.auto.commit": False, "log_level": 3}
        )
        self.group_metadata = self.group_consumer.consumer_group_metadata()
        self.wedged = False
        self.in_transaction = False
        self.errors: list[Any] = []

    def on_delivery(self, err: Any, _msg: Any) -> None:
        """Called for failed deliveries only (delivery.report.only.error): no Python call per
        delivered record. A failure also fails the transaction's commit."""
        if err is not None:
            self.errors.append(err)

    def call(self, operation: str, fn: Callable[[], Any]) -> Any:
        for attempt in range(1, IN_PLACE_RETRIES + 1):
            try:
                return bounded_call(operation, fn, TXN_TIMEOUT_S + WATCHDOG_GRACE_S)
            except CallStalledError:
                self.wedged = True
                _ABANDONED.append(self.producer)
                raise
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                if not isinstance(error, KafkaError):
                    raise kafka_failure(operation, self.config, exc) from exc
                if error.fatal():
                    raise TransactionFatalError(
                        self.progress.topic,
                        self.progress.unit_id,
                        self.progress.committed,
                        f"{operation}: {error}",
                    ) from exc
                if error.txn_requires_abort():
                    raise AbortRequiredError(operation, str(error)) from exc
                if not error.retriable():
                    raise kafka_failure(operation, self.config, exc) from exc
                if attempt == IN_PLACE_RETRIES or self.progress.expired():
                    # a fresh producer is the cure for a client stuck in retriable errors
                    raise KafkaOperationError(operation, str(error), retryable=True) from exc
                shutdown.sleep(0.5 * attempt)
        raise AssertionError("unreachable")

    def init(self) -> None:
        self.call(
            f"init transactions of {self.transactional_id}",
            lambda: self.producer.init_transactions(TXN_TIMEOUT_S),
        )

    def begin(self) -> None:
        self.call(f"begin transaction of {self.transactional_id}", self.producer.begin_transaction)
        self.in_transaction = True

    def commit(self, topic: str, count: int, metadata: str) -> None:
        """Commit the open transaction with `count` as the unit's committed progress."""
        if not self.in_transaction:
            self.begin()
        offsets = [TopicPartition(topic, ANCHOR_PARTITION, count, metadata=metadata)]
        self.call(
            f"send offsets of {self.group}",
            lambda: self.producer.send_offsets_to_transaction(offsets, self.group_metadata, TXN_TIMEOUT_S),
        )
        self.call(
            f"commit transaction of {self.transactional_id}",
            lambda: self.producer.commit_transaction(TXN_TIMEOUT_S),
        )
        self.in_transaction = False
        if self.errors:  # a failed delivery makes the commit fail; never commit past one
            raise KafkaOperationError(f"produce to {topic}", str(self.errors[0]), retryable=False)
        self.progress.committed = count
        self.progress.moved()
        self.queued = len(self.producer)

    def delivered(self, produced: int = 0) -> None:
        """Progress without delivery reports: the queue is shorter than it was at the last look
        plus what was produced since, so records were delivered."""
        queued = len(self.producer)
        if queued < self.queued + produced:
            self.progress.moved()
        self.queued = queued

    def produced(self, count: int) -> None:
        """After `count` records were produced: note whether records were delivered meanwhile,
        and every POLL_EVERY records serve the producer's events (errors, the rare failed
        delivery). Not more often: poll releases the GIL, and taking it back behind the other
        units' threads costs up to a switch interval (py-spy: 15 % of a restore at every 256)."""
        self.unpolled += count
        if self.unpolled >= POLL_EVERY:
            self.producer.poll(0)
            self.unpolled = 0
        self.delivered(count)

    def produce_when_room(self, topic: str, value: bytes | None, key: bytes | None, **kwargs: Any) -> None:
        """Produce a record the full queue refused (BufferError): wait for deliveries, boundedly."""
        while True:
            self.producer.poll(0.05)
            self.delivered()
            shutdown.raise_if_stopping()
            if self.progress.expired():
                raise self.progress.stalled(f"produce to {topic}: no delivery report, the queue is full")
            try:
                self.producer.produce(topic, value, key, **kwargs)
                self.queued += 1
                return
            except BufferError:
                continue

    def abort(self) -> None:
        """Abort the open transaction, once and boundedly; a failure leaves it to the next
        `init_transactions` (or the broker's transaction timeout)."""
        if not self.in_transaction or self.wedged:
            return
        try:
            bounded_call(
                f"abort transaction of {self.transactional_id}",
                lambda: self.producer.abort_transaction(TXN_TIMEOUT_S),
                TXN_TIMEOUT_S + WATCHDOG_GRACE_S,
            )
            self.in_transaction = False
        except CallStalledError:
            self.wedged = True
            _ABANDONED.append(self.producer)
        except Exception as exc:  # noqa: BLE001 - best effort; the next attempt fences
            log.warning("abort transaction of %s failed: %s", self.transactional_id, exc)

    def close(self) -> None:
        _close_consumer(self.group_consumer)
        producer, self.producer = self.producer, None
        if not self.wedged:
            _dispose(producer)


# --- the unit --------------------------------------------------------------------------------


def restore_unit(
    plan: RestorePlan,
    unit: RestoreUnit,
    kafka_config: dict[str, Any],
    s3: Any,
    target_partitions: int,
    on_progress: ProgressCallback | None = None,
    grow_target: bool = False,
    recovery_s: float = RECOVERY_S,
) -> UnitResult:
    """Produce the unit's selected records into the target, resuming after what a previous run
    of the same restore committed. With `grow_target` (a topic this restore created, records
    routed by their metadata's partition), the topic gets the partitions the records name.
    Raises (naming the object) on corrupt objects and ordering violations; what was committed
    before stays and is resumed from. A broker outage is ridden out: the unit starts again from
    its committed count with a fresh producer until it goes `recovery_s` without progress, then
    fails with RestoreStalledError."""
    started = time.monotonic()
    progress = _Progress(unit.target_topic, unit.unit_id, recovery_s)
    attempt = 0
    while True:
        attempt += 1
        try:
            result = _attempt(
                plan, unit, kafka_config, s3, target_partitions, on_progress, grow_target, progress
            )
        except (RestoreStalledError, TransactionFatalError):
            raise
        except KbackupError as exc:
            if not is_retryable(exc):
                raise
            if progress.expired():
                raise progress.stalled(str(exc)) from exc
            log.warning(
                "restore of %s into %s: %s; starting again after its %d committed records",
                unit.unit_id,
                unit.target_topic,
                exc,
                progress.committed,
            )
            shutdown.sleep(min(1.0 * attempt, 5.0))
            continue
        return result.model_copy(update={"seconds": round(time.monotonic() - started, 3)})


def _attempt(
    plan: RestorePlan,
    unit: RestoreUnit,
    kafka_config: dict[str, Any],
    s3: Any,
    target_partitions: int,
    on_progress: ProgressCallback | None,
    grow_target: bool,
    progress: _Progress,
) -> UnitResult:
    """One pass over the unit's records with one producer, producing what comes after the
    committed count."""
    transactional_id, group = unit_names(plan, unit)
    topic = unit.target_topic
    txn = _Transactions(kafka_config, transactional_id, group, progress)
    try:
        # First fence a killed (or wedged) earlier producer: init_transactions aborts its open
        # transaction, which otherwise holds the group's committed offset (read below).
        txn.init()
        done, metadata = _committed(kafka_config, group, topic)
        progress.committed = done
        if progress.resumed_from is None:
            progress.resumed_from = done
        progress.moved()
        return _produce(
            plan, unit, kafka_config, s3, target_partitions, on_progress, grow_target, txn, done, metadata
        )
    except BaseException:
        txn.abort()
        raise
    finally:
        txn.close()


def window_mask(window: Window, offsets: np.ndarray, timestamps: pa.Array) -> np.ndarray | None:
    """`window.admits(offset, timestamp)` for every record at once; None when all are admitted."""
    mask: np.ndarray | None = None

    def narrow(condition: np.ndarray) -> None:
        nonlocal mask
        mask = condition if mask is None else mask & condition

    if window.from_offset is not None:
        narrow(offsets >= window.from_offset)
    if window.to_offset is not None:
        narrow(offsets < window.to_offset)
    if window.from_timestamp is not None or window.to_timestamp is not None:
        present = timestamps.is_valid().to_numpy(zero_copy_only=False)
        values = pc.fill_null(timestamps, 0).to_numpy(zero_copy_only=False)
        narrow(present)
        if window.from_timestamp is not None:
            narrow(values >= window.from_timestamp)
        if window.to_timestamp is not None:
            narrow(values < window.to_timestamp)
    if mask is not None and mask.all():
        return None
    return mask


def _lengths(array: pa.Array) -> np.ndarray:
    return pc.fill_null(pc.binary_length(array), 0).to_numpy(zero_copy_only=False).astype(np.int64)


def _produce(
    plan: RestorePlan,
    unit: RestoreUnit,
    kafka_config: dict[str, Any],
    s3: Any,
    target_partitions: int,
    on_progress: ProgressCallback | None,
    grow_target: bool,
    txn: _Transactions,
    done: int,
    metadata: dict[str, Any],
) -> UnitResult:
    """The unit's records a decoded batch at a time: the window, routing and digests computed
    on columns, then one tight `produce` loop per batch (no callback per record; a failed
    delivery fails the transaction's commit), committing every `plan.batch` records."""
    topic = unit.target_topic
    if unit.routing == "preserve":
        assert unit.target_partition is not None
        partitions = [unit.target_partition]
    else:
        partitions = list(range(target_partitions))
    starts = {int(p): o for p, o in metadata.get("starts", {}).items()}
    if not starts:
        starts = _high_watermarks(kafka_config, topic, partitions)
    window = plan.window
    digests = {p: hashlib.sha256() for p in partitions}
    counts = dict.fromkeys(partitions, 0)
    segment_digests = SegmentDigests(unit)
    pending = sorted(unit.translate_offsets)
    points: dict[int, int] = {}
    selected = decoded = 0
    written_bytes = txn.progress.committed_bytes  # an earlier attempt's committed part counts
    in_transaction = 0
    timestamps_kept = True
    last_source: int | None = None
    objects_seen: set[str] = set()
    last_report = 0.0
    batch_size = max(1, plan.batch)

    def commit(count: int) -> None:
        nonlocal in_transaction
        txn.commit(topic, count, json.dumps({"src": last_source, "starts": starts}, separators=(",", ":")))
        txn.progress.committed_bytes = written_bytes
        in_transaction = 0

    if not metadata:
        # Mark the beginning before the first record: the group's metadata now says where in the
        # target this unit began, so its own records are never taken for someone else's.
        commit(0)
    for source in unit_records(s3, plan, unit):
        shutdown.raise_if_stopping()
        decoded += source.batch.num_rows
        objects_seen.update(source.objects)
        source_inputs = segment_digests.add(source.batch, source.offsets)
        batch, offsets = source.batch, source.offsets
        mask = window_mask(window, offsets, batch.column("timestamp"))
        if mask is not None:
            if not mask.any():
                continue
            chosen = pa.array(mask)
            batch, offsets = batch.filter(chosen), offsets[mask]
            source_inputs = None if source_inputs is None else source_inputs.filter(chosen)
        rows = batch.num_rows
        first = selected  # selected records before this batch
        start = 0
        while pending:  # the first selected record at or after each translated offset
            at = np.flatnonzero(offsets[start:] >= pending[0])
            if not len(at):
                break
            start += int(at[0])
            points[pending.pop(0)] = first + start
        keys = batch.column("key")
        if unit.routing == "preserve":
            assert unit.target_partition is not None
            targets = np.full(rows, unit.target_partition, dtype=np.int64)
        elif unit.routing == "metadata":
            targets = batch.column("partition").to_numpy(zero_copy_only=False).astype(np.int64)
            top = int(targets.max())
            if top >= target_partitions:
                if not grow_target:
                    beyond = int(targets[np.argmax(targets >= target_partitions)])
                    raise TargetPartitionsError(topic, beyond + 1, target_partitions)
                target_partitions = _grow_topic(kafka_config, txn.producer, topic, top + 1)
                for added in range(len(partitions), target_partitions):
                    partitions.append(added)
                    starts[added] = 0
                    digests[added] = hashlib.sha256()
                    counts[added] = 0
        else:
            targets = (first + np.arange(rows, dtype=np.int64)) % target_partitions
            if unit.routing == "murmur2" and keys.null_count < rows:
                for index, key in enumerate(keys.to_pylist()):
                    if key is not None:
                        targets[index] = murmur2_partition(key, target_partitions)
        # What is written: the same key, value and headers; the timestamp when there is one, as
        # CreateTime (else none). Hash the source's digest inputs again when those are the bytes.
        timestamps = batch.column("timestamp")
        if timestamps.null_count:
            timestamps_kept = False
        written_types = np.where(timestamps.is_valid().to_numpy(zero_copy_only=False), CREATE_TIME, 0).astype(
            np.int8
        )
        inputs = source_inputs
        if inputs is None or not np.array_equal(
            written_types, batch.column("timestamp_type").to_numpy(zero_copy_only=False)
        ):
            inputs = records_digest_inputs(batch, timestamp_type=pa.array(written_types, pa.int8()))
        for partition in np.unique(targets).tolist():
            chosen_rows = np.flatnonzero(targets == partition)
            hash_rows(digests[partition], inputs, chosen_rows)
            counts[partition] += len(chosen_rows)
        selected += rows
        skip = min(rows, max(0, done - first))  # restored by an earlier run
        if skip < rows:
            tail = batch.slice(skip)
            values = tail.column("value").to_pylist()
            tail_keys = tail.column("key").to_pylist()
            headers = header_lists(tail.column("headers"))
            stamps = pc.fill_null(tail.column("timestamp"), 0).to_numpy(zero_copy_only=False).tolist()
            where = targets[skip:].tolist()
            sizes = np.cumsum(_lengths(tail.column("key")) + _lengths(tail.column("value"))).tolist()
            tail_offsets = offsets[skip:]
            base_bytes = written_bytes
            produce = txn.producer.produce
            count = len(values)
            position = 0
            while position < count:
                if in_transaction == 0:
                    txn.begin()
                end = min(count, position + CHECK_EVERY, position + batch_size - in_transaction)
                for i in range(position, end):
                    try:
                        produce(
                            topic,
                            values[i],
                            tail_keys[i],
                            partition=where[i],
                            headers=headers[i] or None,
                            timestamp=stamps[i],
                        )
                    except BufferError:  # the queue is full: wait for deliveries, boundedly
                        txn.produce_when_room(
                            topic,
                            values[i],
                            tail_keys[i],
                            partition=where[i],
                            headers=headers[i] or None,
                            timestamp=stamps[i],
                        )
                txn.produced(end - position)
                in_transaction += end - position
                written_bytes = base_bytes + sizes[end - 1]
                last_source = int(tail_offsets[end - 1])
                position = end
                shutdown.raise_if_stopping()
                if in_transaction >= batch_size:
                    commit(first + skip + end)
                if on_progress and time.monotonic() - last_report > 0.5:
                    on_progress(first + skip + end, written_bytes)
                    last_report = time.monotonic()
        last_source = int(offsets[-1])
    if in_transaction:
        commit(selected)
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
    resumed_from = txn.progress.resumed_from or 0
    return UnitResult(
        unit_id=unit.unit_id,
        source_topic=unit.source_topic,
        source_partition=unit.source_partition,
        target_topic=topic,
        routing=unit.routing,
        selected=selected,
        produced=max(0, selected - resumed_from),
        resumed_after=min(resumed_from, selected),
        decoded=decoded,
        bytes=written_bytes,
        objects=len(objects_seen),
        seconds=0.0,
        partitions={
            p: PartitionOutcome(
                start_offset=starts.get(p, 0), records=counts[p], digest="sha256:" + digests[p].hexdigest()
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
