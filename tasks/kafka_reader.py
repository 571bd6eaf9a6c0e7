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
) -> Iterator[Message]:
    """Yield the partition's messages with start <= offset < end, in offset order.

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
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        return  # the log end is at or past `end`: nothing more in the window
                    raise kafka_failure(f"consume {topic}/{partition}", config, KafkaException(error))
                offset = message.offset()
                assert offset is not None, "a consumed record has an offset"
                if offset >= end:
                    return
                yield message
                if offset == end - 1:
                    return
    finally:
        with contextlib.suppress(Exception):
            consumer.close()
