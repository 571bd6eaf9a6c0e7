"""Test helpers that talk to the real broker: create and delete topics, produce and read back."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def create_topic(admin: AdminClient, name: str, partitions: int, config: dict[str, str]) -> None:
    futures = admin.create_topics([NewTopic(name, partitions, 1, config=config)], operation_timeout=30)
    futures[name].result(timeout=60)


def delete_topics(admin: AdminClient, names: Sequence[str]) -> None:
    if not names:
        return
    for future in admin.delete_topics(list(names), operation_timeout=30).values():
        with contextlib.suppress(KafkaException):  # already gone
            future.result(timeout=60)


def produce(config: dict[str, Any], topic: str, messages: Iterable[dict[str, Any]]) -> int:
    """Produce dicts of Producer.produce keyword arguments; returns how many were acknowledged."""
    producer = Producer({**config, "enable.idempotence": True, "linger.ms": 5, "message.max.bytes": 16777216})
    errors: list[Any] = []
    count = 0

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(err)

    for message in messages:
        while True:
            try:
                producer.produce(topic, on_delivery=on_delivery, **message)
                break
            except BufferError:
                producer.poll(0.1)
        count += 1
        producer.poll(0)
    remaining = producer.flush(60)
    assert remaining == 0, f"{remaining} messages were not delivered"
    assert not errors, f"delivery errors: {errors[:3]}"
    return count


def numbered_messages(
    count: int, partitions: int | None = None, key: str | bytes = "k{i}", value: str | bytes | int = "v{i}"
) -> Iterator[dict[str, Any]]:
    """`count` messages, the i-th keyed `key.format(i=i)` and valued `value.format(i=i)` (bytes as
    they are; a number: that many random bytes), round-robin over `partitions` when given (else the
    producer's partitioner chooses)."""

    def render(spec: str | bytes | int, i: int) -> bytes:
        if isinstance(spec, bytes):
            return spec
        return os.urandom(spec) if isinstance(spec, int) else spec.format(i=i).encode()

    for i in range(count):
        message = {"key": render(key, i), "value": render(value, i)}
        yield message if partitions is None else {"partition": i % partitions, **message}


def by_partition(messages: Iterable[Any]) -> dict[int, list[tuple[bytes, bytes]]]:
    """(key, value) of consumed messages per partition, in the order read."""
    result: dict[int, list[tuple[bytes, bytes]]] = {}
    for m in messages:
        result.setdefault(m.partition(), []).append((m.key(), m.value()))
    return result


def high_watermarks(config: dict[str, Any], topic: str, partitions: int) -> list[tuple[int, int]]:
    consumer = Consumer({**config, "group.id": "kbackup-tests-watermarks", "enable.auto.commit": False})
    try:
        return [
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in range(partitions)
        ]
    finally:
        consumer.close()


def wait_for_records(
    config: dict[str, Any],
    topic: str,
    partitions: int,
    more_than: int,
    timeout: float,
    running: Callable[[], bool] = lambda: True,
) -> int:
    """Poll the topic's high watermarks (it may not exist yet) until they add up to more than
    `more_than`, `timeout` seconds pass or `running()` turns false; returns the last sum read (0 if none)."""
    deadline = time.monotonic() + timeout
    produced = 0
    while time.monotonic() < deadline and running():
        time.sleep(0.1)
        try:
            produced = sum(high for _, high in high_watermarks(config, topic, partitions))
        except Exception:  # noqa: BLE001 - the topic may not exist yet
            continue
        if produced > more_than:
            break
    return produced


def consume_all(
    config: dict[str, Any], topic: str, partitions: int, isolation_level: str = "read_committed"
) -> list[Any]:
    """Every message of the topic up to its current end, partition by partition, in offset order."""
    consumer = Consumer(
        {
            **config,
            "group.id": "kbackup-tests-reader",
            "enable.auto.commit": False,
            "isolation.level": isolation_level,
            "enable.partition.eof": True,
            "fetch.message.max.bytes": 16777216,
        }
    )
    messages: list[Any] = []
    try:
        for partition in range(partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            if high <= low:
                continue
            consumer.assign([TopicPartition(topic, partition, low)])
            while True:
                msg = consumer.poll(10)
                assert msg is not None, f"timed out reading {topic}[{partition}]"
                if msg.error():
                    if msg.error().code() == -191:  # _PARTITION_EOF
                        break
                    raise KafkaException(msg.error())
                messages.append(msg)
            consumer.unassign()
    finally:
        consumer.close()
    return messages
