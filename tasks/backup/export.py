"""Export one partition's window: read (tasks.services.kafka.reader), group by PARTITIONBY
(layout.grouping), encode and roll by the flush rules (layout.objects, formats), upload
(tasks.backup.upload).

`export_partition` is the plain function; `export_partition_task` its thin retryable task.
A retried export resumes after the objects it already wrote (default layout: their names and
metadata say where they stop) and otherwise rewrites the same keys with the same bytes, which
the conditional upload accepts as already done.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict

from formats import get_codec
from formats.columns import from_messages, records_digest_inputs, update_digest
from formats.wire import schema_ids
from kcql import BackupSpec, Transform
from layout.grouping import PartitionGrouping
from layout.manifest import GapCause, OffsetGap, PartitionEntry, protection_of
from layout.objects import FinishedObject, ObjectRoller
from layout.spec_bridge import codec_context, flush_rules, key_naming
from tasks.backup.plan import BackupPlan, gap_cause
from tasks.backup.upload import upload_finished, written_objects
from tasks.runtime.retry import RETRY_OPTIONS
from tasks.services.kafka.admin import PartitionWindow
from tasks.services.kafka.reader import read_window

if TYPE_CHECKING:
    from tasks.services.object_store import ObjectStore

ProgressCallback = Callable[[int, int], None]
"""Called with (records read so far, bytes written so far)."""


class ExportRequest(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    spec: BackupSpec
    window: PartitionWindow
    backup_id: str
    gap_cause: GapCause = "transaction-markers"
    chain_suffix: str = ""


def export_requests(plan: BackupPlan) -> list[ExportRequest]:
    """One export per partition window of the plan."""
    causes = {t.name: gap_cause(t) for t in plan.topics}
    return [
        ExportRequest(
            spec=plan.spec,
            window=w,
            backup_id=plan.backup_id,
            gap_cause=causes[w.topic],
            chain_suffix=plan.chain_suffix,
        )
        for w in plan.windows
    ]


def export_partition(
    request: ExportRequest,
    kafka_config: dict[str, Any],
    store: ObjectStore,
    transforms: tuple[Transform, ...] = (),
    on_progress: ProgressCallback | None = None,
    avro_lookup: Callable[[int], Any] | None = None,
) -> PartitionEntry:
    """Read the window a consumed batch at a time, as columns (formats.columns): the records
    digest, the gaps, PARTITIONBY groups and the objects' cuts are computed on whole batches."""
    spec, window = request.spec, request.window
    started = time.monotonic()
    protection = protection_of(spec.protection, request.backup_id)
    if protection and protection.lock_mode:
        store.check_object_lock(spec.bucket, f"'object.lock.mode'='{protection.lock_mode}'")
    codec = get_codec(spec.format.value)
    naming = key_naming(spec, codec.spec.extension, request.chain_suffix)
    context = codec_context(
        spec.format.value, spec.codec, window.topic, window.partition, avro_schemas=avro_lookup
    )
    roller = ObjectRoller(codec, context, naming, flush_rules(spec))
    wire = WireIds(spec)
    grouping = PartitionGrouping(spec, window.topic, window.partition, transforms, avro_lookup)
    objects = written_objects(store, spec.bucket, naming, window)
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
            objects.append(upload_finished(store, spec.bucket, obj, request.backup_id, protection))
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
        wire.add(batch)
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
        schema_ids=wire.ids(),
        not_wire_format=wire.not_wire_format,
    )


def needs_avro_schemas(spec: BackupSpec) -> bool:
    """Whether the export decodes Avro values: typed columns (value-only objects) or PARTITIONBY
    fields of keys or values under an `avro` converter."""
    typed = spec.value_converter == "avro" and not spec.envelope.enabled
    by_field = any(
        field.source in ("key", "value")
        and field.path
        and getattr(spec, f"{field.source}_converter") == "avro"
        for field in spec.partition_by
    )
    return typed or by_field


class WireIds:
    """The registry schema ids the records' keys and values name, for each side whose converter
    is `avro`, and how many of those keys and values are not in the wire format."""

    def __init__(self, spec: BackupSpec) -> None:
        self.sides = [side for side in ("key", "value") if getattr(spec, f"{side}_converter") == "avro"]
        self.found: dict[str, set[int]] = {side: set() for side in self.sides}
        self.not_wire_format = 0

    def add(self, batch: Any) -> None:
        for side in self.sides:
            ids, others = schema_ids(batch.column(side))
            self.found[side] |= ids
            self.not_wire_format += others

    def ids(self) -> dict[str, tuple[int, ...]]:
        return {side: tuple(sorted(ids)) for side, ids in self.found.items() if ids}


def _gaps(offsets: np.ndarray, expected: int, cause: GapCause) -> list[OffsetGap]:
    """The holes before and inside one batch's offsets."""
    gaps = []
    if offsets[0] > expected:
        gaps.append(OffsetGap(first=expected, last=int(offsets[0]) - 1, cause=cause))
    for index in np.flatnonzero(np.diff(offsets) > 1):
        gaps.append(OffsetGap(first=int(offsets[index]) + 1, last=int(offsets[index + 1]) - 1, cause=cause))
    return gaps


@task(
    name="export-partition",
    cache_policy=NO_CACHE,
    task_run_name="export {request.window.topic}[{request.window.partition}]",
    **RETRY_OPTIONS,
)
def export_partition_task(request: ExportRequest, transforms: tuple[Transform, ...] = ()) -> PartitionEntry:
    from tasks.runtime.progress import report_progress
    from tasks.services.kafka.clients import client_config
    from tasks.services.object_store import open_store
    from tasks.services.schema_registry import Registry

    spec = request.spec

    def on_progress(records: int, written: int) -> None:
        report_progress(
            request.window.topic,
            request.window.partition,
            records,
            request.window.end - request.window.start,
            written,
        )

    lookup = Registry(spec.schema_registry_url).avro_lookup() if needs_avro_schemas(spec) else None
    return export_partition(request, client_config(), open_store(), transforms, on_progress, lookup)
