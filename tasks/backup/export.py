"""Export partition windows: read (tasks.services.kafka.reader), group by PARTITIONBY
(layout.grouping), encode and roll by the flush rules (layout.objects, formats), upload
(tasks.backup.upload).

A work unit (layout.work_units: many partitions, one task run) reads all its windows through one
consumer (`read_windows`) and feeds each partition's records to that partition's own export
state (`PartitionExport`: roller, digest, gaps, schema ids, grouping, where to resume), so that
keys, object bytes, digests and manifest entries are the same whatever the grouping.
`export_unit` is the plain function and `export_unit_task` its thin retryable task.

A retried unit resumes each partition after the objects it already wrote (default layout: their
names and metadata say where they stop) and otherwise rewrites the same keys with the same
bytes, which the conditional upload accepts as already done.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
from confluent_kafka import Message
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict, Field

from formats import Codec, get_codec
from formats.columns import from_messages, records_digest_inputs, update_digest
from formats.wire import schema_ids
from kcql import BackupSpec, Transform
from layout.grouping import PartitionGrouping
from layout.keys import KeyNaming
from layout.manifest import GapCause, ObjectEntry, OffsetGap, PartitionEntry, Protection, protection_of
from layout.objects import FinishedObject, ObjectRoller
from layout.spec_bridge import codec_context, flush_rules, key_naming
from layout.work_units import Part, pack
from tasks.backup.plan import BackupPlan, gap_cause
from tasks.backup.upload import EarlierKeys, Uploads, earlier_keys, upload_finished, written_objects
from tasks.runtime.retry import RETRY_OPTIONS
from tasks.services.kafka.admin import PartitionWindow
from tasks.services.kafka.reader import read_windows

if TYPE_CHECKING:
    from tasks.services.object_store import ObjectStore

ProgressCallback = Callable[[int, int], None]
"""Called with (records read so far, bytes written so far)."""
UnitProgressCallback = Callable[[str, int, int, int], None]
"""Called with (topic, partition, records read so far, bytes written so far)."""
LISTING_THREADS = 8
"""Partitions whose earlier objects (a retried unit's) are looked up at once."""


class ExportUnit(BaseModel):
    """The windows one task run exports (layout.work_units), in (topic, partition) order."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    spec: BackupSpec
    backup_id: str
    name: str
    windows: tuple[PartitionWindow, ...]
    gap_causes: dict[str, GapCause] = Field(default_factory=dict)
    """Per topic: what an offset hole most likely is (tasks.backup.plan.gap_cause); default
    transaction markers."""
    chain_suffix: str = ""
    earlier: EarlierKeys | None = None
    """The keys an earlier attempt or run may have left in the windows (tasks.backup.upload.
    earlier_keys, listed once for the run before the export); None: each partition's folder is
    listed (a retried task: its own first attempt may have written since that listing)."""


def export_units(plan: BackupPlan, workers: int, earlier: EarlierKeys | None = None) -> list[ExportUnit]:
    """The plan's windows packed into units for `workers` workers (layout.work_units.pack: by
    their records; their bytes are not known before they are read), each given its share of
    `earlier` (the run's listing of what earlier attempts left, if made)."""

    def share(windows: tuple[PartitionWindow, ...]) -> EarlierKeys | None:
        if earlier is None:
            return None
        found: EarlierKeys = {}
        for w in windows:
            keys = earlier.get(w.topic, {}).get(w.partition)
            if keys:
                found.setdefault(w.topic, {})[w.partition] = keys
        return found

    causes = {t.name: gap_cause(t) for t in plan.topics}
    units = pack(plan.windows, lambda w: Part(w.topic, w.partition, w.end - w.start), workers=workers)
    return [
        ExportUnit(
            spec=plan.spec,
            backup_id=plan.backup_id,
            name=unit.name,
            windows=unit.items,
            gap_causes={w.topic: causes[w.topic] for w in unit.items},
            chain_suffix=plan.chain_suffix,
            earlier=share(unit.items),
        )
        for unit in units
    ]


@dataclasses.dataclass(frozen=True)
class UnitContext:
    """What every partition of a unit shares: where and how objects are named, encoded and
    uploaded."""

    spec: BackupSpec
    backup_id: str
    store: ObjectStore
    codec: Codec
    naming: KeyNaming
    protection: Protection | None
    transforms: tuple[Transform, ...] = ()
    avro_lookup: Callable[[int], Any] | None = None

    @classmethod
    def of(
        cls,
        unit: ExportUnit,
        store: ObjectStore,
        transforms: tuple[Transform, ...] = (),
        avro_lookup: Callable[[int], Any] | None = None,
    ) -> UnitContext:
        """The unit's context; checks once that the bucket has Object Lock when the spec asks for it."""
        spec = unit.spec
        protection = protection_of(spec.protection, unit.backup_id)
        if protection and protection.lock_mode:
            store.check_object_lock(spec.bucket, f"'object.lock.mode'='{protection.lock_mode}'")
        codec = get_codec(spec.format.value)
        return cls(
            spec=spec,
            backup_id=unit.backup_id,
            store=store,
            codec=codec,
            naming=key_naming(spec, codec.spec.extension, unit.chain_suffix),
            protection=protection,
            transforms=transforms,
            avro_lookup=avro_lookup,
        )

    def written(self, window: PartitionWindow, listed: tuple[str, ...] | None = None) -> list[ObjectEntry]:
        """The objects an earlier attempt wrote for this window (tasks.backup.upload.written_objects)."""
        return written_objects(self.store, self.spec.bucket, self.naming, window, listed)

    def upload(self, obj: FinishedObject) -> ObjectEntry:
        return upload_finished(self.store, self.spec.bucket, obj, self.backup_id, self.protection)


class PartitionExport:
    """One partition's export in progress: fed its window's records in offset order, a consumed
    run at a time (`add`), `close`d when the window is read (its last objects sent), and made
    into its manifest entry once its uploads are done (`entry`). The records digest, the gaps,
    PARTITIONBY groups and the objects' cuts are computed on whole runs, as columns
    (formats.columns); records up to `written[-1]` (an earlier attempt's objects) are digested and
    counted but not written again."""

    def __init__(
        self,
        context: UnitContext,
        uploads: Uploads,
        window: PartitionWindow,
        gap_cause: GapCause,
        written: Future[list[ObjectEntry]],
        on_progress: ProgressCallback | None = None,
    ) -> None:
        spec = context.spec
        self.window, self.gap_cause, self.on_progress = window, gap_cause, on_progress
        self.uploads = uploads
        self.started = self.done_at = time.monotonic()
        codec_ctx = codec_context(
            spec.format.value, spec.codec, window.topic, window.partition, avro_schemas=context.avro_lookup
        )
        self.roller = ObjectRoller(context.codec, codec_ctx, context.naming, flush_rules(spec))
        self.wire = WireIds(spec)
        self.grouping = PartitionGrouping(
            spec, window.topic, window.partition, context.transforms, context.avro_lookup
        )
        self.written = written  # looked up while the unit reads: see _resume
        self.resumed = False
        self.objects: list[ObjectEntry] = []
        self.sent: list[Future[ObjectEntry]] = []
        self.resume_after = window.start - 1
        self.digest = hashlib.sha256()
        self.gaps: list[OffsetGap] = [window.retention_gap] if window.retention_gap else []
        self.expected = window.start
        self.count = 0
        self.written_bytes = 0
        self.last_report: float | None = None

    def _resume(self) -> None:
        """Before the first records are written: the objects an earlier attempt wrote, and where
        they stop."""
        if self.resumed:
            return
        written = self.written.result()
        self.objects.extend(written)
        self.resume_after = written[-1].last_offset if written else self.window.start - 1
        self.written_bytes += sum(o.size for o in written)
        self.resumed = True

    def _upload(self, finished: list[FinishedObject]) -> None:
        for obj in finished:
            future = self.uploads.send(obj)
            future.add_done_callback(self._uploaded)
            self.sent.append(future)
            self.written_bytes += len(obj.data)

    def _uploaded(self, _: Future[ObjectEntry]) -> None:
        self.done_at = max(self.done_at, time.monotonic())

    def add(self, messages: Sequence[Message]) -> None:
        """The next records of the window (offset order, none before the previous run's)."""
        self._resume()
        batch = from_messages(messages)
        offsets = batch.column("offset").to_numpy()
        self.gaps.extend(_gaps(offsets, self.expected, self.gap_cause))
        self.expected = int(offsets[-1]) + 1
        self.wire.add(batch)
        inputs = records_digest_inputs(batch)
        update_digest(self.digest, inputs)
        self.count += batch.num_rows
        if self.resume_after >= offsets[0]:
            skip = int(np.searchsorted(offsets, self.resume_after, side="right"))
            batch, inputs = batch.slice(skip), inputs.slice(skip)
        for values, rows, row_inputs in self.grouping.groups(batch, inputs):
            self._upload(self.roller.add(rows, row_inputs, values))
        # reported every 0.5 s from the first records on (a small window only when it is closed)
        now = time.monotonic()
        if self.last_report is None:
            self.last_report = now
        elif self.on_progress and now - self.last_report > 0.5:
            self.on_progress(self.count, self.written_bytes)
            self.last_report = now

    def close(self) -> None:
        """The window is read: its open objects are finished and sent."""
        self._resume()
        window = self.window
        if self.expected < window.end and window.end > window.start:
            self.gaps.append(OffsetGap(first=self.expected, last=window.end - 1, cause=self.gap_cause))
        self._upload(self.roller.finish_all())
        if self.on_progress:
            self.on_progress(self.count, self.written_bytes)
        self.done_at = max(self.done_at, time.monotonic())

    def entry(self) -> PartitionEntry:
        """The partition's manifest entry, once its objects are uploaded (raises an upload's failure)."""
        window = self.window
        self.objects.extend(future.result() for future in self.sent)
        self.sent = []
        self.objects.sort(key=lambda o: (o.last_offset, o.key))
        return PartitionEntry(
            topic=window.topic,
            partition=window.partition,
            start_offset=window.start,
            end_offset=window.end,
            record_count=self.count,
            byte_count=self.written_bytes,
            records_digest="sha256:" + self.digest.hexdigest(),
            gaps=tuple(self.gaps),
            objects=tuple(self.objects),
            seconds=round(self.done_at - self.started, 3),
            schema_ids=self.wire.ids(),
            not_wire_format=self.wire.not_wire_format,
        )


def export_unit(
    unit: ExportUnit,
    kafka_config: dict[str, Any],
    store: ObjectStore,
    transforms: tuple[Transform, ...] = (),
    on_progress: UnitProgressCallback | None = None,
    avro_lookup: Callable[[int], Any] | None = None,
) -> list[PartitionEntry]:
    """Export the unit's windows through one consumer: one entry per window, in the unit's order.
    The objects an earlier attempt wrote are looked up on LISTING_THREADS threads while the
    consumer starts; each partition's last objects are finished and sent as soon as its window is
    read, and the uploads go on while the unit reads on (Uploads)."""
    context = UnitContext.of(unit, store, transforms, avro_lookup)
    windows = unit.windows

    def progress_of(window: PartitionWindow) -> ProgressCallback | None:
        if on_progress is None:
            return None
        return lambda records, written_bytes: on_progress(
            window.topic, window.partition, records, written_bytes
        )

    def written(window: PartitionWindow) -> Future[list[ObjectEntry]]:
        if window.end <= window.start:  # nothing can be written in an empty window
            return _done([])
        if unit.earlier is None:
            return listing.submit(context.written, window)
        listed = unit.earlier.get(window.topic, {}).get(window.partition, ())
        return listing.submit(context.written, window, listed) if listed else _done([])

    group = f"kbackup-export-{unit.backup_id}"
    listing = ThreadPoolExecutor(
        max(1, min(LISTING_THREADS, len(windows))), thread_name_prefix="kbackup-list"
    )
    try:
        with Uploads(context.upload) as uploads:
            exports = {
                (w.topic, w.partition): PartitionExport(
                    context,
                    uploads,
                    w,
                    unit.gap_causes.get(w.topic, "transaction-markers"),
                    written(w),
                    progress_of(w),
                )
                for w in windows
            }
            runs = read_windows(
                kafka_config, windows, unit.spec.isolation_level, group, cap=unit.spec.flush_count
            )
            for run in runs:
                export = exports[(run.topic, run.partition)]
                if run.records:
                    export.add(run.records)
                if run.last:
                    export.close()
            return [exports[(w.topic, w.partition)].entry() for w in windows]
    finally:
        listing.shutdown(wait=True, cancel_futures=True)  # after a failure: the lookups not started


def _done(value: list[ObjectEntry]) -> Future[list[ObjectEntry]]:
    future: Future[list[ObjectEntry]] = Future()
    future.set_result(value)
    return future


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
    name="export-unit",
    cache_policy=NO_CACHE,
    task_run_name="export {unit.name}",
    **RETRY_OPTIONS,
)
def export_unit_task(unit: ExportUnit, transforms: tuple[Transform, ...] = ()) -> list[PartitionEntry]:
    from tasks.runtime.progress import flush_progress, report_progress
    from tasks.services.kafka.clients import client_config
    from tasks.services.object_store import open_store
    from tasks.services.schema_registry import Registry

    totals = {(w.topic, w.partition): w.end - w.start for w in unit.windows}

    def on_progress(topic: str, partition: int, records: int, written: int) -> None:
        report_progress(topic, partition, records, totals[(topic, partition)], written)

    from prefect.runtime import task_run

    if task_run.run_count > 1:  # a retry: its first attempt may have written since the run's listing
        unit = unit.model_copy(update={"earlier": None})
    spec = unit.spec
    lookup = Registry(spec.schema_registry_url).avro_lookup() if needs_avro_schemas(spec) else None
    try:
        return export_unit(unit, client_config(), open_store(), transforms, on_progress, lookup)
    finally:
        flush_progress()


@task(name="list-earlier-objects", cache_policy=NO_CACHE, **RETRY_OPTIONS)
def earlier_keys_task(plan: BackupPlan) -> EarlierKeys:
    """What earlier attempts or killed runs left in the plan's windows: one listing per topic."""
    from tasks.services.object_store import open_store

    naming = key_naming(plan.spec, get_codec(plan.spec.format.value).spec.extension, plan.chain_suffix)
    return earlier_keys(open_store(), plan.spec.bucket, naming, plan.windows)
