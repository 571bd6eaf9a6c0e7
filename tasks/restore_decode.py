"""Reading a restore unit's records as columns: fetch each object, check it against the manifest,
decode it into formats.columns.DECODED batches, and check the order of source offsets
(strictly increasing, no overlapping objects, holes only where the manifest recorded gaps) with
numpy on the offset column. Pure of Kafka: batches in, batches out.

A check that fails names the first offending record; the records before it are still yielded
(in batches) before the error is raised, as a record-by-record reader would have done.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from formats import CodecContext, get_codec
from formats.columns import DECODE_BATCH, DECODED, records_digest_inputs, update_digest
from formats.errors import undecodable
from layout.manifest import OffsetGap
from layout.schemas import cached_avro_lookup
from tasks.restore_errors import CorruptObjectError, OrderingViolationError
from tasks.restore_plan import RestoreObject, RestorePlan, RestoreUnit
from tasks.s3 import get_object_bytes

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@dataclass(frozen=True, slots=True)
class SourceBatch:
    """Decoded records in restore order (DECODED columns) with their source offsets (or, when
    the objects carry no offsets, their positions in the unit) and the objects they came from."""

    batch: pa.RecordBatch
    offsets: np.ndarray  # int64, one per row
    objects: tuple[str, ...]


def codec_context(plan: RestorePlan, topic: str, partition: int, object_key: str) -> CodecContext:
    if plan.manifest_format:
        from kcql import BackupSpec
        from layout.spec_bridge import codec_context as from_spec

        context = from_spec(BackupSpec.model_validate(plan.codec_spec), topic, partition, object_key)
        if not plan.schemas:
            return context
        # value-only objects with typed columns from Avro values are encoded back with them
        return dataclasses.replace(context, avro_schemas=cached_avro_lookup(plan.schemas))
    envelope = plan.codec_spec["envelope"]
    return CodecContext(
        topic=topic,
        partition=partition,
        envelope=bool(envelope["enabled"]),
        envelope_key=envelope["key"],
        envelope_value=envelope["value"],
        envelope_headers=envelope["headers"],
        envelope_metadata=envelope["metadata"],
        key_converter=plan.codec_spec["key_converter"],
        value_converter=plan.codec_spec["value_converter"],
        compression=None,
        compression_level=None,
        object_key=object_key,
    )


def fetch_object(s3: S3Client, bucket: str, obj: RestoreObject) -> bytes:
    data = get_object_bytes(s3, bucket, obj.key)
    if obj.size is not None and len(data) != obj.size:
        raise CorruptObjectError(bucket, obj.key, f"{len(data)} bytes, the manifest says {obj.size}")
    if obj.sha256 is not None:
        actual = hashlib.sha256(data).hexdigest()
        if actual != obj.sha256:
            raise CorruptObjectError(
                bucket, obj.key, f"sha256 {actual} differs from the manifest's {obj.sha256}"
            )
    return data


def _conform(batch: pa.RecordBatch) -> pa.RecordBatch:
    """The batch under exactly the DECODED schema (so that batches of several objects concatenate)."""
    if batch.schema.equals(DECODED):
        return batch
    return pa.RecordBatch.from_arrays(
        [batch.column(name).cast(DECODED.field(name).type) for name in DECODED.names], schema=DECODED
    )


def decode_object(
    s3: S3Client, plan: RestorePlan, unit: RestoreUnit, obj: RestoreObject
) -> Iterator[pa.RecordBatch]:
    """The object's records as DECODED batches, decoded lazily; a decoding failure names the
    object, and the record count is checked against the manifest once the object is read."""
    data = fetch_object(s3, plan.bucket, obj)
    codec = get_codec(plan.format)
    context = codec_context(plan, unit.source_topic or unit.target_topic, unit.source_partition or 0, obj.key)
    count = 0
    try:
        for batch in codec.read_columns(data, context):
            if batch.num_rows:
                count += batch.num_rows
                yield _conform(batch)
    except Exception as exc:  # noqa: BLE001 - any decoding failure: this object is corrupt
        raise undecodable(plan.bucket, obj.key, exc, count) from exc
    if obj.record_count is not None and count != obj.record_count:
        raise CorruptObjectError(
            plan.bucket, obj.key, f"decoded {count} records, the manifest says {obj.record_count}"
        )


def _offsets(batch: pa.RecordBatch) -> np.ndarray:
    return batch.column("offset").to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


def _first(mask: np.ndarray) -> int | None:
    """Index of the first True, None when there is none."""
    hits = np.flatnonzero(mask)
    return int(hits[0]) if len(hits) else None


def _clusters(objects: Sequence[RestoreObject]) -> list[list[RestoreObject]]:
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


def _in_gaps(first: int, last: int, gaps: Sequence[OffsetGap]) -> bool:
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
        bad_range = _first((offsets < obj.first_offset) | (offsets > obj.last_offset))
    before = np.empty_like(offsets)
    before[1:] = offsets[:-1]
    not_up = offsets[1:] <= offsets[:-1]
    bad_order = _first(not_up)
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


def _object_batches(
    s3: S3Client, plan: RestorePlan, unit: RestoreUnit, obj: RestoreObject
) -> Iterator[tuple[pa.RecordBatch, np.ndarray]]:
    """An object's batches with their source offsets, checked against the object's bounds."""
    previous: int | None = None
    for batch in decode_object(s3, plan, unit, obj):
        offsets = _offsets(batch)
        found = object_violation(obj, offsets, previous)
        if found is not None:
            index, reason = found
            if index:
                yield batch.slice(0, index), offsets[:index]
            raise OrderingViolationError(
                unit.source_topic, unit.source_partition, obj.key, int(offsets[index]), reason
            )
        previous = int(offsets[-1])
        yield batch, offsets


def _value_only_records(s3: S3Client, plan: RestorePlan, unit: RestoreUnit) -> Iterator[SourceBatch]:
    """Objects without offsets (value-only): records in object order, numbered by position.
    With a manifest, an object whose offsets are contiguous gets its real offsets."""
    position = 0
    for obj in unit.objects:
        contiguous = (
            obj.first_offset is not None
            and obj.last_offset is not None
            and obj.record_count == obj.last_offset - obj.first_offset + 1
        )
        index = 0
        for batch in decode_object(s3, plan, unit, obj):
            rows = batch.num_rows
            base = obj.first_offset + index if contiguous and obj.first_offset is not None else position
            yield SourceBatch(batch, np.arange(base, base + rows, dtype=np.int64), (obj.key,))
            index += rows
            position += rows


def _metadata_records(s3: S3Client, plan: RestorePlan, unit: RestoreUnit) -> Iterator[SourceBatch]:
    """Envelopes without a manifest: objects in key order; offsets must increase per source partition."""
    last: dict[tuple[str, int], tuple[int, str]] = {}
    for obj in unit.objects:
        for batch in decode_object(s3, plan, unit, obj):
            offsets = _offsets(batch)
            topics = batch.column("topic").to_pylist()
            partitions = batch.column("partition").to_numpy(zero_copy_only=False).astype(np.int64)
            # (topic, partition) of each record as one integer code
            names = sorted(set(topics))
            if len(names) == 1:
                codes = partitions
            else:
                number = {name: i for i, name in enumerate(names)}
                span = int(partitions.max()) + 1
                codes = np.array([number[t] for t in topics], dtype=np.int64) * span + partitions
            problem: tuple[int, int] | None = None  # (record index, offset before it)
            ends: dict[tuple[str, int], tuple[int, str]] = {}
            for code in np.unique(codes):
                rows = np.flatnonzero(codes == code)
                where = (topics[int(rows[0])], int(partitions[rows[0]]))
                ordered = offsets[rows]
                before = last.get(where)
                bad = _first(ordered[1:] <= ordered[:-1])
                found = None if bad is None else (int(rows[bad + 1]), int(ordered[bad]))
                if before is not None and ordered[0] <= before[0]:
                    found = (int(rows[0]), before[0])
                if found is not None and (problem is None or found[0] < problem[0]):
                    problem = found
                ends[where] = (int(ordered[-1]), obj.key)
            if problem is not None:
                index, previous = problem
                where = (topics[index], int(partitions[index]))
                before = last.get(where)
                # the record before it: in this object, or where `last` says
                before_key = obj.key if before is None or previous != before[0] else before[1]
                if index:
                    yield SourceBatch(batch.slice(0, index), offsets[:index], (obj.key,))
                raise OrderingViolationError(
                    where[0],
                    where[1],
                    obj.key,
                    int(offsets[index]),
                    f"offset does not increase after {previous} (object {before_key}): objects overlap",
                )
            last.update(ends)
            yield SourceBatch(batch, offsets, (obj.key,))


class _Order:
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
        repeat = _first(offsets[1:] <= offsets[:-1])
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
                if not _in_gaps(int(expected[index]), int(offsets[index]) - 1, self.unit.gaps):
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


def _merged(
    s3: S3Client, plan: RestorePlan, unit: RestoreUnit, cluster: Sequence[RestoreObject], order: _Order
) -> Iterator[SourceBatch]:
    """The records of interleaved objects (PARTITIONBY) merged by offset and checked. Each object
    is decoded whole and cut at its first bad record; the error that a record-by-record k-way
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
            for batch, _ in _object_batches(s3, plan, unit, obj):
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
    offsets = _offsets_table(table)
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


def _offsets_table(table: pa.Table) -> np.ndarray:
    return table.column("offset").to_numpy().astype(np.int64, copy=False)


def _manifest_records(s3: S3Client, plan: RestorePlan, unit: RestoreUnit) -> Iterator[SourceBatch]:
    """One source partition's records in offset order across its objects (merged where PARTITIONBY
    interleaves them), with every ordering rule checked."""
    by_values: dict[str, RestoreObject] = {}
    for obj in unit.objects:
        group = json.dumps(obj.partition_values, sort_keys=True)
        before = by_values.get(group)
        if (
            before is not None
            and obj.first_offset is not None
            and before.last_offset is not None
            and obj.first_offset <= before.last_offset
        ):
            raise OrderingViolationError(
                unit.source_topic,
                unit.source_partition,
                obj.key,
                obj.first_offset,
                f"object overlaps {before.key} (offsets {before.first_offset}–{before.last_offset})",
            )
        by_values[group] = obj
    order = _Order(unit)
    for cluster in _clusters(unit.objects):
        if len(cluster) > 1:
            yield from _merged(s3, plan, unit, cluster, order)
            continue
        [obj] = cluster
        for batch, offsets in _object_batches(s3, plan, unit, obj):
            found = order.violation(offsets, [obj.key], np.zeros(len(offsets), dtype=np.int64))
            if found is not None:
                index, reason = found
                if index:
                    yield SourceBatch(batch.slice(0, index), offsets[:index], (obj.key,))
                raise OrderingViolationError(
                    unit.source_topic, unit.source_partition, obj.key, int(offsets[index]), reason
                )
            yield SourceBatch(batch, offsets, (obj.key,))
            order.passed(offsets, obj.key)
    expected = order.expected
    if unit.check_gaps and expected is not None:
        end = max((s.end_offset for s in unit.segments), default=expected)
        if expected < end and not _in_gaps(expected, end - 1, unit.gaps):
            last_key = unit.objects[-1].key if unit.objects else "(no object)"
            raise OrderingViolationError(
                unit.source_topic,
                unit.source_partition,
                last_key,
                expected,
                f"offsets {expected}–{end - 1} of the backed-up window are in no object and no recorded gap",
            )


def unit_records(s3: S3Client, plan: RestorePlan, unit: RestoreUnit) -> Iterator[SourceBatch]:
    """Every record of the unit's objects (before the window), in restore order, as batches."""
    if unit.routing == "metadata" or (not plan.manifest_format and plan.envelope):
        return _metadata_records(s3, plan, unit)
    if not unit.offsets_known or not plan.envelope or not _has_metadata(plan):
        return _value_only_records(s3, plan, unit)
    return _manifest_records(s3, plan, unit)


def _has_metadata(plan: RestorePlan) -> bool:
    envelope = plan.codec_spec.get("envelope")
    return not isinstance(envelope, dict) or bool(envelope.get("metadata", True))


def hash_rows(hasher: Any, inputs: pa.LargeBinaryArray, rows: np.ndarray) -> None:
    """Feed the digest inputs of `rows` (increasing indexes) to a hashlib object: one update for
    a contiguous run, else over the rows gathered back to back."""
    if not len(rows):
        return
    first, last = int(rows[0]), int(rows[-1])
    if last - first + 1 == len(rows):
        update_digest(hasher, inputs, first, last + 1)
    else:
        update_digest(hasher, inputs.take(pa.array(rows)))


class SegmentDigests:
    """Recomputes each manifest segment's records digest from the decoded records."""

    def __init__(self, unit: RestoreUnit) -> None:
        self.segments = list(unit.segments) if unit.compare_segments else []
        self.hashers = [hashlib.sha256() for _ in self.segments]
        self.counts = [0] * len(self.segments)

    def add(self, batch: pa.RecordBatch, offsets: np.ndarray) -> pa.LargeBinaryArray | None:
        """Count and hash each record into the first segment holding its offset; returns the
        batch's digest inputs (None when no segment is compared), which the caller may reuse."""
        if not self.segments or not batch.num_rows:
            return None
        inputs = records_digest_inputs(batch)
        owner = np.full(len(offsets), -1, dtype=np.int64)
        for index, segment in enumerate(self.segments):
            owner[(owner < 0) & (offsets >= segment.start_offset) & (offsets < segment.end_offset)] = index
        for index in np.unique(owner):
            if index < 0:
                continue
            rows = np.flatnonzero(owner == index)
            self.counts[index] += len(rows)
            hash_rows(self.hashers[index], inputs, rows)
        return inputs

    def mismatches(self) -> list[str]:
        problems = []
        for segment, hasher, count in zip(self.segments, self.hashers, self.counts, strict=True):
            digest = "sha256:" + hasher.hexdigest()
            if count != segment.record_count:
                problems.append(
                    f"backup {segment.backup_id}: decoded {count} records, the manifest says {segment.record_count}"
                )
            elif digest != segment.records_digest:
                problems.append(
                    f"backup {segment.backup_id}: records digest {digest} of the decoded objects differs "
                    f"from the manifest's {segment.records_digest}"
                )
        return problems
