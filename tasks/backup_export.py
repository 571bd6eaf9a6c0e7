"""Export one partition's window: read, partition, encode, roll by the flush rules, upload.

`export_partition` is the plain function; `export_partition_task` its thin retryable task.
A retried export resumes after the objects it already wrote (default layout: their names and
metadata say where they stop) and otherwise rewrites the same keys with the same bytes, which
the conditional upload accepts as already done.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict

from formats import get_codec
from formats.columns import from_messages, records_digest_inputs, to_records, update_digest
from kcql import BackupSpec, Transform
from layout.keys import KeyNaming, parse_object_key
from layout.manifest import GapCause, ObjectEntry, OffsetGap, PartitionEntry, join_key
from layout.objects import FinishedObject, ObjectRoller
from layout.spec_bridge import codec_context, flush_rules, key_naming, partition_values_for
from layout.transforms import compile_transforms
from tasks.kafka_admin import PartitionWindow
from tasks.kafka_reader import read_window
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
    put_object_once(s3, bucket, obj.key, obj.data, _object_metadata(obj, backup_id), obj.sha256)
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
    """Read the window a consumed batch at a time, as columns (formats.columns): the records
    digest, the gaps, PARTITIONBY groups and the objects' cuts are computed on whole batches."""
    spec, window = request.spec, request.window
    started = time.monotonic()
    codec = get_codec(spec.format.value)
    naming = key_naming(spec, codec.spec.extension)
    roller = ObjectRoller(
        codec, codec_context(spec, window.topic, window.partition), naming, flush_rules(spec)
    )
    grouping = _Grouping(spec, window, transforms)
    objects = written_objects(s3, spec.bucket, naming, window)
    resume_after = objects[-1].last_offset if objects else window.start - 1

    digest = hashlib.sha256()
    gaps: list[OffsetGap] = [request.window.retention_gap] if request.window.retention_gap else []
    expected = window.start
    count = 0
    written_bytes = sum(o.size for o in objects)
    last_report = 0.0

    def upload(finished: list[FinishedObject]) -> None:
        nonlocal written_bytes
        for obj in finished:
            objects.append(upload_finished(s3, spec.bucket, obj, request.backup_id))
            written_bytes += len(obj.data)

    group = f"kbackup-export-{request.backup_id}"
    batches = read_window(
        kafka_config, window.topic, window.partition, window.start, window.end, spec.isolation_level, group
    )
    for messages in batches:
        batch = from_messages(messages)
        offsets = batch.column("offset").to_numpy()
        gaps.extend(_gaps(offsets, expected, request.gap_cause))
        expected = int(offsets[-1]) + 1
        inputs = records_digest_inputs(batch)
        update_digest(digest, inputs)
        count += batch.num_rows
        if resume_after >= offsets[0]:
            skip = int(np.searchsorted(offsets, resume_after, side="right"))
            batch, inputs = batch.slice(skip), inputs.slice(skip)
        for values, rows, row_inputs in grouping.groups(batch, inputs):
            upload(roller.add(rows, row_inputs, values))
        if on_progress and time.monotonic() - last_report > 0.5:
            on_progress(count, written_bytes)
            last_report = time.monotonic()
    if expected < window.end and window.end > window.start:
        gaps.append(OffsetGap(first=expected, last=window.end - 1, cause=request.gap_cause))
    upload(roller.finish_all())
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
        records_digest="sha256:" + digest.hexdigest(),
        gaps=tuple(gaps),
        objects=tuple(objects),
        seconds=round(time.monotonic() - started, 3),
    )


def _gaps(offsets: np.ndarray, expected: int, cause: GapCause) -> list[OffsetGap]:
    """The holes before and inside one batch's offsets."""
    gaps = []
    if offsets[0] > expected:
        gaps.append(OffsetGap(first=expected, last=int(offsets[0]) - 1, cause=cause))
    for index in np.flatnonzero(np.diff(offsets) > 1):
        gaps.append(OffsetGap(first=int(offsets[index]) + 1, last=int(offsets[index + 1]) - 1, cause=cause))
    return gaps


class _Grouping:
    """PARTITIONBY: a batch split by its records' partition values (one group, (), without)."""

    def __init__(self, spec: BackupSpec, window: PartitionWindow, transforms: tuple[Transform, ...]) -> None:
        self.values = partition_values_for(spec)
        self.header_transforms = compile_transforms(transforms)
        self.topic, self.partition = window.topic, window.partition

    def groups(
        self, batch: pa.RecordBatch, inputs: pa.Array
    ) -> Iterator[tuple[tuple[str | None, ...], pa.RecordBatch, pa.Array]]:
        if batch.num_rows == 0:
            return
        if self.values is None:
            yield (), batch, inputs
            return
        rows: dict[tuple[str | None, ...], list[int]] = {}
        for index, record in enumerate(to_records(batch, self.topic, self.partition)):
            extra = [header for transform in self.header_transforms for header in transform(record)]
            rows.setdefault(self.values.of(record, extra), []).append(index)
        if len(rows) == 1:
            yield next(iter(rows)), batch, inputs
            return
        for values, indices in rows.items():
            taken = pa.array(indices, pa.int64())
            yield values, batch.take(taken), inputs.take(taken)


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
