"""Reading partition windows [start, end) with confluent-kafka, in batches: one partition's
(`read_window`), or many through one consumer (`read_windows`, a backup's work unit: librdkafka
fetches the assigned partitions together)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple, cast

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from formats import Header
from tasks.runtime.shutdown import raise_if_stopping
from tasks.services.errors import KafkaOperationError
from tasks.services.kafka.admin import PartitionWindow, kafka_failure

BATCH = 10_000
# Give up (retryably) when the broker sends nothing at all for this long.
IDLE_LIMIT_S = 120
POLL_S = 0.05
# What the partitions one consumer has assigned at once may hold, in records (each window counted
# up to the caller's cap: the objects' flush.count), so that a unit of many large partitions does
# not hold an open object for each of them; a window over it alone is still assigned.
ASSIGNED_RECORDS = 100_000

TP = tuple[str, int]


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
            # Prefetch per consumer (one per work unit being exported): enough to keep the export
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
    for records, ends in _consumed(consumer, config, lambda _: operation, idle_limit_s):
        yield records, bool(ends)


def _consumed(
    consumer: Consumer,
    config: dict[str, Any],
    operation: Callable[[Message | None], str],
    idle_limit_s: float = IDLE_LIMIT_S,
) -> Iterator[tuple[list[Message], list[Message]]]:
    """The assigned partitions' records a consumed batch at a time, as (records, end-of-partition
    events); see consumed_batches. `operation(message)` names what failed: the erring message's,
    or None for the consumer's own error."""
    last_data = time.monotonic()
    while True:
        raise_if_stopping()
        try:
            # A short timeout: consume() waits for a full batch until the timeout even after
            # the end of the partition, so a long one costs that much per read.
            messages = consumer.consume(BATCH, timeout=POLL_S)
        except KafkaException as exc:
            raise kafka_failure(operation(None), config, exc) from exc
        if not messages:
            if time.monotonic() - last_data > idle_limit_s:
                raise KafkaOperationError(
                    operation(None), f"no data for {idle_limit_s:.0f} s", retryable=True
                )
            continue
        last_data = time.monotonic()
        # the common case: a batch of records only (an end-of-partition event comes last)
        if messages[-1].error() is None and all(message.error() is None for message in messages):
            yield messages, []
            continue
        records = []
        ends = []
        for message in messages:
            error = message.error()
            if error is None:
                records.append(message)
            elif error.code() == KafkaError._PARTITION_EOF:
                ends.append(message)
            else:
                raise kafka_failure(operation(message), config, KafkaException(error))
        yield records, ends


def read_window(
    config: dict[str, Any], topic: str, partition: int, start: int, end: int, isolation_level: str, group: str
) -> Iterator[list[Message]]:
    """Yield the partition's messages with start <= offset < end, in offset order, a consumed
    batch at a time (never an empty one).

    Offsets missing from the sequence are compaction holes, transaction markers or aborted
    records (under read_committed); the caller records them as gaps.
    """
    window = PartitionWindow(topic=topic, partition=partition, start=start, end=end)
    for run in read_windows(config, [window], isolation_level, group):
        if run.records:
            yield run.records


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


class WindowRun(NamedTuple):
    """Records of one partition's window, in offset order, from one consumed batch; `last`: the
    window is finished after them (then `records` may be empty)."""

    topic: str
    partition: int
    records: list[Message]
    last: bool


def read_windows(
    config: dict[str, Any],
    windows: Sequence[PartitionWindow],
    isolation_level: str,
    group: str,
    *,
    cap: int | None = None,
    assigned_records: int | None = None,
) -> Iterator[WindowRun]:
    """Yield the windows' records with start <= offset < end through one consumer, as runs of one
    partition each (several partitions' runs interleave; one partition's come in offset order),
    and for every window exactly one run with `last` set, when it is finished: its last offset
    (end - 1) reached, or an offset at or past `end` seen, or the end of the partition (the
    offset end - 1 may never come: a compaction hole, a transaction marker, an aborted record).
    Windows with end <= start are finished at once.

    Partitions are assigned in the windows' order while the records of those assigned and not
    finished, each window counted up to `cap`, stay within `assigned_records` (ASSIGNED_RECORDS
    unless given; at least one at a time); a finished one is unassigned at once, so that little
    past its end is fetched.
    """
    budget = ASSIGNED_RECORDS if assigned_records is None else assigned_records
    pending: list[PartitionWindow] = []
    for window in windows:
        if window.end <= window.start:
            yield WindowRun(window.topic, window.partition, [], True)
        else:
            pending.append(window)
    if not pending:
        return
    pending.reverse()  # popped from the end: the windows' order
    reading: dict[TP, PartitionWindow] = {}
    ends: dict[TP, int] = {}  # the windows being read: their ends

    def weight(window: PartitionWindow) -> int:
        return min(window.end - window.start, cap) if cap else window.end - window.start

    def assign_more() -> None:
        held = sum(weight(w) for w in reading.values())
        count = assignable((weight(w) for w in reversed(pending)), held, budget)
        assigned = []
        for _ in range(count):
            window = pending.pop()
            reading[(window.topic, window.partition)] = window
            ends[(window.topic, window.partition)] = window.end
            assigned.append(TopicPartition(window.topic, window.partition, window.start))
        if assigned:
            consumer.incremental_assign(assigned)

    def operation(message: Message | None) -> str:
        if message is not None and message.topic() is not None:
            return f"consume {message.topic()}/{message.partition()}"
        named = ", ".join(f"{t}/{p}" for t, p in list(reading)[:3])
        return f"consume {named}" + (f" (+{len(reading) - 3} partitions)" if len(reading) > 3 else "")

    consumer = window_consumer(config, isolation_level, group)
    try:
        assign_more()
        for records, end_events in _consumed(consumer, config, operation):
            runs, finished = split_runs(records, end_events, ends)
            if finished:
                consumer.incremental_unassign([TopicPartition(t, p) for t, p in finished])
                for tp in finished:
                    del reading[tp], ends[tp]
                assign_more()
            done = set(finished)
            for topic, partition, run in runs:
                yield WindowRun(topic, partition, run, (topic, partition) in done)
                done.discard((topic, partition))
            for topic, partition in finished:
                if (topic, partition) in done:  # finished without records in this batch
                    yield WindowRun(topic, partition, [], True)
            if not reading:
                return
    finally:
        with contextlib.suppress(Exception):
            consumer.close()


def assignable(weights: Iterable[int], held: int, budget: int) -> int:
    """How many of the next windows (their `weights`, in order) to assign now that those assigned
    hold `held`: as many as fit within `budget`, and one at least when none is held. Pure."""
    count = 0
    for weight in weights:
        if held and held + weight > budget:
            break
        held += weight
        count += 1
    return count


def split_runs(
    records: Sequence[Message], ends: Sequence[Message], reading: Mapping[TP, int]
) -> tuple[list[tuple[str, int, list[Message]]], list[TP]]:
    """One consumed batch of several partitions as runs: each partition being read (`reading`:
    its window's end) gets its records cut before its end, in offset order, in the order the
    partitions first appear; and the partitions the batch finished (see read_windows), in that
    order too. Records and end-of-partition events of partitions not being read (finished
    already, fetched before their unassignment took) are dropped. Pure."""
    grouped: dict[tuple[str | None, int | None], list[Message]] = {}
    for message in records:
        key = (message.topic(), message.partition())
        run = grouped.get(key)
        if run is None:
            grouped[key] = [message]
        else:
            run.append(message)
    runs: list[tuple[str, int, list[Message]]] = []
    finished: list[TP] = []
    for key, run in grouped.items():
        tp = cast(TP, key)
        end = reading.get(tp)
        if end is None:
            continue
        kept, complete = _before(run, end)
        if kept:
            runs.append((tp[0], tp[1], kept))
        if complete:
            finished.append(tp)
    for event in ends:
        tp = cast(TP, (event.topic(), event.partition()))
        if tp in reading and tp not in finished:
            finished.append(tp)
    return runs, finished
