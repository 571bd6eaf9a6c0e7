"""Reading one partition's window [start, end) with confluent-kafka, in batches."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any, cast

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from formats import Header
from tasks.errors import KafkaOperationError
from tasks.kafka_admin import kafka_failure
from tasks.shutdown import raise_if_stopping

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
        last_data = time.monotonic()
        while True:
            raise_if_stopping()
            try:
                # A short timeout: consume() waits for a full batch until the timeout even after
                # the end of the partition, so a long one costs that much per window.
                messages = consumer.consume(BATCH, timeout=POLL_S)
            except KafkaException as exc:
                raise kafka_failure(f"consume {topic}/{partition}", config, exc) from exc
            if not messages:
                if time.monotonic() - last_data > IDLE_LIMIT_S:
                    raise KafkaOperationError(
                        f"consume {topic}/{partition}",
                        f"no data for {IDLE_LIMIT_S} s before offset {end}",
                        retryable=True,
                    )
                continue
            last_data = time.monotonic()
            batch, done = _in_window(messages, end, topic, partition, config)
            if batch:
                yield batch
            if done:
                return
    finally:
        with contextlib.suppress(Exception):
            consumer.close()


def _in_window(
    messages: list[Message], end: int, topic: str, partition: int, config: dict[str, Any]
) -> tuple[list[Message], bool]:
    """The messages before `end`, and whether the window is complete."""
    last = messages[-1]
    last_offset = last.offset()
    # the common case: a batch in the middle of the window (errors, e.g. the end of the partition,
    # come last)
    if (
        last.error() is None
        and last_offset is not None
        and last_offset < end - 1
        and all(message.error() is None for message in messages)
    ):
        return messages, False
    for index, message in enumerate(messages):
        error = message.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                return messages[:index], True  # the log end is at or past `end`
            raise kafka_failure(f"consume {topic}/{partition}", config, KafkaException(error))
        offset = message.offset()
        assert offset is not None, "a consumed record has an offset"
        if offset >= end:
            return messages[:index], True
        if offset == end - 1:
            return messages[: index + 1], True
    return messages, False
