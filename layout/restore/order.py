"""The order of a source partition's records in a restore: objects clustered where their offset
ranges overlap (PARTITIONBY interleaves them), merged by offset, and the rules every record must
pass — strictly increasing offsets, inside its object's range, holes only where the manifest
recorded a gap. Pure: numpy over the offset column; the objects' batches come from the caller
(tasks.restore.decode reads them from the store).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from formats.columns import DECODE_BATCH, DECODED
from layout.manifest import OffsetGap
from layout.restore.errors import OrderingViolationError
from layout.restore.plan import RestoreObject, RestoreUnit

# An object's decoded batches with their source offsets, checked against the object's bounds.
ObjectBatches = Callable[[RestoreObject], Iterator[tuple[pa.RecordBatch, np.ndarray]]]


@dataclass(frozen=True, slots=True)
class SourceBatch:
    """Decoded records in restore order (DECODED columns) with their source offsets (or, when
    the objects carry no offsets, their positions in the unit) and the objects they came from."""

    batch: pa.RecordBatch
    offsets: np.ndarray  # int64, one per row
    objects: tuple[str, ...]


def first_true(mask: np.ndarray) -> int | None:
    """Index of the first True, None when there is none."""
    hits = np.flatnonzero(mask)
    return int(hits[0]) if len(hits) else None


def clusters(objects: Sequence[RestoreObject]) -> list[list[RestoreObject]]:
    """Objects grouped so that each group's offset ranges overlap (PARTITIONBY writes one object
    per value, interleaved by offset) and groups follow each other: merge inside, chain across."""
    clusters: list[list[RestoreObject]] = []
    end = -1
    for obj in objects:
        first = obj.first_offset if obj.first_offset is not None else end + 1
        last = obj.last_offset if obj.last_offset is not None else first
        if clusters and first <= end:
            clusters[-1].append(obj)
        else:
            clusters.append([obj])
        end = max(end, last)
    return clusters


def in_gaps(first: int, last: int, gaps: Sequence[OffsetGap]) -> bool:
    """Is every offset of first..last inside a recorded gap?"""
    position = first
    for gap in sorted(gaps, key=lambda g: g.first):
        if gap.first <= position <= gap.last:
            position = gap.last + 1
            if position > last:
                return True
    return position > last


def object_violation(obj: RestoreObject, offsets: np.ndarray, previous: int | None) -> tuple[int, str] | None:
    """The first record of an object's batch (offsets) outside the object's range or not above
    the record before it (`previous`: the last offset of the object's earlier batches), as
    (index, reason); None when every record passes."""
    if not len(offsets):
        return None
    bad_range = None
    if obj.first_offset is not None and obj.last_offset is not None:
        bad_range = first_true((offsets < obj.first_offset) | (offsets > obj.last_offset))
    before = np.empty_like(offsets)
    before[1:] = offsets[:-1]
    not_up = offsets[1:] <= offsets[:-1]
    bad_order = first_true(not_up)
    bad_order = None if bad_order is None else bad_order + 1
    if previous is not None and offsets[0] <= previous:
        bad_order = 0
        before[0] = previous
    candidates = [i for i in (bad_range, bad_order) if i is not None]
    if not candidates:
        return None
    index = min(candidates)
    if index == bad_range:  # the range is checked first
        return index, f"outside the object's range {obj.first_offset}–{obj.last_offset}"
    return index, f"offset does not increase after {int(before[index])}"


class Order:
    """The ordering rules across a source partition's merged records: strictly increasing, and
    missing offsets only inside recorded gaps."""

    def __init__(self, unit: RestoreUnit) -> None:
        self.unit = unit
        self.previous: tuple[int, str] | None = None  # (offset, object key) of the last record
        self.expected = min((s.start_offset for s in unit.segments), default=None)

    def violation(
        self, offsets: np.ndarray, keys: Sequence[str], owner: np.ndarray
    ) -> tuple[int, str] | None:
        """The first record of `offsets` (in restore order; owner[i] indexes `keys`, its object)
        breaking a rule, as (index, reason); None when all pass."""
        if not len(offsets):
            return None
        repeat = first_true(offsets[1:] <= offsets[:-1])
        repeat = None if repeat is None else repeat + 1
        if self.previous is not None and offsets[0] <= self.previous[0]:
            repeat = 0
        gap = None
        if self.unit.check_gaps:
            expected = np.empty_like(offsets)
            expected[0] = offsets[0] if self.expected is None else self.expected
            expected[1:] = offsets[:-1] + 1
            for index in np.flatnonzero(offsets > expected):
                if repeat is not None and index >= repeat:
                    break
                if not in_gaps(int(expected[index]), int(offsets[index]) - 1, self.unit.gaps):
                    gap = int(index)
                    break
        if repeat is not None and (gap is None or repeat <= gap):
            if repeat:
                before = (int(offsets[repeat - 1]), keys[int(owner[repeat - 1])])
            else:
                assert self.previous is not None
                before = self.previous
            offset = int(offsets[repeat])
            return repeat, f"offset {offset} repeats or goes back after {before[0]} (object {before[1]})"
        if gap is not None:
            first = int(expected[gap])
            return (
                gap,
                f"offsets {first}–{int(offsets[gap]) - 1} are missing and the manifest records no gap there",
            )
        return None

    def passed(self, offsets: np.ndarray, key: str) -> None:
        if len(offsets):
            self.previous = (int(offsets[-1]), key)
            self.expected = int(offsets[-1]) + 1


def merged(
    unit: RestoreUnit, cluster: Sequence[RestoreObject], order: Order, batches_of: ObjectBatches
) -> Iterator[SourceBatch]:
    """The records of interleaved objects (PARTITIONBY) merged by offset and checked; `batches_of`
    reads an object's batches with their offsets. Each object is decoded whole and cut at its first
    bad record; the error that a record-by-record k-way
    merge would have met first is raised after the records it would have yielded before it."""
    keys = [obj.key for obj in cluster]
    parts: list[pa.RecordBatch] = []
    owners: list[np.ndarray] = []
    object_errors: list[tuple[int, int, OrderingViolationError]] = []  # (records before it, object, error)
    ends: list[int] = []  # per object: index (in the concatenation) after its last kept record
    total = 0
    for number, obj in enumerate(cluster):
        kept = 0
        try:
            for batch, _ in batches_of(obj):
                parts.append(batch)
                owners.append(np.full(batch.num_rows, number, dtype=np.int64))
                kept += batch.num_rows
        except OrderingViolationError as exc:
            object_errors.append((kept, number, exc))
        total += kept
        ends.append(total)
    if not parts:
        if object_errors:
            raise object_errors[0][2]
        return
    table = pa.Table.from_batches(parts, schema=DECODED)
    offsets = table.column("offset").to_numpy().astype(np.int64, copy=False)
    owner = np.concatenate(owners)
    sequence = np.argsort(offsets, kind="stable")  # ties: the earlier object first, as heapq.merge
    merged = offsets[sequence]
    stop = len(merged)
    error: Exception | None = None
    found = order.violation(merged, keys, owner[sequence])
    if found is not None:
        stop, reason = found
        error = OrderingViolationError(
            unit.source_topic,
            unit.source_partition,
            keys[int(owner[sequence[stop]])],
            int(merged[stop]),
            reason,
        )
    if object_errors:
        position = np.empty_like(sequence)
        position[sequence] = np.arange(len(sequence))
        # A merge asks an object for its next record right after yielding its last good one (at
        # once for the first): that object's error comes after so many records, before a merged
        # violation at the same point, and the earlier object's first.
        first = min(
            (0 if kept == 0 else int(position[ends[number] - 1]) + 1, number, exc)
            for kept, number, exc in object_errors
        )
        if first[0] <= stop:
            stop, error = first[0], first[2]
    for start in range(0, stop, DECODE_BATCH):
        rows = sequence[start : min(stop, start + DECODE_BATCH)]
        batch = table.take(pa.array(rows)).combine_chunks().to_batches()[0]
        which = np.unique(owner[rows])
        yield SourceBatch(batch, offsets[rows], tuple(keys[int(i)] for i in which))
        order.passed(offsets[rows], keys[int(owner[rows[-1]])])
    if error is not None:
        raise error
