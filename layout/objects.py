"""Rolling one partition's records into objects by the flush rules, a column batch at a time.

`ObjectRoller` is pure: column batches (formats.columns.COLUMNS) in, finished objects (bytes + what
the manifest says of them) out. An object rolls when it reaches `flush.count` records, when its
encoded size reaches `flush.size`, or — only when the statement sets `flush.interval` — when its
records' timestamps span `flush.interval` seconds. Without the interval (the default) an object's
size does not depend on how sparse the timestamps are: 2,000 records spread over 40 days make one
object, not one per hour of record time. The interval is measured on the records' own timestamps,
not the wall clock (Stream Reactor's is the wall clock), and the size is
checked at chunk boundaries that depend on the records alone (every BATCH_RECORDS records or
BATCH_BYTES bytes), never on how the consumer happened to batch them: a retried export cuts
exactly the same objects and writes the same keys.

The rules, record by record (what the columns are cut to):
- with `flush.interval` set: before a record joins an open object, the object finishes if the
  record's timestamp is at least `flush.interval` after the object's first record's (an object
  whose first record has no timestamp never rolls by interval);
- after a record joins, the object finishes when it holds `flush.count` records; otherwise, when
  the records not yet handed to the writer reach BATCH_RECORDS or BATCH_BYTES, they are written,
  and the object finishes if the writer's size has reached `flush.size`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from formats import Codec, CodecContext, ObjectWriter
from formats.columns import update_digest
from layout.keys import KeyNaming

# Records are handed to a writer in chunks; a chunk is written early when it holds this many
# bytes, so that the size rule is checked often enough for large values.
BATCH_RECORDS = 2000
BATCH_BYTES = 1 << 20
RECORD_OVERHEAD = 64
"""Bytes counted per record besides its key, value and headers (see record_sizes)."""


@dataclass(frozen=True)
class FlushRules:
    count: int = 50_000
    size: int = 500_000_000
    interval_seconds: int | None = None  # None: no interval rule (the backup default)


@dataclass(frozen=True)
class FinishedObject:
    key: str
    data: bytes
    first_offset: int
    last_offset: int
    record_count: int
    min_timestamp: int | None
    max_timestamp: int | None
    records_digest: str
    partition_values: dict[str, str | None]

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass
class _OpenObject:
    writer: ObjectWriter
    first_offset: int
    first_timestamp: int | None
    digest: Any = field(default_factory=hashlib.sha256)
    pending: list[pa.RecordBatch] = field(default_factory=list)
    pending_records: int = 0
    pending_bytes: int = 0
    last_offset: int = -1
    count: int = 0
    min_timestamp: int | None = None
    max_timestamp: int | None = None


def _lengths(array: pa.Array) -> np.ndarray:
    return pc.fill_null(pc.binary_length(array), 0).to_numpy(zero_copy_only=False).astype(np.int64)


def record_sizes(batch: pa.RecordBatch) -> np.ndarray:
    """What each record counts towards BATCH_BYTES: RECORD_OVERHEAD + key + value + header names
    and values, in bytes."""
    headers = batch.column("headers")
    offsets = headers.offsets.to_numpy().astype(np.int64)
    items = headers.flatten()
    per_header = _lengths(items.field("key").cast(pa.binary())) + _lengths(items.field("value"))
    cumulative = np.concatenate(([0], np.cumsum(per_header)))
    header_bytes = cumulative[offsets[1:] - offsets[0]] - cumulative[offsets[:-1] - offsets[0]]
    return RECORD_OVERHEAD + _lengths(batch.column("key")) + _lengths(batch.column("value")) + header_bytes


class _Columns:
    """One batch being rolled: the batch, its records' digest inputs, and the numpy views of it
    that the rules read."""

    def __init__(self, batch: pa.RecordBatch, digest_inputs: pa.Array) -> None:
        self.batch = batch
        self.digest_inputs = digest_inputs
        self.offsets = batch.column("offset").to_numpy()
        timestamps = batch.column("timestamp")
        self.has_timestamp = timestamps.is_valid().to_numpy(zero_copy_only=False)
        self.timestamps = pc.fill_null(timestamps, 0).to_numpy()
        self.sizes = np.cumsum(record_sizes(batch))

    def bytes_between(self, start: int, stop: int) -> int:
        return int(self.sizes[stop - 1] - (self.sizes[start - 1] if start else 0))


class ObjectRoller:
    """Rolls one Kafka partition's records into objects (one open object per PARTITIONBY group)."""

    def __init__(self, codec: Codec, context: CodecContext, naming: KeyNaming, rules: FlushRules) -> None:
        self.codec = codec
        self.context = context
        self.naming = naming
        self.rules = rules
        self._open: dict[tuple[str | None, ...], _OpenObject] = {}

    def add(
        self, batch: pa.RecordBatch, digest_inputs: pa.Array, values: tuple[str | None, ...] = ()
    ) -> list[FinishedObject]:
        """Add records (in offset order, all of one PARTITIONBY group) with their
        formats.columns.records_digest_inputs; returns the objects they caused to finish."""
        finished: list[FinishedObject] = []
        if batch.num_rows == 0:
            return finished
        columns = _Columns(batch, digest_inputs)
        position, end = 0, batch.num_rows
        while position < end:
            current = self._open.get(values)
            if current is not None:
                cut = self._interval_cut(current, columns, position, end)
                if cut == position:
                    finished.append(self._finish(values))
                    current = None
                else:
                    end_of_object = cut
            if current is None:
                current = self._open[values] = _OpenObject(
                    self.codec.writer(self.context),
                    first_offset=int(columns.offsets[position]),
                    first_timestamp=int(columns.timestamps[position])
                    if columns.has_timestamp[position]
                    else None,
                )
                end_of_object = self._interval_cut(current, columns, position + 1, end)
            stop = min(end_of_object, position + self.rules.count - current.count)
            stop = self._take(current, columns, position, stop)
            position = stop
            if (
                current.count >= self.rules.count
                or current.pending_records == 0
                and self._size_reached(current)
            ):
                finished.append(self._finish(values))
        return finished

    def finish_all(self) -> list[FinishedObject]:
        """Finish every open object, in the order of their first offsets."""
        order = sorted(self._open, key=lambda v: self._open[v].first_offset)
        return [self._finish(values) for values in order]

    def _interval_cut(self, current: _OpenObject, columns: _Columns, start: int, end: int) -> int:
        """The first index in start..end whose record would start a new object by interval."""
        if self.rules.interval_seconds is None or current.first_timestamp is None or start >= end:
            return end
        limit = current.first_timestamp + self.rules.interval_seconds * 1000
        due = columns.has_timestamp[start:end] & (columns.timestamps[start:end] >= limit)
        hits = np.flatnonzero(due)
        return start + int(hits[0]) if len(hits) else end

    def _size_reached(self, current: _OpenObject) -> bool:
        return current.writer.size_estimate >= self.rules.size

    def _take(self, current: _OpenObject, columns: _Columns, start: int, stop: int) -> int:
        """Move records start..stop into the open object, writing a chunk whenever it reaches
        BATCH_RECORDS or BATCH_BYTES; returns where it stopped (early when the size rule fired)."""
        position = start
        while position < stop:
            room = BATCH_RECORDS - current.pending_records
            chunk_end = min(stop, position + room)
            # the first record at which the pending bytes reach BATCH_BYTES ends the chunk
            base = columns.sizes[position - 1] if position else 0
            budget = BATCH_BYTES - current.pending_bytes
            over = int(np.searchsorted(columns.sizes[position:chunk_end] - base, budget, side="left"))
            if over < chunk_end - position:
                chunk_end = position + over + 1
            self._append(current, columns, position, chunk_end)
            position = chunk_end
            if current.pending_records >= BATCH_RECORDS or current.pending_bytes >= BATCH_BYTES:
                if current.count >= self.rules.count:
                    break  # finished whole by the caller
                self._write_pending(current)
                if self._size_reached(current):
                    break
        return position

    def _append(self, current: _OpenObject, columns: _Columns, start: int, stop: int) -> None:
        current.pending.append(columns.batch.slice(start, stop - start))
        current.pending_records += stop - start
        current.pending_bytes += columns.bytes_between(start, stop)
        current.count += stop - start
        current.last_offset = int(columns.offsets[stop - 1])
        update_digest(current.digest, columns.digest_inputs, start, stop)
        stamped = columns.has_timestamp[start:stop]
        if stamped.any():
            stamps = columns.timestamps[start:stop][stamped]
            low, high = int(stamps.min()), int(stamps.max())
            current.min_timestamp = low if current.min_timestamp is None else min(current.min_timestamp, low)
            current.max_timestamp = (
                high if current.max_timestamp is None else max(current.max_timestamp, high)
            )

    def _write_pending(self, current: _OpenObject) -> None:
        if current.pending:
            chunk = current.pending[0] if len(current.pending) == 1 else pa.concat_batches(current.pending)
            current.writer.write_columns(chunk)
            current.pending = []
            current.pending_records = 0
            current.pending_bytes = 0

    def _finish(self, values: tuple[str | None, ...]) -> FinishedObject:
        current = self._open.pop(values)
        self._write_pending(current)
        data = current.writer.finish()
        key = self.naming.object_key(self.context.topic, self.context.partition, current.last_offset, values)
        return FinishedObject(
            key=key,
            data=data,
            first_offset=current.first_offset,
            last_offset=current.last_offset,
            record_count=current.count,
            min_timestamp=current.min_timestamp,
            max_timestamp=current.max_timestamp,
            records_digest="sha256:" + current.digest.hexdigest(),
            partition_values=dict(zip(self.naming.partition_names, values, strict=True)),
        )
