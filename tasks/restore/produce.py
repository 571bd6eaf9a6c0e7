"""Producing restore units exactly once and resumably, several to a transaction.

A unit's records come decoded, a batch of columns at a time (tasks.restore.decode). For each
batch: the restore window as a mask, routing (layout.restore.routing), the digests of what each
target partition receives, then one tight `produce` loop through the work unit's transactional
writer (tasks.restore.writer). The units of a work unit (tasks.restore.work) are produced one
after another into one stream of transactions (`WorkTransaction`): each commits once it holds
`plan.batch` records, whichever units they belong to, together with the count each of those
units has restored so far (where layout.restore.progress keeps it). A run resumes after what an
earlier run of the same restore committed: the records before that count are decoded and
digested again (the digests cover everything) but not produced. Every loop checks
`tasks.runtime.shutdown`: a stop request aborts the open transaction and ends the work unit
within seconds.

A unit's first commit carries, in its progress's metadata, where in the target it began
(`starts`, measured before its first record): no record of a unit is ever committed without
it, so a rerun (and the check that refuses a non-empty target) can tell the unit's own records
from records that were there before.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, Field

from formats.columns import header_lists, records_digest_inputs
from formats.envelope import TimestampType
from formats.errors import CorruptObjectError
from formats.wire import rewrite_schema_ids
from kcql.selection import Window
from layout.restore.digests import SegmentDigests, hash_rows
from layout.restore.errors import UnwritableTimestampError
from layout.restore.order import SourceBatch
from layout.restore.plan import RestorePlan, RestoreUnit
from layout.restore.progress import ProgressKey
from layout.restore.routing import target_partitions_of
from layout.restore.timestamps import substituted, zero_rows
from tasks.restore.committed import GroupCommit
from tasks.restore.errors import TargetPartitionsError
from tasks.restore.writer import TransactionalWriter
from tasks.runtime import shutdown

ProgressCallback = Callable[[int, int], None]
RECOVERY_S = 120  # how long a work unit retries without progress (a commit or a delivered record)
CHECK_EVERY = 256  # records between stop checks (and looks at the producer's queue)
CREATE_TIME = int(TimestampType.CREATE_TIME)


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
    resumed_after: int = Field(
        description="Records already committed when the unit last started: by an earlier run, or by this run "
        "before its work unit started again with a fresh producer (a broker outage, a wedged producer); "
        "`produced` counts the latter too."
    )
    decoded: int
    bytes: int
    objects: int
    seconds: float
    partitions: dict[int, PartitionOutcome]
    timestamps_kept: bool
    timestamps_substituted: int = Field(
        default=0,
        description="Selected records with timestamp 0, written with the substitute 1 ('restore.timestamp.zero').",
    )
    translate_points: dict[int, int] = Field(
        default_factory=dict,
        description="Source offset -> index of the first selected record at or after it.",
    )
    last_source_offset: int | None = None
    problems: list[str] = Field(default_factory=list)


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


class WorkTransaction:
    """The open transaction of a work unit's writer, across its units: begun before a record,
    committed once it holds `batch_size` records (and when the work unit ends), with the progress
    of every unit that moved in it; `on_commit` hears which units those were."""

    def __init__(
        self,
        writer: TransactionalWriter,
        batch_size: int,
        on_commit: Callable[[list[UnitRun]], None],
    ) -> None:
        self.writer = writer
        self.batch_size = max(1, batch_size)
        self.on_commit = on_commit
        self.held = 0  # records in the open transaction
        self.moved: dict[int, UnitRun] = {}  # the units with records in it, by id(), in order

    @property
    def room(self) -> int:
        return self.batch_size - self.held

    def begin(self) -> None:
        if not self.writer.in_transaction:
            self.writer.begin()

    def add(self, run: UnitRun, records: int) -> None:
        """`records` of `run` were produced into the open transaction; commit when it is full."""
        self.held += records
        self.moved[id(run)] = run
        if self.held >= self.batch_size:
            self.commit()

    def commit(self) -> None:
        if not self.moved:
            return
        runs = list(self.moved.values())
        self.writer.commit([run.group_commit() for run in runs])
        self.moved.clear()
        self.held = 0
        for run in runs:
            run.committed()
        self.on_commit(runs)

    def holds(self, run: UnitRun) -> bool:
        return id(run) in self.moved


class UnitRun:
    """One attempt's pass over a unit's decoded batches: the window, routing and digests computed
    on columns, then one tight `produce` loop per batch (no callback per record; a failed
    delivery fails the transaction's commit) into the work unit's transaction."""

    def __init__(
        self,
        plan: RestorePlan,
        unit: RestoreUnit,
        txn: WorkTransaction,
        sizes: dict[str, int],
        grow_target: bool,
        done: int,
        metadata: dict[str, Any],
        starts: dict[int, int],
        written_bytes: int = 0,
        resumed_from: int = 0,
        *,
        key: ProgressKey,
    ) -> None:
        """`sizes`: the work unit's target partition counts (topic -> count, updated when a unit
        grows its topic); `done`, `metadata`: the unit's committed progress; `starts`: the high
        watermarks of its target partitions before this attempt produced (used when `metadata`
        has none); `written_bytes`: what earlier attempts of this run committed of it; `key`:
        where its progress is committed (layout.restore.progress)."""
        self.plan, self.unit, self.txn, self.writer = plan, unit, txn, txn.writer
        self.topic = unit.target_topic
        self.key = key
        self.sizes = sizes
        self.target_partitions = sizes[self.topic]
        self.grow_target = grow_target
        self.done = done  # records an earlier run committed: decoded and digested, not produced
        self.resumed_from = resumed_from
        if unit.routing == "preserve":
            assert unit.target_partition is not None
            self.partitions = [unit.target_partition]
        else:
            self.partitions = list(range(self.target_partitions))
        # Where in each target partition the unit began: from its first commit's metadata, or now
        # (a partition added by this restore begins at 0).
        began = {int(p): o for p, o in metadata.get("starts", {}).items()}
        self.starts = began or {p: starts.get(p, 0) for p in self.partitions}
        self.digests = {p: hashlib.sha256() for p in self.partitions}
        self.counts = dict.fromkeys(self.partitions, 0)
        self.segment_digests = SegmentDigests(unit)
        self.pending = sorted(unit.translate_offsets)  # source offsets still to place
        self.points: dict[int, int] = {}
        self.selected = self.decoded = 0
        self.written_bytes = self.committed_bytes = written_bytes
        self.count = self.committed_count = done  # selected records produced / committed so far
        self._committing = (done, written_bytes)
        self.timestamps_kept = True
        self.substituted = 0  # selected records written with the substitute timestamp
        self.last_source: int | None = None
        self.objects_seen: set[str] = set()
        self.last_report = time.monotonic()  # a small unit reports once, when it is done
        self.id_changes = {old: new for old, new in plan.schema_id_map.items() if old != new}

    def group_commit(self) -> GroupCommit:
        """The unit's progress for the transaction being committed; its metadata says where the
        unit began (a unit's first commit always carries its records with it)."""
        metadata = json.dumps({"src": self.last_source, "starts": self.starts}, separators=(",", ":"))
        self._committing = (self.count, self.written_bytes)
        return GroupCommit(self.key, self.count, metadata)

    def committed(self) -> None:
        self.committed_count, self.committed_bytes = self._committing

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
        zeros = zero_rows(batch.column("timestamp"))
        if len(zeros):  # the producer cannot write timestamp 0 (layout.restore.timestamps)
            self._refuse_zeros(batch, offsets, zeros, source.objects)
            batch, source_inputs = substituted(batch, zeros), None
            self.substituted += len(zeros)
        first = self.selected  # selected records before this batch
        self._place_translate_points(offsets, first)
        targets = self._route(batch, first)
        self._digest(batch, targets, source_inputs)
        self.selected += batch.num_rows
        skip = min(batch.num_rows, max(0, self.done - first))  # restored by an earlier run
        if skip < batch.num_rows:
            self._produce(batch.slice(skip), offsets[skip:], targets[skip:], first + skip, on_progress)
        self.last_source = int(offsets[-1])

    def _refuse_zeros(
        self, batch: pa.RecordBatch, offsets: np.ndarray, zeros: np.ndarray, objects: tuple[str, ...]
    ) -> None:
        """Refuse the batch before any of it is produced, unless 'restore.timestamp.zero' is
        'substitute'. (With a manifest the pre-flight refused already; this is for data without
        one, and a rerun whose choice changed.)"""
        if self.plan.timestamp_zero == "substitute":
            return
        row = int(zeros[0])
        raise UnwritableTimestampError(
            batch.column("topic")[row].as_py() or self.unit.source_topic,
            batch.column("partition")[row].as_py(),
            int(offsets[row]),
            0,
            ", ".join(objects),
            len(zeros),
            written=True,
        )

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
            self.sizes[self.topic] = self.target_partitions
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
        """Produce `batch` (its first record being the unit's `first`-th selected one) into the
        work unit's transaction, which commits whenever it holds its batch of records."""
        writer, txn, topic = self.writer, self.txn, self.topic
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
            txn.begin()
            end = min(count, position + CHECK_EVERY, position + txn.room)
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
            self.written_bytes = base_bytes + sizes[end - 1]
            self.last_source = int(offsets[end - 1])
            self.count = first + end
            shutdown.raise_if_stopping()
            txn.add(self, end - position)  # commits when the transaction is full
            position = end
            if on_progress and time.monotonic() - self.last_report > 0.5:
                on_progress(first + end, self.written_bytes)
                self.last_report = time.monotonic()

    def finish(self, on_progress: ProgressCallback | None) -> UnitResult:
        """Check the decoded records against the manifest and say what was done; what the open
        transaction holds of the unit is committed with it (the result counts once it is)."""
        plan, unit = self.plan, self.unit
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
        resumed_from = self.resumed_from  # what earlier runs committed
        return UnitResult(
            unit_id=unit.unit_id,
            source_topic=unit.source_topic,
            source_partition=unit.source_partition,
            target_topic=self.topic,
            routing=unit.routing,
            selected=self.selected,
            produced=max(0, self.selected - resumed_from),
            resumed_after=min(self.done, self.selected),  # where this attempt started
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
            timestamps_substituted=self.substituted,
            translate_points=self.points,
            last_source_offset=self.last_source,
        )
