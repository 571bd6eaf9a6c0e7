"""The restore's check: consume what was restored and compare it with what was selected from the
backup. A target partition one unit alone wrote is compared record for record by digest
(`check_unit`, `check_work_unit`: the units of a work unit read together, one consumer for all
their partitions); one that several units wrote, by its record count (`check_shared`). Also what a
failed restore committed.

Plain functions with thin tasks at the bottom; `check_restored` runs them for the flow.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
from confluent_kafka import Consumer, KafkaException, TopicPartition
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from formats.columns import from_messages, records_digest_inputs, update_digest
from layout.restore.plan import RestorePlan, RestoreUnit
from layout.work_units import Part, pack
from tasks.restore.committed import CommittedProgress, committed_progress
from tasks.restore.errors import RestoreCheckError
from tasks.restore.produce import PartitionOutcome, UnitResult
from tasks.runtime import shutdown
from tasks.runtime.retry import RETRY_OPTIONS
from tasks.runtime.task_runners import run_tasks
from tasks.services.kafka.admin import admin_client, kafka_failure, partition_offsets
from tasks.services.kafka.calls import LOOKUP_TIMEOUT_S
from tasks.services.kafka.clients import client_config
from tasks.services.kafka.reader import consumed_batches


class PartitionCheck(BaseModel):
    topic: str
    partition: int
    expected_records: int
    records: int
    digest_compared: bool
    ok: bool
    target_offsets: dict[int, int] = Field(default_factory=dict, description="Record index -> target offset.")
    end_offset: int = Field(default=0, description="The target offset after the last restored record.")
    digest: str | None = Field(
        default=None, description="Records digest of what was read back (None: counted)."
    )
    problem: str | None = None


def read_restored(
    kafka_config: dict[str, Any],
    topic: str,
    partition: int,
    start: int,
    limit: int | None,
    indexes: Sequence[int] = (),
    with_timestamps: bool = True,
) -> tuple[int, str, dict[int, int], int]:
    """Consume (read_committed) from `start`: up to `limit` records, or to the end when None.
    Returns (records, digest, {index: offset}, offset after the last record read)."""
    consumer = _check_consumer(kafka_config)
    digest = hashlib.sha256()
    wanted = set(indexes)
    offsets_at: dict[int, int] = {}
    count = 0
    end = start
    try:
        high = _high_watermark(consumer, topic, partition, start + (limit or 0))
        if high <= start or limit == 0:
            return 0, "sha256:" + digest.hexdigest(), offsets_at, start
        consumer.assign([TopicPartition(topic, partition, start)])
        for consumed, at_end in consumed_batches(consumer, kafka_config, f"check {topic}/{partition}"):
            records = consumed if limit is None else consumed[: limit - count]
            if records:
                batch = from_messages(records)
                offsets = batch.column("offset").to_pylist()
                for index in wanted.intersection(range(count, count + len(records))):
                    offsets_at[index] = offsets[index - count]
                if not with_timestamps:  # compared without timestamps: none, type 0
                    batch = batch.set_column(1, "timestamp", pa.nulls(batch.num_rows, pa.int64()))
                    batch = batch.set_column(2, "timestamp_type", pa.array(np.zeros(batch.num_rows, np.int8)))
                update_digest(digest, records_digest_inputs(batch))
                count += len(records)
                end = offsets[-1] + 1
                if limit is not None and count >= limit:
                    break
            if at_end and _caught_up(consumer, topic, partition, high):
                break
    except KafkaException as exc:
        raise kafka_failure(f"check {topic}/{partition}", kafka_config, exc) from exc
    finally:
        with contextlib.suppress(Exception):
            consumer.close()
    return count, "sha256:" + digest.hexdigest(), offsets_at, end


def _check_consumer(kafka_config: dict[str, Any]) -> Consumer:
    return Consumer(
        {
            **kafka_config,
            "group.id": "kbackup-restore-check",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
            "fetch.message.max.bytes": 16 * 1024 * 1024,
            "max.partition.fetch.bytes": 16 * 1024 * 1024,
            "log_level": 3,
        }
    )


def _high_watermark(consumer: Consumer, topic: str, partition: int, at_least: int) -> int:
    """The partition's high watermark, asked again for a while when it is below what was just
    written: a partition created or added a moment ago can answer 0 at first."""
    deadline = time.monotonic() + 30
    while True:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=LOOKUP_TIMEOUT_S)
        if high >= at_least or time.monotonic() > deadline:
            return int(high)
        shutdown.sleep(0.2)


def _caught_up(consumer: Consumer, topic: str, partition: int, high: int) -> bool:
    """Whether an end-of-partition event means the end: read_committed stops at the last stable
    offset, which trails the high watermark until the transaction's commit markers are written."""
    [position] = consumer.position([TopicPartition(topic, partition)])
    return position.offset >= high


@dataclass
class ReadBack:
    """One target partition to read back from `start`, at most `limit` records, and what was read:
    `records`, their `digest`, the offsets of the records at `indexes`, the offset after the last."""

    topic: str
    partition: int
    start: int
    limit: int
    indexes: Sequence[int] = ()
    with_timestamps: bool = True
    records: int = 0
    digest: Any = field(default_factory=hashlib.sha256)
    offsets_at: dict[int, int] = field(default_factory=dict)
    end: int = 0
    high: int = 0

    def add(self, records: list[Any]) -> None:
        records = records[: self.limit - self.records]
        if not records:
            return
        batch = from_messages(records)
        offsets = batch.column("offset").to_pylist()
        for index in set(self.indexes).intersection(range(self.records, self.records + len(records))):
            self.offsets_at[index] = offsets[index - self.records]
        if not self.with_timestamps:  # compared without timestamps: none, type 0
            batch = batch.set_column(1, "timestamp", pa.nulls(batch.num_rows, pa.int64()))
            batch = batch.set_column(2, "timestamp_type", pa.array(np.zeros(batch.num_rows, np.int8)))
        update_digest(self.digest, records_digest_inputs(batch))
        self.records += len(records)
        self.end = offsets[-1] + 1


def read_restored_together(kafka_config: dict[str, Any], reads: Sequence[ReadBack]) -> None:
    """Consume (read_committed) the partitions of `reads` together, with one consumer: each from
    its start up to its limit, or to its end (its high watermark, once its last stable offset has
    caught up with it). The high watermarks are asked in one request, again for a while for those
    below what was just written (a partition added a moment ago can answer 0 at first)."""
    for read in reads:
        read.end = read.start
    wanted = {(r.topic, r.partition): r for r in reads if r.limit > 0}
    if not wanted:
        return
    admin = admin_client(kafka_config)
    deadline = time.monotonic() + 30
    low = dict(wanted)
    while True:
        for where, high in partition_offsets(admin, kafka_config, list(low)).items():
            low[where].high = high
        low = {w: r for w, r in low.items() if r.high < r.start + r.limit}
        if not low or time.monotonic() > deadline:
            break
        shutdown.sleep(0.2)
    reading = {w: r for w, r in wanted.items() if r.high > r.start}
    if not reading:
        return
    name = f"check {len(reading)} partitions of {', '.join(sorted({t for t, _ in reading}))}"
    consumer = _check_consumer(kafka_config)
    try:
        consumer.assign([TopicPartition(t, p, r.start) for (t, p), r in reading.items()])
        for consumed, at_end in consumed_batches(consumer, kafka_config, name):
            by_partition: dict[Any, list[Any]] = {}
            for message in consumed:
                by_partition.setdefault((message.topic(), message.partition()), []).append(message)
            done = []
            for where, records in by_partition.items():
                found = reading.get(where)
                if found is not None:
                    found.add(records)
                    if found.records >= found.limit:
                        done.append(where)
            if at_end:  # some partition is at its end: which of them are at their high watermark
                positions = consumer.position([TopicPartition(t, p) for t, p in reading])
                done += [
                    (tp.topic, tp.partition)
                    for tp in positions
                    if tp.offset >= reading[(tp.topic, tp.partition)].high
                ]
            for where in done:
                reading.pop(where, None)
            if done:
                consumer.pause([TopicPartition(t, p) for t, p in done])
            if not reading:
                break
    except KafkaException as exc:
        raise kafka_failure(name, kafka_config, exc) from exc
    finally:
        with contextlib.suppress(Exception):
            consumer.close()


def compare(
    topic: str,
    partition: int,
    outcome: PartitionOutcome,
    count: int,
    digest: str,
    timestamps_kept: bool = True,
    target_offsets: dict[int, int] | None = None,
    end_offset: int = 0,
) -> PartitionCheck:
    """What a unit wrote into one target partition (`outcome`) against what was read back: the
    record count, and the records digest unless the records got new timestamps (then only the
    count is compared, the digest covering timestamps)."""
    expected_digest = outcome.digest if timestamps_kept else ""
    problem = None
    if count != outcome.records:
        problem = f"{count} records restored, {outcome.records} expected"
    elif expected_digest and digest != expected_digest:
        problem = f"records digest {digest} differs from the backup's selection {expected_digest}"
    return PartitionCheck(
        topic=topic,
        partition=partition,
        expected_records=outcome.records,
        records=count,
        digest_compared=bool(expected_digest),
        ok=problem is None,
        target_offsets=target_offsets or {},
        end_offset=end_offset,
        digest=digest,
        problem=problem,
    )


def check_unit(kafka_config: dict[str, Any], result: UnitResult) -> list[PartitionCheck]:
    """Consume what the unit restored and compare it, record for record (by digest), with what
    was selected from the backup. Only a partition that one unit alone writes is compared by
    digest; see check_shared for the others."""
    return check_work_unit(kafka_config, [result])


def check_work_unit(kafka_config: dict[str, Any], results: Sequence[UnitResult]) -> list[PartitionCheck]:
    """`check_unit` of several units at once: every target partition they wrote read together by
    one consumer, each compared by digest with what its unit selected."""
    reads = [
        (
            result,
            outcome,
            ReadBack(
                result.target_topic,
                partition,
                outcome.start_offset,
                outcome.records,
                sorted(set(result.translate_points.values())) if result.routing == "preserve" else (),
                result.timestamps_kept,
            ),
        )
        for result in results
        for partition, outcome in sorted(result.partitions.items())
    ]
    read_restored_together(kafka_config, [read for _, _, read in reads])
    return [
        compare(
            read.topic,
            read.partition,
            outcome,
            read.records,
            "sha256:" + read.digest.hexdigest(),
            result.timestamps_kept,
            read.offsets_at,
            read.end,
        )
        for result, outcome, read in reads
    ]


def raise_on_failed(checks: Sequence[PartitionCheck]) -> None:
    for check in checks:
        if not check.ok:
            raise RestoreCheckError(check.topic, check.partition, check.problem or "mismatch")


Shared = dict[tuple[str, int], list[UnitResult]]


def split_by_writers(results: Sequence[UnitResult]) -> tuple[list[UnitResult], Shared]:
    """The units that alone wrote every target partition they wrote (checked by digest), and the
    target partitions that several units wrote, with those units (checked by count)."""
    writers: Shared = {}
    for result in results:
        for partition in result.partitions:
            writers.setdefault((result.target_topic, partition), []).append(result)
    alone = [r for r in results if all(len(writers[(r.target_topic, p)]) == 1 for p in r.partitions)]
    shared = {where: units for where, units in sorted(writers.items()) if len(units) > 1}
    return alone, shared


def check_shared(kafka_config: dict[str, Any], shared: Shared) -> list[PartitionCheck]:
    """Per target partition several units wrote: the records in it since the first of them began,
    against the sum they restored."""
    checks = []
    for (topic, partition), units in shared.items():
        start = min(u.partitions[partition].start_offset for u in units)
        expected = sum(u.partitions[partition].records for u in units)
        count, _, _, end = read_restored(kafka_config, topic, partition, start, None)
        ok = count == expected
        checks.append(
            PartitionCheck(
                topic=topic,
                partition=partition,
                expected_records=expected,
                records=count,
                digest_compared=False,
                ok=ok,
                end_offset=end,
                problem=None
                if ok
                else f"{count} records in the target since the restore began, {expected} restored",
            )
        )
    return checks


# --- tasks -----------------------------------------------------------------------------------


@task(name="check-shared-partitions", cache_policy=NO_CACHE, **RETRY_OPTIONS)
def check_shared_task(shared: Shared) -> list[PartitionCheck]:
    return check_shared(client_config(), shared)


@task(name="check-restored", cache_policy=NO_CACHE, task_run_name="check {name}", **RETRY_OPTIONS)
def check_work_unit_task(results: list[UnitResult], name: str) -> list[PartitionCheck]:
    return check_work_unit(client_config(), results)


def _result_part(result: UnitResult) -> Part:
    return Part(
        result.target_topic,
        min(result.partitions, default=0),
        sum(p.records for p in result.partitions.values()),
        result.bytes,
    )


def check_restored(results: Sequence[UnitResult], *, choice: str, concurrency: int) -> list[PartitionCheck]:
    """Read back what was restored: by digest, the target partitions one unit alone wrote, packed
    into work units (one consumer each) run in parallel on the restore's runner; by count where
    several units wrote. Raises the first check task's error."""
    alone, shared = split_by_writers(results)
    checks: list[PartitionCheck] = []
    if alone:
        works = pack(alone, _result_part, workers=concurrency)
        outcomes = run_tasks(
            check_work_unit_task,
            [{"results": list(work.items), "name": work.name} for work in works],
            choice=choice,
            concurrency=concurrency,
            records=sum(p.records for unit in alone for p in unit.partitions.values()),
            description="Check: records read back",
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        checks = [check for outcome in outcomes for check in outcome]
    return checks + (check_shared_task(shared) if shared else [])


# Not retried: it runs after a failure, and the cluster may be what failed; the report then says
# "unknown" at once instead of after the retries' back-off.
@task(name="read-committed-progress", cache_policy=NO_CACHE)
def committed_progress_task(plan: RestorePlan, units: Sequence[RestoreUnit]) -> dict[str, CommittedProgress]:
    return committed_progress(client_config(), plan, units)
