"""Reading one partition's window [start, end) with confluent-kafka, in batches."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any, cast

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from formats import Header
from tasks.runtime.shutdown import raise_if_stopping
from tasks.services.errors import KafkaOperationError
from tasks.services.kafka.admin import kafka_failure

BATCH = 10_000
# Give up (retryably) when the broker sends nothing at all for this long.
IDLE_LIMIT_S = 120
POLL_S = 0.05


def consumed_headers(message: Message) -> tuple[Header, ...]:
    """A consumed record's headers as a tuple of (name, value) pairs, () when it has none.

    confluent-kafka types Message.headers() with the producer's input union (a dict, or str
    values); what the consumer returns is a list of (str, bytes | None) tuples or None.
    """
    return tuple(cast("list[Header] | None", message.headers()) or ())


def window_consumer(config: dict[str, Any], isolation_level: str, group: str) -> Consumer:
    return Consumer(
        {
            **config,
            "group.id": group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "error",
            "isolation.level": isolation_level,
            "fetch.max.bytes": 64 * 1024 * 1024,
            "max.partition.fetch.bytes": 16 * 1024 * 1024,
            "fetch.message.max.bytes": 16 * 1024 * 1024,
            # Prefetch per consumer (one per partition being exported): enough to keep the export
            # busy; more only adds to the backup's memory.
            "queued.max.messages.kbytes": 32 * 1024,
            "fetch.wait.max.ms": 100,
            "log_level": 3,
        }
    )


def consumed_batches(
    consumer: Consumer, config: dict[str, Any], operation: str, idle_limit_s: float = IDLE_LIMIT_S
) -> Iterator[tuple[list[Message], bool]]:
    """The assigned partition's records a consumed batch at a time, as (records, at_end):
    `records` holds the batch's records in offset order (possibly none), `at_end` whether the
    batch brought the end-of-partition event (enable.partition.eof). Checks for a stop request
    between batches; raises naming `operation` on any other consume error, and retryably when
    the broker sends nothing at all for `idle_limit_s`."""
    last_data = time.monotonic()
    while True:
        raise_if_stopping()
        try:
            # A short timeout: consume() waits for a full batch until the timeout even after
            # the end of the partition, so a long one costs that much per read.
            messages = consumer.consume(BATCH, timeout=POLL_S)
        except KafkaException as exc:
            raise kafka_failure(operation, config, exc) from exc
        if not messages:
            if time.monotonic() - last_data > idle_limit_s:
                raise KafkaOperationError(operation, f"no data for {idle_limit_s:.0f} s", retryable=True)
            continue
        last_data = time.monotonic()
        # the common case: a batch of records only (an end-of-partition event comes last)
        if messages[-1].error() is None and all(message.error() is None for message in messages):
            yield messages, False
            continue
        records = []
        at_end = False
        for message in messages:
            error = message.error()
            if error is None:
                records.append(message)
            elif error.code() == KafkaError._PARTITION_EOF:
                at_end = True
            else:
                raise kafka_failure(operation, config, KafkaException(error))
        yield records, at_end


def read_window(
    config: dict[str, Any], topic: str, partition: int, start: int, end: int, isolation_level: str, group: str
) -> Iterator[list[Message]]:
    """Yield the partition's messages with start <= offset < end, in offset order, a consumed
    batch at a time (never an empty one).

    Offsets missing from the sequence are compaction holes, transaction markers or aborted
    records (under read_committed); the caller records them as gaps.
    """
    if end <= start:
        return
    consumer = window_consumer(config, isolation_level, group)
    try:
        consumer.assign([TopicPartition(topic, partition, start)])
        for records, at_end in consumed_batches(consumer, config, f"consume {topic}/{partition}"):
            batch, complete = _before(records, end)
            if batch:
                yield batch
            if complete or at_end:  # the window's last offset, or the log's end (at or past `end`)
                return
    finally:
        with contextlib.suppress(Exception):
            consumer.close()


def _before(records: list[Message], end: int) -> tuple[list[Message], bool]:
    """The records before `end`, and whether the window is complete (its last offset reached)."""
    if not records:
        return records, False
    last = records[-1].offset()
    assert last is not None, "a consumed record has an offset"
    if last < end - 1:
        return records, False
    for index, message in enumerate(records):
        offset = message.offset()
        assert offset is not None, "a consumed record has an offset"
        if offset >= end:
            return records[:index], True
    return records, True
