"""Export one partition's window: read, partition, encode, roll by the flush rules, upload.

`export_partition` is the plain function; `export_partition_task` its thin retryable task.
A retried export resumes after the objects it already wrote (default layout: their names and
metadata say where they stop) and otherwise rewrites the same keys with the same bytes, which
the conditional upload accepts as already done.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict

from formats import RecordsDigest, get_codec
from formats.digest import digest_input
from formats.envelope import Record, TimestampType
from kcql import BackupSpec, Transform
from layout.keys import KeyNaming, parse_object_key
from layout.manifest import GapCause, ObjectEntry, OffsetGap, PartitionEntry, join_key
from layout.objects import FinishedObject, ObjectRoller
from layout.spec_bridge import codec_context, flush_rules, key_naming, partition_values_for
from layout.transforms import compile_transforms
from tasks.kafka_admin import PartitionWindow
from tasks.kafka_reader import consumed_headers, read_window
from tasks.retry import RETRY_OPTIONS
from tasks.s3 import head_object, list_objects, put_object_once

ProgressCallback = Callable[[int, int], None]
"""Called with (records read so far, bytes written so far)."""

_META_FIRST = "first-offset"
_META_COUNT = "record-count"
_META_MIN_TS = "min-timestamp"
_META_MAX_TS = "max-timestamp"
_META_DIGEST = "records-digest"
_META_BACKUP = "backup-id"


class ExportRequest(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    spec: BackupSpec
    window: PartitionWindow
    backup_id: str
    gap_cause: GapCause = "transaction-markers"


def _object_metadata(obj: FinishedObject, backup_id: str) -> dict[str, str]:
    return {
        _META_FIRST: str(obj.first_offset),
        _META_COUNT: str(obj.record_count),
        _META_MIN_TS: "" if obj.min_timestamp is None else str(obj.min_timestamp),
        _META_MAX_TS: "" if obj.max_timestamp is None else str(obj.max_timestamp),
        _META_DIGEST: obj.records_digest,
        _META_BACKUP: backup_id,
    }


def upload_finished(s3: Any, bucket: str, obj: FinishedObject, backup_id: str) -> ObjectEntry:
    put_object_once(s3, bucket, obj.key, obj.data, _object_metadata(obj, backup_id))
    return ObjectEntry(
        key=obj.key,
        first_offset=obj.first_offset,
        last_offset=obj.last_offset,
        record_count=obj.record_count,
        min_timestamp=obj.min_timestamp,
        max_timestamp=obj.max_timestamp,
        size=len(obj.data),
        sha256=obj.sha256,
        records_digest=obj.records_digest,
        partition_values=obj.partition_values,
    )


def _optional_int(text: str | None) -> int | None:
    return int(text) if text else None


def written_objects(s3: Any, bucket: str, naming: KeyNaming, window: PartitionWindow) -> list[ObjectEntry]:
    """Objects a previous attempt of this export already wrote (default layout only): the chain of
    non-overlapping objects from the window's start, read back from their keys and metadata."""
    if naming.partitioned:
        return []
    folder = join_key(naming.prefix, window.topic, naming.padding.pad("partition", window.partition)) + "/"
    candidates = []
    for listed in list_objects(s3, bucket, folder):
        parsed = parse_object_key(listed["Key"], naming.prefix)
        if parsed.last_offset is not None and window.start <= parsed.last_offset < window.end:
            candidates.append((parsed.last_offset, listed["Key"]))
    chain: list[ObjectEntry] = []
    next_free = window.start
    for last_offset, key in sorted(candidates):
        head = head_object(s3, bucket, key)
        metadata = (head or {}).get("Metadata", {})
        if not head or _META_FIRST not in metadata or "sha256" not in metadata:
            break
        first = int(metadata[_META_FIRST])
        if first < next_free:
            break  # overlaps the chain: an orphan of another window; resume before it
        chain.append(
            ObjectEntry(
                key=key,
                first_offset=first,
                last_offset=last_offset,
                record_count=int(metadata[_META_COUNT]),
                min_timestamp=_optional_int(metadata.get(_META_MIN_TS)),
                max_timestamp=_optional_int(metadata.get(_META_MAX_TS)),
                size=int(head["ContentLength"]),
                sha256=metadata["sha256"],
                records_digest=metadata[_META_DIGEST],
            )
        )
        next_free = last_offset + 1
    return chain


def export_partition(
    request: ExportRequest,
    kafka_config: dict[str, Any],
    s3: Any,
    transforms: tuple[Transform, ...] = (),
    on_progress: ProgressCallback | None = None,
) -> PartitionEntry:
    spec, window = request.spec, request.window
    header_transforms = compile_transforms(transforms)
    started = time.monotonic()
    codec = get_codec(spec.format.value)
    naming = key_naming(spec, codec.spec.extension)
    roller = ObjectRoller(
        codec, codec_context(spec, window.topic, window.partition), naming, flush_rules(spec)
    )
    values = partition_values_for(spec)
    objects = written_objects(s3, spec.bucket, naming, window)
    resume_after = objects[-1].last_offset if objects else window.start - 1

    digest = RecordsDigest()
    gaps: list[OffsetGap] = [request.window.retention_gap] if request.window.retention_gap else []
    expected = window.start
    count = 0
    written_bytes = sum(o.size for o in objects)
    last_report = 0.0

    def upload(obj: FinishedObject) -> None:
        nonlocal written_bytes
        objects.append(upload_finished(s3, spec.bucket, obj, request.backup_id))
        written_bytes += len(obj.data)

    group = f"kbackup-export-{request.backup_id}"
    messages = read_window(
        kafka_config, window.topic, window.partition, window.start, window.end, spec.isolation_level, group
    )
    for message in messages:
        offset = message.offset()
        assert offset is not None, "a consumed record has an offset"
        if offset > expected:
            gaps.append(OffsetGap(first=expected, last=offset - 1, cause=request.gap_cause))
        expected = offset + 1
        key, value = message.key(), message.value()
        headers = consumed_headers(message)
        ts_type, ts = message.timestamp()
        timestamp = None if ts_type == 0 else ts
        digest_bytes = digest_input(key, value, headers, timestamp, ts_type)
        digest.update_input(digest_bytes)
        count += 1
        if offset <= resume_after:
            continue
        record = Record(
            key, value, headers, window.topic, window.partition, offset, timestamp, TimestampType(ts_type)
        )
        if values is None:
            partition_key: tuple[str | None, ...] = ()
        else:
            extra = [header for transform in header_transforms for header in transform(record)]
            partition_key = values.of(record, extra)
        for finished in roller.add(record, partition_key, digest_bytes):
            upload(finished)
        if on_progress and time.monotonic() - last_report > 0.5:
            on_progress(count, written_bytes)
            last_report = time.monotonic()
    if expected < window.end and window.end > window.start:
        gaps.append(OffsetGap(first=expected, last=window.end - 1, cause=request.gap_cause))
    for finished in roller.finish_all():
        upload(finished)
    if on_progress:
        on_progress(count, written_bytes)
    objects.sort(key=lambda o: (o.last_offset, o.key))
    return PartitionEntry(
        topic=window.topic,
        partition=window.partition,
        start_offset=window.start,
        end_offset=window.end,
        record_count=count,
        byte_count=written_bytes,
        records_digest=digest.hexdigest(),
        gaps=tuple(gaps),
        objects=tuple(objects),
        seconds=round(time.monotonic() - started, 3),
    )


@task(
    name="export-partition",
    cache_policy=NO_CACHE,
    task_run_name="export {request.window.topic}[{request.window.partition}]",
    **RETRY_OPTIONS,
)
def export_partition_task(request: ExportRequest, transforms: tuple[Transform, ...] = ()) -> PartitionEntry:
    from kbackup.settings import KafkaSettings
    from tasks.progress import report_progress
    from tasks.s3 import s3_client

    def on_progress(records: int, written: int) -> None:
        report_progress(
            request.window.topic,
            request.window.partition,
            records,
            request.window.end - request.window.start,
            written,
        )

    return export_partition(request, KafkaSettings().client_config(), s3_client(), transforms, on_progress)
