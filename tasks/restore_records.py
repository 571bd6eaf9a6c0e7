"""Reading a restore unit's records: fetch each object, check it against the manifest, decode it
as a stream, and check the order of source offsets (strictly increasing, no overlapping objects,
holes only where the manifest recorded gaps). Pure of Kafka: records in, records out.
"""

from __future__ import annotations

import hashlib
import heapq
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from formats import CodecContext, RecordsDigest, get_codec
from formats.digest import digest_input
from formats.envelope import Record
from layout.manifest import OffsetGap
from tasks.restore_errors import CorruptObjectError, OrderingViolationError
from tasks.restore_plan import RestoreObject, RestorePlan, RestoreUnit
from tasks.s3 import get_object_bytes


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """A decoded record with where it came from; `offset` is its source offset (or, when the
    objects carry no offsets, its position in the unit)."""

    record: Record
    offset: int
    object_key: str


def codec_context(plan: RestorePlan, topic: str, partition: int, object_key: str) -> CodecContext:
    if plan.manifest_format:
        from kcql import BackupSpec
        from layout.spec_bridge import codec_context as from_spec

        return from_spec(BackupSpec.model_validate(plan.codec_spec), topic, partition, object_key)
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


def fetch_object(s3: Any, bucket: str, obj: RestoreObject) -> bytes:
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


def decode_object(s3: Any, plan: RestorePlan, unit: RestoreUnit, obj: RestoreObject) -> Iterator[Record]:
    """The object's records, decoded lazily; a decoding failure names the object."""
    data = fetch_object(s3, plan.bucket, obj)
    codec = get_codec(plan.format)
    context = codec_context(plan, unit.source_topic or unit.target_topic, unit.source_partition or 0, obj.key)
    count = 0
    try:
        for record in codec.reader(data, context):
            count += 1
            yield record
    except (CorruptObjectError, OrderingViolationError):
        raise
    except Exception as exc:  # noqa: BLE001 - any decoding failure: this object is corrupt
        raise CorruptObjectError(plan.bucket, obj.key, f"cannot decode record {count}: {exc}") from exc
    if obj.record_count is not None and count != obj.record_count:
        raise CorruptObjectError(
            plan.bucket, obj.key, f"decoded {count} records, the manifest says {obj.record_count}"
        )


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


def _object_records(
    s3: Any, plan: RestorePlan, unit: RestoreUnit, obj: RestoreObject
) -> Iterator[SourceRecord]:
    """An object's records with their source offsets, checked against the object's bounds."""
    previous: int | None = None
    for record in decode_object(s3, plan, unit, obj):
        offset = record.offset
        if (
            obj.first_offset is not None
            and obj.last_offset is not None
            and not obj.first_offset <= offset <= obj.last_offset
        ):
            raise OrderingViolationError(
                unit.source_topic,
                unit.source_partition,
                obj.key,
                offset,
                f"outside the object's range {obj.first_offset}–{obj.last_offset}",
            )
        if previous is not None and offset <= previous:
            raise OrderingViolationError(
                unit.source_topic,
                unit.source_partition,
                obj.key,
                offset,
                f"offset does not increase after {previous}",
            )
        previous = offset
        yield SourceRecord(record, offset, obj.key)


def _value_only_records(s3: Any, plan: RestorePlan, unit: RestoreUnit) -> Iterator[SourceRecord]:
    """Objects without offsets (value-only): records in object order, numbered by position.
    With a manifest, an object whose offsets are contiguous gets its real offsets."""
    position = 0
    for obj in unit.objects:
        contiguous = (
            obj.first_offset is not None
            and obj.last_offset is not None
            and obj.record_count == obj.last_offset - obj.first_offset + 1
        )
        for index, record in enumerate(decode_object(s3, plan, unit, obj)):
            offset = obj.first_offset + index if contiguous and obj.first_offset is not None else position
            yield SourceRecord(record, offset, obj.key)
            position += 1


def _metadata_records(s3: Any, plan: RestorePlan, unit: RestoreUnit) -> Iterator[SourceRecord]:
    """Envelopes without a manifest: objects in key order; offsets must increase per source partition."""
    last: dict[tuple[str, int], tuple[int, str]] = {}
    for obj in unit.objects:
        for record in decode_object(s3, plan, unit, obj):
            where = (record.topic, record.partition)
            before = last.get(where)
            if before is not None and record.offset <= before[0]:
                raise OrderingViolationError(
                    record.topic,
                    record.partition,
                    obj.key,
                    record.offset,
                    f"offset does not increase after {before[0]} (object {before[1]}): objects overlap",
                )
            last[where] = (record.offset, obj.key)
            yield SourceRecord(record, record.offset, obj.key)


def _manifest_records(s3: Any, plan: RestorePlan, unit: RestoreUnit) -> Iterator[SourceRecord]:
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
    previous: SourceRecord | None = None
    expected = min((s.start_offset for s in unit.segments), default=None)
    for cluster in _clusters(unit.objects):
        streams = [_object_records(s3, plan, unit, obj) for obj in cluster]
        merged = streams[0] if len(streams) == 1 else heapq.merge(*streams, key=lambda r: r.offset)
        for item in merged:
            if previous is not None and item.offset <= previous.offset:
                raise OrderingViolationError(
                    unit.source_topic,
                    unit.source_partition,
                    item.object_key,
                    item.offset,
                    f"offset {item.offset} repeats or goes back after {previous.offset} (object {previous.object_key})",
                )
            if (
                unit.check_gaps
                and expected is not None
                and item.offset > expected
                and not _in_gaps(expected, item.offset - 1, unit.gaps)
            ):
                raise OrderingViolationError(
                    unit.source_topic,
                    unit.source_partition,
                    item.object_key,
                    item.offset,
                    f"offsets {expected}–{item.offset - 1} are missing and the manifest records no gap there",
                )
            expected = item.offset + 1
            previous = item
            yield item
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


def unit_records(s3: Any, plan: RestorePlan, unit: RestoreUnit) -> Iterator[SourceRecord]:
    """Every record of the unit's objects (before the window), in restore order."""
    if unit.routing == "metadata" or (not plan.manifest_format and plan.envelope):
        return _metadata_records(s3, plan, unit)
    if not unit.offsets_known or not plan.envelope or not _has_metadata(plan):
        return _value_only_records(s3, plan, unit)
    return _manifest_records(s3, plan, unit)


def _has_metadata(plan: RestorePlan) -> bool:
    envelope = plan.codec_spec.get("envelope")
    return not isinstance(envelope, dict) or bool(envelope.get("metadata", True))


class SegmentDigests:
    """Recomputes each manifest segment's records digest from the decoded records."""

    def __init__(self, unit: RestoreUnit) -> None:
        self.segments = list(unit.segments) if unit.compare_segments else []
        self.digests = [RecordsDigest() for _ in self.segments]
        self.counts = [0] * len(self.segments)

    def add(self, item: SourceRecord) -> bytes | None:
        """Count and hash the record into its segment; returns its digest input (None when no
        segment is compared), which the caller may reuse."""
        for index, segment in enumerate(self.segments):
            if segment.start_offset <= item.offset < segment.end_offset:
                r = item.record
                data = digest_input(r.key, r.value, r.headers, r.timestamp, int(r.timestamp_type))
                self.digests[index].update_input(data)
                self.counts[index] += 1
                return data
        return None

    def mismatches(self) -> list[str]:
        problems = []
        for segment, digest, count in zip(self.segments, self.digests, self.counts, strict=True):
            if count != segment.record_count:
                problems.append(
                    f"backup {segment.backup_id}: decoded {count} records, the manifest says {segment.record_count}"
                )
            elif digest.hexdigest() != segment.records_digest:
                problems.append(
                    f"backup {segment.backup_id}: records digest {digest.hexdigest()} of the decoded objects differs "
                    f"from the manifest's {segment.records_digest}"
                )
        return problems
