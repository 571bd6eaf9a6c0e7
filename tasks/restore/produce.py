"""Producing one restore unit, exactly once and resumably.

A unit's records come decoded, a batch of columns at a time (tasks.restore.decode). For each
batch: the restore window as a mask, routing (layout.restore.routing), the digests of what each
target partition receives, then one tight `produce` loop through the unit's transactional writer
(tasks.restore.writer), committing every `plan.batch` records together with the count restored
so far. A run resumes after what an earlier run of the same restore committed: the records
before that count are decoded and digested again (the digests cover everything) but not
produced. A broker outage is ridden out: the unit starts again from its committed count with a
fresh producer until it goes `recovery_s` without progress. Every loop checks `tasks.runtime.shutdown`:
a stop request aborts the open transaction and ends the unit within seconds.

Before its first record a unit commits an empty transaction with count 0: from then on its
group's metadata says where in the target it began, so a rerun (and the check that refuses a
non-empty target) can tell the unit's own records from records that were there before.

`restore_unit` is the plain function; `restore_unit_task` its thin retryable task.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from formats.columns import header_lists, records_digest_inputs
from formats.envelope import TimestampType
from formats.errors import CorruptObjectError
from formats.wire import rewrite_schema_ids
from kcql.selection import Window
from layout.restore.digests import SegmentDigests, hash_rows
from layout.restore.order import SourceBatch
from layout.restore.plan import RestorePlan, RestoreUnit
from layout.restore.routing import target_partitions_of
from tasks.restore.decode import unit_records
from tasks.restore.errors import RestoreStalledError, TargetPartitionsError, TransactionFatalError
from tasks.restore.writer import (
    TransactionalWriter,
    UnitProgress,
    committed,
    high_watermarks,
    unit_names,
)
from tasks.runtime import shutdown
from tasks.runtime.retry import RETRY_OPTIONS
from tasks.services.errors import KbackupError, is_retryable

if TYPE_CHECKING:
    from tasks.services.object_store import ObjectStore

ProgressCallback = Callable[[int, int], None]
RECOVERY_S = 120  # how long a unit retries without progress (a commit or a delivered record)
CHECK_EVERY = 256  # records between stop checks (and looks at the producer's queue)
CREATE_TIME = int(TimestampType.CREATE_TIME)

log = logging.getLogger(__name__)


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


def restore_unit(
    plan: RestorePlan,
    unit: RestoreUnit,
    kafka_config: dict[str, Any],
    store: ObjectStore,
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
    progress = UnitProgress(unit.target_topic, unit.unit_id, recovery_s)
    attempt = 0
    while True:
        attempt += 1
        try:
            result = _attempt(
                plan, unit, kafka_config, store, target_partitions, on_progress, grow_target, progress
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
    store: ObjectStore,
    target_partitions: int,
    on_progress: ProgressCallback | None,
    grow_target: bool,
    progress: UnitProgress,
) -> UnitResult:
    """One pass over the unit's records with one producer, producing what comes after the
    committed count."""
    transactional_id, group = unit_names(plan, unit)
    writer = TransactionalWriter(kafka_config, transactional_id, group, progress)
    try:
        # First fence a killed (or wedged) earlier producer: init_transactions aborts its open
        # transaction, which otherwise holds the group's committed offset (read below).
        writer.init()
        done, metadata = committed(kafka_config, group, unit.target_topic)
        progress.committed = done
        if progress.resumed_from is None:
            progress.resumed_from = done
        progress.moved()
        run = _UnitRun(plan, unit, kafka_config, target_partitions, grow_target, writer, done, metadata)
        for source in unit_records(store, plan, unit):
            shutdown.raise_if_stopping()
            run.add(source, on_progress)
        return run.finish(on_progress)
    except BaseException:
        writer.abort()
        raise
    finally:
        writer.close()


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


def rewrite_batch_ids(
    batch: pa.RecordBatch, sides: tuple[str, ...], mapping: dict[int, int]
) -> pa.RecordBatch:
    """The batch with the registry schema ids of its wire-format keys and values (`sides`) mapped
    to the target registry's; the batch itself when no id changes."""
    columns = {side: rewrite_schema_ids(batch.column(side), mapping) for side in sides}
    if all(columns[side] is batch.column(side) for side in sides):
        return batch
    arrays = [columns.get(name, batch.column(name)) for name in batch.schema.names]
    return pa.RecordBatch.from_arrays(arrays, schema=batch.schema)


def _lengths(array: pa.Array) -> np.ndarray:
    return pc.fill_null(pc.binary_length(array), 0).to_numpy(zero_copy_only=False).astype(np.int64)


class _UnitRun:
    """One attempt's pass over a unit's decoded batches: the window, routing and digests computed
    on columns, then one tight `produce` loop per batch (no callback per record; a failed
    delivery fails the transaction's commit), committing every `plan.batch` records."""

    def __init__(
        self,
        plan: RestorePlan,
        unit: RestoreUnit,
        kafka_config: dict[str, Any],
        target_partitions: int,
        grow_target: bool,
        writer: TransactionalWriter,
        done: int,
        metadata: dict[str, Any],
    ) -> None:
        self.plan, self.unit, self.writer = plan, unit, writer
        self.topic = unit.target_topic
        self.target_partitions = target_partitions
        self.grow_target = grow_target
        self.done = done  # records an earlier run committed: decoded and digested, not produced
        if unit.routing == "preserve":
            assert unit.target_partition is not None
            self.partitions = [unit.target_partition]
        else:
            self.partitions = list(range(target_partitions))
        # Where in each target partition the unit began: from its first commit's metadata, or now.
        self.starts = {int(p): o for p, o in metadata.get("starts", {}).items()} or high_watermarks(
            kafka_config, self.topic, self.partitions
        )
        self.digests = {p: hashlib.sha256() for p in self.partitions}
        self.counts = dict.fromkeys(self.partitions, 0)
        self.segment_digests = SegmentDigests(unit)
        self.pending = sorted(unit.translate_offsets)  # source offsets still to place
        self.points: dict[int, int] = {}
        self.selected = self.decoded = 0
        self.written_bytes = writer.progress.committed_bytes  # an earlier attempt's committed part counts
        self.in_transaction = 0
        self.timestamps_kept = True
        self.last_source: int | None = None
        self.objects_seen: set[str] = set()
        self.last_report = 0.0
        self.batch_size = max(1, plan.batch)
        self.id_changes = {old: new for old, new in plan.schema_id_map.items() if old != new}
        if not metadata:
            # Mark the beginning before the first record: the group's metadata now says where in
            # the target this unit began, so its own records are never taken for someone else's.
            self.commit(0)

    def commit(self, count: int) -> None:
        metadata = json.dumps({"src": self.last_source, "starts": self.starts}, separators=(",", ":"))
        self.writer.commit(self.topic, count, metadata)
        self.writer.progress.committed_bytes = self.written_bytes
        self.in_transaction = 0

    def add(self, source: SourceBatch, on_progress: ProgressCallback | None) -> None:
        """Select, route, digest and produce one decoded batch."""
        self.decoded += source.batch.num_rows
        self.objects_seen.update(source.objects)
        source_inputs = self.segment_digests.add(source.batch, source.offsets)
        batch, offsets = source.batch, source.offsets
        if self.id_changes:
            rewritten = rewrite_batch_ids(batch, self.plan.wire_sides, self.id_changes)
            if rewritten is not batch:  # what is written (and digested) carries the target's ids
                batch, source_inputs = rewritten, None
        mask = window_mask(self.plan.window, offsets, batch.column("timestamp"))
        if mask is not None:
            if not mask.any():
                return
            chosen = pa.array(mask)
            batch, offsets = batch.filter(chosen), offsets[mask]
            source_inputs = None if source_inputs is None else source_inputs.filter(chosen)
        first = self.selected  # selected records before this batch
        self._place_translate_points(offsets, first)
        targets = self._route(batch, first)
        self._digest(batch, targets, source_inputs)
        self.selected += batch.num_rows
        skip = min(batch.num_rows, max(0, self.done - first))  # restored by an earlier run
        if skip < batch.num_rows:
            self._produce(batch.slice(skip), offsets[skip:], targets[skip:], first + skip, on_progress)
        self.last_source = int(offsets[-1])

    def _place_translate_points(self, offsets: np.ndarray, first: int) -> None:
        """The first selected record at or after each source offset a consumer group is at."""
        start = 0
        while self.pending:
            at = np.flatnonzero(offsets[start:] >= self.pending[0])
            if not len(at):
                break
            start += int(at[0])
            self.points[self.pending.pop(0)] = first + start

    def _route(self, batch: pa.RecordBatch, first: int) -> np.ndarray:
        """Each record's target partition; a topic this restore created grows to the partitions
        the records' metadata names, any other target refuses them."""
        unit = self.unit
        targets = target_partitions_of(
            unit.routing, batch, first, self.target_partitions, unit.target_partition
        )
        if unit.routing == "metadata" and int(targets.max()) >= self.target_partitions:
            if not self.grow_target:
                beyond = int(targets[np.argmax(targets >= self.target_partitions)])
                raise TargetPartitionsError(self.topic, beyond + 1, self.target_partitions)
            self.target_partitions = self.writer.grow_topic(self.topic, int(targets.max()) + 1)
            for added in range(len(self.partitions), self.target_partitions):
                self.partitions.append(added)
                self.starts[added] = 0
                self.digests[added] = hashlib.sha256()
                self.counts[added] = 0
        return targets

    def _digest(self, batch: pa.RecordBatch, targets: np.ndarray, source_inputs: pa.Array | None) -> None:
        """What is written: the same key, value and headers; the timestamp when there is one, as
        CreateTime (else none). Hash the source's digest inputs again when those are the bytes."""
        timestamps = batch.column("timestamp")
        if timestamps.null_count:
            self.timestamps_kept = False
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
            hash_rows(self.digests[partition], inputs, chosen_rows)
            self.counts[partition] += len(chosen_rows)

    def _produce(
        self,
        batch: pa.RecordBatch,
        offsets: np.ndarray,
        targets: np.ndarray,
        first: int,
        on_progress: ProgressCallback | None,
    ) -> None:
        """Produce `batch` (its first record being the unit's `first`-th selected one), committing
        whenever a transaction holds `batch_size` records."""
        writer, topic = self.writer, self.topic
        values = batch.column("value").to_pylist()
        keys = batch.column("key").to_pylist()
        headers = header_lists(batch.column("headers"))
        stamps = pc.fill_null(batch.column("timestamp"), 0).to_numpy(zero_copy_only=False).tolist()
        where = targets.tolist()
        sizes = np.cumsum(_lengths(batch.column("key")) + _lengths(batch.column("value"))).tolist()
        base_bytes = self.written_bytes
        produce = writer.producer.produce
        count = len(values)
        position = 0
        while position < count:
            if self.in_transaction == 0:
                writer.begin()
            end = min(count, position + CHECK_EVERY, position + self.batch_size - self.in_transaction)
            for i in range(position, end):
                try:
                    produce(
                        topic,
                        values[i],
                        keys[i],
                        partition=where[i],
                        headers=headers[i] or None,
                        timestamp=stamps[i],
                    )
                except BufferError:  # the queue is full: wait for deliveries, boundedly
                    writer.produce_when_room(
                        topic,
                        values[i],
                        keys[i],
                        partition=where[i],
                        headers=headers[i] or None,
                        timestamp=stamps[i],
                    )
            writer.produced(end - position)
            self.in_transaction += end - position
            self.written_bytes = base_bytes + sizes[end - 1]
            self.last_source = int(offsets[end - 1])
            position = end
            shutdown.raise_if_stopping()
            if self.in_transaction >= self.batch_size:
                self.commit(first + end)
            if on_progress and time.monotonic() - self.last_report > 0.5:
                on_progress(first + end, self.written_bytes)
                self.last_report = time.monotonic()

    def finish(self, on_progress: ProgressCallback | None) -> UnitResult:
        """Commit the rest, check the decoded records against the manifest, and say what was done."""
        plan, unit = self.plan, self.unit
        if self.in_transaction:
            self.commit(self.selected)
        while self.pending:
            self.points[self.pending.pop(0)] = self.selected
        where = unit.objects[-1].key if unit.objects else plan.prefix
        if self.selected < self.done:
            raise CorruptObjectError(
                plan.bucket,
                where,
                f"a previous run of this restore committed {self.done} records but the backup now yields only "
                f"{self.selected}",
            )
        problems = self.segment_digests.mismatches()
        if problems:
            raise CorruptObjectError(plan.bucket, where, "; ".join(problems))
        if on_progress:
            on_progress(self.selected, self.written_bytes)
        resumed_from = self.writer.progress.resumed_from or 0
        return UnitResult(
            unit_id=unit.unit_id,
            source_topic=unit.source_topic,
            source_partition=unit.source_partition,
            target_topic=self.topic,
            routing=unit.routing,
            selected=self.selected,
            produced=max(0, self.selected - resumed_from),
            resumed_after=min(resumed_from, self.selected),
            decoded=self.decoded,
            bytes=self.written_bytes,
            objects=len(self.objects_seen),
            seconds=0.0,
            partitions={
                p: PartitionOutcome(
                    start_offset=self.starts.get(p, 0),
                    records=self.counts[p],
                    digest="sha256:" + self.digests[p].hexdigest(),
                )
                for p in self.partitions
                if self.counts[p]
            },
            timestamps_kept=self.timestamps_kept,
            translate_points=self.points,
            last_source_offset=self.last_source,
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
    from tasks.runtime.progress import flush_progress, report_progress
    from tasks.services.kafka.clients import client_config
    from tasks.services.object_store import open_store

    total = sum(o.record_count or 0 for o in unit.objects)

    def on_progress(records: int, written: int) -> None:
        report_progress(unit.target_topic, unit.source_partition or 0, records, max(total, records), written)

    try:
        return restore_unit(
            plan, unit, client_config(), open_store(), target_partitions, on_progress, grow_target
        )
    finally:
        flush_progress()
