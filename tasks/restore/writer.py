"""The transactional writer of a restore work unit: begin, produce, commit, resume.

One transactional producer per work-unit attempt (idempotent, acks=all), under the id of the
work unit's slot (`slot_id`, kbackup-restore-{restore_id}-w{slot}). A work unit restores several
units (source partitions) one after another; every `batch` records, one transaction holds the
records *and* each unit's number of selected records restored so far, for every unit whose count
moved in it, as a committed offset (metadata: the last source offset and where in the target the
unit began) where layout.restore.progress keeps it: the units that alone write their target
partition in the restore's progress group, on that partition, all of them through one
`send_offsets_to_transaction` (two broker round trips, AddOffsetsToTxn and TxnOffsetCommit); the
others each in its own group (one call per unit). A restore that is killed loses its open
transaction (fencing aborts it, tasks.restore.fence); started again, each unit reads its committed
count back (`committed`, one request per group, all at once) and continues after it: no
duplicates, no holes, however the units are grouped this time.

Every blocking call goes through `tasks.services.kafka.calls.bounded_call`: a call that has not returned
some seconds after its own timeout marks the producer wedged; it is abandoned and the work unit
starts again with a fresh producer under the same transactional id, whose `init_transactions`
fences the old one and aborts its open transaction. Retriable errors are retried in place a few
times; `txn_requires_abort()` errors abort; fatal errors, and a work unit that makes no progress
(no commit, no delivered record) for its recovery time, fail naming the target and what is
committed.

The producer reports failed deliveries only (delivery.report.only.error): no Python callback per
record, and a failed delivery also fails the transaction's commit, so nothing is committed past
one. Delivered records show as the producer's queue getting shorter (`len(producer)`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import (
    KafkaError,
    KafkaException,
    Producer,
)
from confluent_kafka.admin import NewPartitions

from layout.restore.plan import RestorePlan, RestoreUnit
from layout.restore.progress import (
    unit_group,
)
from tasks.restore.committed import GroupCommit, by_group, group_metadata
from tasks.restore.errors import RestoreStalledError, TransactionFatalError
from tasks.runtime import shutdown
from tasks.services.errors import KafkaOperationError
from tasks.services.kafka.admin import admin_client, kafka_failure
from tasks.services.kafka.calls import (
    LOOKUP_TIMEOUT_S,
    TXN_TIMEOUT_S,
    WATCHDOG_GRACE_S,
    CallStalledError,
    abandon,
    bounded_call,
    dispose,
)

REFUSED_RECORDS = frozenset(
    {
        KafkaError.INVALID_RECORD,  # e.g. a record without a key into a compacted topic
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_TIMESTAMP,  # outside the target's message.timestamp.*.max.ms
        KafkaError.POLICY_VIOLATION,
    }
)
"""Delivery errors that say the broker refuses the record itself: the same record is refused again
whatever the producer, so the restore fails at once instead of starting the transaction again."""
IN_PLACE_RETRIES = 3  # retriable errors of one call before the work unit starts again with a new producer
POLL_EVERY = 8192  # records between polls of the producer's events

log = logging.getLogger(__name__)


def unit_names(plan: RestorePlan, unit: RestoreUnit) -> tuple[str, str]:
    """(transactional.id, consumer group) of a unit: stable across reruns of the same restore.
    The group holds the unit's progress where it is not kept in the progress group
    (layout.restore.progress); the transactional id is the one restores made before work units
    (one producer per unit), fenced when such a restore is resumed."""
    name = unit_group(plan, unit)
    return name, name


def slot_id(plan: RestorePlan, slot: int) -> str:
    """The transactional.id of a work unit's slot (0..N-1): the same slot of every run of a restore
    shares it, so that a rerun's producer fences the earlier run's."""
    return f"kbackup-restore-{plan.restore_id}-w{slot}"


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


# --- one attempt's transactional producer -------------------------------------------------------


@dataclass
class UnitProgress:
    """A work unit's progress across its attempts: what is committed (records of all its units),
    and when anything last moved. `topic` names its targets, `unit_id` the work unit."""

    topic: str
    unit_id: str
    recovery_s: float
    committed: int = 0
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
    """One attempt's transactional producer; every call bounded, retriable errors retried in place
    a few times, the rest classified for the work unit (tasks.restore.work)."""

    def __init__(self, kafka_config: dict[str, Any], transactional_id: str, progress: UnitProgress) -> None:
        self.config = kafka_config
        self.transactional_id = transactional_id
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
        self.wedged = False
        self.in_transaction = False
        self.errors: list[Any] = []
        self.refused: tuple[Any, str] | None = None  # (the error, where) of a record the broker refuses

    def on_delivery(self, err: Any, msg: Any) -> None:
        """Called for failed deliveries only (delivery.report.only.error): no Python call per
        delivered record. A failure also fails the transaction's commit."""
        if err is not None:
            self.errors.append(err)
            if self.refused is None and err.code() in REFUSED_RECORDS:
                self.refused = (err, f"{msg.topic()}[{msg.partition()}]")

    def raise_if_refused(self, operation: str) -> None:
        """A record the broker refuses (REFUSED_RECORDS) fails the work unit, not retried: its
        open transaction is aborted, so nothing of it is committed."""
        if self.refused is not None:
            error, where = self.refused
            raise KafkaOperationError(
                f"produce to {where}",
                f"the broker refuses a record ({error.name()}: {error.str()}); producing it again cannot "
                f"help, so the restore stops (found at {operation}; the open transaction is not committed)",
                retryable=False,
            )

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
                    self.producer.poll(0)  # serve the failed deliveries' reports
                    self.raise_if_refused(operation)
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

    def commit(self, offsets: Sequence[GroupCommit]) -> None:
        """Commit the open transaction with each unit's progress in `offsets`: one
        send_offsets_to_transaction per group, with all its partitions (librdkafka takes several
        groups in a transaction)."""
        if not self.in_transaction:
            self.begin()
        for group, where in by_group(offsets).items():
            metadata = group_metadata(self.config, group)
            self.call(
                f"send offsets of {group}",
                lambda: self.producer.send_offsets_to_transaction(where, metadata, TXN_TIMEOUT_S),  # noqa: B023 - called at once
            )
        self.call(
            f"commit transaction of {self.transactional_id}",
            lambda: self.producer.commit_transaction(TXN_TIMEOUT_S),
        )
        self.in_transaction = False
        if self.errors:  # a failed delivery makes the commit fail; never commit past one
            raise KafkaOperationError(
                f"produce to {self.progress.topic}", str(self.errors[0]), retryable=False
            )
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
