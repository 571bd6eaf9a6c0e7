"""Reading a restore unit's records as columns: fetch each object, check it against the manifest,
decode it into formats.columns.DECODED batches, and check the order of source offsets
(strictly increasing, no overlapping objects, holes only where the manifest recorded gaps) with
numpy on the offset column. Pure of Kafka: batches in, batches out.

A check that fails names the first offending record; the records before it are still yielded
(in batches) before the error is raised, as a record-by-record reader would have done.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from formats import get_codec
from formats.columns import DECODED
from formats.errors import CorruptObjectError, undecodable
from layout.restore.errors import OrderingViolationError
from layout.restore.order import Order, SourceBatch, clusters, first_true, in_gaps, merged, object_violation
from layout.restore.plan import RestoreObject, RestorePlan, RestoreUnit
from layout.schemas import cached_avro_lookup
from layout.spec_bridge import codec_context

if TYPE_CHECKING:
    from tasks.services.object_store import ObjectStore


def fetch_object(store: ObjectStore, bucket: str, obj: RestoreObject) -> bytes:
    data = store.get(bucket, obj.key)
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
    store: ObjectStore, plan: RestorePlan, unit: RestoreUnit, obj: RestoreObject
) -> Iterator[pa.RecordBatch]:
    """The object's records as DECODED batches, decoded lazily; a decoding failure names the
    object, and the record count is checked against the manifest once the object is read."""
    data = fetch_object(store, plan.bucket, obj)
    codec = get_codec(plan.format)
    topic, partition = unit.source_topic or unit.target_topic, unit.source_partition or 0
    lookup = cached_avro_lookup(plan.schemas)  # value-only objects' typed columns of Avro values
    context = codec_context(plan.format, plan.codec, topic, partition, obj.key, lookup)
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


def _object_batches(
    store: ObjectStore, plan: RestorePlan, unit: RestoreUnit, obj: RestoreObject
) -> Iterator[tuple[pa.RecordBatch, np.ndarray]]:
    """An object's batches with their source offsets, checked against the object's bounds."""
    previous: int | None = None
    for batch in decode_object(store, plan, unit, obj):
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


def _value_only_records(store: ObjectStore, plan: RestorePlan, unit: RestoreUnit) -> Iterator[SourceBatch]:
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
        for batch in decode_object(store, plan, unit, obj):
            rows = batch.num_rows
            base = obj.first_offset + index if contiguous and obj.first_offset is not None else position
            yield SourceBatch(batch, np.arange(base, base + rows, dtype=np.int64), (obj.key,))
            index += rows
            position += rows


def _metadata_records(store: ObjectStore, plan: RestorePlan, unit: RestoreUnit) -> Iterator[SourceBatch]:
    """Envelopes without a manifest: objects in key order; offsets must increase per source partition."""
    last: dict[tuple[str, int], tuple[int, str]] = {}
    for obj in unit.objects:
        for batch in decode_object(store, plan, unit, obj):
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
                bad = first_true(ordered[1:] <= ordered[:-1])
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


def _manifest_records(store: ObjectStore, plan: RestorePlan, unit: RestoreUnit) -> Iterator[SourceBatch]:
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
    order = Order(unit)
    for cluster in clusters(unit.objects):
        if len(cluster) > 1:
            yield from merged(unit, cluster, order, lambda obj: _object_batches(store, plan, unit, obj))
            continue
        [obj] = cluster
        for batch, offsets in _object_batches(store, plan, unit, obj):
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
        if expected < end and not in_gaps(expected, end - 1, unit.gaps):
            last_key = unit.objects[-1].key if unit.objects else "(no object)"
            raise OrderingViolationError(
                unit.source_topic,
                unit.source_partition,
                last_key,
                expected,
                f"offsets {expected}–{end - 1} of the backed-up window are in no object and no recorded gap",
            )


def unit_records(store: ObjectStore, plan: RestorePlan, unit: RestoreUnit) -> Iterator[SourceBatch]:
    """Every record of the unit's objects (before the window), in restore order, as batches."""
    if unit.routing == "metadata" or (not plan.manifest_format and plan.envelope):
        return _metadata_records(store, plan, unit)
    if not unit.offsets_known or not plan.envelope or not plan.codec.envelope.metadata:
        return _value_only_records(store, plan, unit)
    return _manifest_records(store, plan, unit)
