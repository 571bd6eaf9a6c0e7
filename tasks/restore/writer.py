"""The transactional writer of a restore unit: begin, produce, commit, resume.

One transactional producer per unit attempt (idempotent, acks=all). Every `batch` records, one
transaction holds the records *and*, through `send_offsets_to_transaction`, the number of
selected records restored so far as the committed offset of a restore-specific consumer group
(metadata: the last source offset and where in the target the restore started). A restore that
is killed loses its open transaction (the next `init_transactions` aborts it); started again,
it reads the committed count back (`committed`) and continues after it: no duplicates, no holes.

Every blocking call goes through `tasks.services.kafka.calls.bounded_call`: a call that has not returned
some seconds after its own timeout marks the producer wedged; it is abandoned and the unit
starts again with a fresh producer under the same transactional id, whose `init_transactions`
fences the old one and aborts its open transaction. Retriable errors are retried in place a few
times; `txn_requires_abort()` errors abort; fatal errors, and a unit that makes no progress (no
commit, no delivered record) for its recovery time, fail naming the target and what is
committed.

The producer reports failed deliveries only (delivery.report.only.error): no Python callback per
record, and a failed delivery also fails the transaction's commit, so nothing is committed past
one. Delivered records show as the producer's queue getting shorter (`len(producer)`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import NewPartitions

from layout.restore.plan import RestorePlan, RestoreUnit
from tasks.restore.errors import RestoreStalledError, TransactionFatalError
from tasks.runtime import shutdown
from tasks.services.errors import KafkaOperationError
from tasks.services.kafka.admin import admin_client, admin_result, kafka_failure
from tasks.services.kafka.calls import (
    LOOKUP_TIMEOUT_S,
    TXN_TIMEOUT_S,
    WATCHDOG_GRACE_S,
    CallStalledError,
    abandon,
    bounded_call,
    close_consumer,
    dispose,
)

IN_PLACE_RETRIES = 3  # retriable errors of one call before the unit starts again with a new producer
ANCHOR_PARTITION = 0  # the target partition each unit's bookkeeping offset is committed on
POLL_EVERY = 8192  # records between polls of the producer's events

log = logging.getLogger(__name__)


def unit_names(plan: RestorePlan, unit: RestoreUnit) -> tuple[str, str]:
    """(transactional.id, consumer group) of a unit: stable across reruns of the same restore."""
    name = f"kbackup-restore-{plan.restore_id}-{unit.target_topic}-{unit.unit_id}"
    return name, name


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


class AbortRequiredError(KafkaOperationError):
    """The open transaction failed in a way that needs an abort (`txn_requires_abort()`)."""

    def __init__(self, operation: str, reason: str) -> None:
        super().__init__(
            operation, f"{reason} (the transaction is aborted and produced again)", retryable=True
        )


# --- committed progress: where a unit resumes ----------------------------------------------


def committed(config: dict[str, Any], group: str, topic: str) -> tuple[int, dict[str, Any]]:
    """(records restored so far, metadata) of a unit, from its consumer group's committed offset;
    ({} metadata: the unit never began). Call it after `init_transactions`, which aborts a killed
    run's open transaction: until then its offsets hold the stable read back."""
    admin = admin_client(config)
    deadline = time.monotonic() + LOOKUP_TIMEOUT_S
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
        [request], require_stable=require_stable, request_timeout=LOOKUP_TIMEOUT_S
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


def high_watermarks(config: dict[str, Any], topic: str, partitions: list[int]) -> dict[int, int]:
    consumer = Consumer({**config, "group.id": "kbackup-restore-watermarks", "log_level": 3})
    try:
        result = {}
        for partition in partitions:
            operation = f"watermarks of {topic}/{partition}"
            try:
                where = TopicPartition(topic, partition)
                _, high = bounded_call(
                    operation,
                    lambda: consumer.get_watermark_offsets(where, timeout=LOOKUP_TIMEOUT_S),  # noqa: B023 - called at once
                    LOOKUP_TIMEOUT_S + WATCHDOG_GRACE_S,
                )
            except KafkaException as exc:
                raise kafka_failure(operation, config, exc) from exc
            result[partition] = high
        return result
    finally:
        close_consumer(consumer)


# --- one attempt's transactional producer -------------------------------------------------------


@dataclass
class UnitProgress:
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


class TransactionalWriter:
    """One attempt's transactional producer and group metadata; every call bounded, retriable
    errors retried in place a few times, the rest classified for restore_unit."""

    def __init__(
        self, kafka_config: dict[str, Any], transactional_id: str, group: str, progress: UnitProgress
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
                abandon(self.producer)
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
            abandon(self.producer)
        except Exception as exc:  # noqa: BLE001 - best effort; the next attempt fences
            log.warning("abort transaction of %s failed: %s", self.transactional_id, exc)

    def close(self) -> None:
        close_consumer(self.group_consumer)
        producer, self.producer = self.producer, None
        if not self.wedged:
            dispose(producer)

    def grow_topic(self, topic: str, partitions: int) -> int:
        """Add partitions to a topic this restore created; returns the new count once the producer
        sees them."""
        admin = admin_client(self.config)
        try:
            admin.create_partitions([NewPartitions(topic, partitions)])[topic].result(LOOKUP_TIMEOUT_S)
        except KafkaException as exc:
            raise kafka_failure(f"add partitions to {topic}", self.config, exc) from exc
        deadline = time.monotonic() + LOOKUP_TIMEOUT_S
        while time.monotonic() < deadline:
            found = self.producer.list_topics(topic, timeout=LOOKUP_TIMEOUT_S).topics.get(topic)
            if found is not None and len(found.partitions) >= partitions:
                return len(found.partitions)
            shutdown.sleep(0.2)
        raise KafkaOperationError(
            f"add partitions to {topic}", "the new partitions did not appear", retryable=True
        )
