"""Discovery: what a restore reads, in which order, and where each record goes.

From the manifest chain under the prefix (the normal case), or — for data written by Lenses
Stream Reactor, which writes no manifest — by listing the prefix and reading keys as its source
connector does. Objects that no manifest commits are never restored silently.

`plan_restore` is the plain function; `plan_restore_task` its thin retryable task.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any, Literal

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict, Field

from layout.keys import is_manifest_key, parse_object_key
from layout.manifest import GroupOffsets, Manifest, OffsetGap, TopicEntry, join_key
from tasks.manifest_store import read_chain
from tasks.restore_errors import (
    BackupIncompleteError,
    NothingToRestoreError,
    RestoreFilterError,
    UnsupportedRestoreError,
)
from tasks.retry import RETRY_OPTIONS
from tasks.s3 import check_bucket, head_object, list_objects

Routing = Literal["preserve", "murmur2", "metadata", "round-robin"]
Preflight = Literal["quick", "full", "none"]
TargetNonEmpty = Literal["refuse", "append"]
DEFAULT_BATCH = 10_000
# Object metadata our backup writes on every object: its presence means "kbackup wrote this".
_KBACKUP_OBJECT_METADATA = "backup-id"
_EXTENSIONS = {
    "avro": "AVRO",
    "parquet": "PARQUET",
    "json": "JSON",
    "jsonl": "JSON",
    "csv": "CSV",
    "txt": "TEXT",
    "text": "TEXT",
    "bytes": "BYTES",
    "bin": "BYTES",
}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class Window(_Frozen):
    """Which records of a source partition are selected: [from, to) by timestamp and/or offset."""

    from_timestamp: int | None = None
    to_timestamp: int | None = None
    from_offset: int | None = None
    to_offset: int | None = None

    @property
    def active(self) -> bool:
        return any(
            v is not None for v in (self.from_timestamp, self.to_timestamp, self.from_offset, self.to_offset)
        )

    def admits(self, offset: int | None, timestamp: int | None) -> bool:
        if offset is not None:
            if self.from_offset is not None and offset < self.from_offset:
                return False
            if self.to_offset is not None and offset >= self.to_offset:
                return False
        if self.from_timestamp is not None or self.to_timestamp is not None:
            if timestamp is None:
                return False
            if self.from_timestamp is not None and timestamp < self.from_timestamp:
                return False
            if self.to_timestamp is not None and timestamp >= self.to_timestamp:
                return False
        return True

    def may_hold(self, first: int | None, last: int | None, min_ts: int | None, max_ts: int | None) -> bool:
        """Can an object with these bounds hold a selected record? (False skips it unread.)"""
        if first is not None and last is not None:
            if self.from_offset is not None and last < self.from_offset:
                return False
            if self.to_offset is not None and first >= self.to_offset:
                return False
        if min_ts is not None and max_ts is not None:
            if self.from_timestamp is not None and max_ts < self.from_timestamp:
                return False
            if self.to_timestamp is not None and min_ts >= self.to_timestamp:
                return False
        return True


class RestoreObject(_Frozen):
    key: str
    first_offset: int | None = None
    last_offset: int | None = None
    record_count: int | None = None
    min_timestamp: int | None = None
    max_timestamp: int | None = None
    size: int | None = None
    sha256: str | None = None
    partition_values: dict[str, str | None] = Field(default_factory=dict)
    backup_id: str | None = None


class Segment(_Frozen):
    """One manifest's part of a source partition: its digest proves the decoded records."""

    backup_id: str
    start_offset: int
    end_offset: int
    record_count: int
    records_digest: str


class RestoreUnit(_Frozen):
    """One task's work: a source partition (or, without a manifest, one stream of objects in key
    order), produced by one transactional producer."""

    unit_id: str
    source_topic: str | None
    source_partition: int | None
    target_topic: str
    target_partition: int | None = Field(description="With routing 'preserve': where every record goes.")
    routing: Routing
    objects: tuple[RestoreObject, ...]
    segments: tuple[Segment, ...] = ()
    gaps: tuple[OffsetGap, ...] = ()
    offsets_known: bool = Field(description="Records carry their real source offsets.")
    check_gaps: bool = Field(description="Every hole between offsets must be a recorded gap.")
    compare_segments: bool = Field(description="Decoded records must match the manifest's digests.")
    translate_offsets: tuple[int, ...] = Field(
        default=(), description="Source offsets of consumer groups to map onto target offsets."
    )


class TargetTopic(_Frozen):
    name: str
    partitions_needed: int = Field(description="With preserve: the highest source partition + 1.")
    partition_count: int = Field(description="Partition count to create the topic with.")
    replication_factor: int | None = None
    configs: dict[str, str] = Field(default_factory=dict)
    oldest_timestamp: int | None = None


class RestorePlan(_Frozen):
    restore_id: str = Field(
        description="Stable hash of what is restored where: names the restore's "
        "transactional ids and consumer groups, so that a rerun resumes."
    )
    bucket: str
    prefix: str
    format: str
    envelope: bool
    lossless: bool
    manifest_format: bool = Field(description="Discovered from manifests (else a listing).")
    backup_ids: tuple[str, ...]
    codec_spec: dict[str, Any] = Field(description="BackupSpec JSON of the last manifest, or codec options.")
    batch: int
    window: Window
    partitioner: str
    targets: tuple[TargetTopic, ...]
    units: tuple[RestoreUnit, ...]
    consumer_groups: tuple[GroupOffsets, ...] = ()
    group_prefix: str = ""
    target_nonempty: TargetNonEmpty = Field(
        default="refuse",
        description="A target partition holding records this restore did not write: refuse or append.",
    )
    preflight: str = Field(
        default="none", description="What the pre-flight checked before anything was produced."
    )
    notes: tuple[str, ...] = Field(default=(), description="What cannot be restored, and other warnings.")

    def target(self, name: str) -> TargetTopic:
        return next(t for t in self.targets if t.name == name)

    @property
    def record_estimate(self) -> int:
        return sum(o.record_count or 0 for u in self.units for o in u.objects)


class Selection(_Frozen):
    """The restore's choices, taken from the RestoreSpec (and flow parameters)."""

    target_topic: str
    bucket: str
    prefix: str
    format: str | None = None
    envelope: bool | None = None
    envelope_parts: tuple[bool, bool, bool, bool] = (True, True, True, True)
    key_converter: str = "bytes"
    value_converter: str = "bytes"
    source_topic: str | None = None
    window: Window = Window()
    partitions: tuple[int, ...] | None = None
    filter: tuple[tuple[str, str], ...] = ()
    partitioner: str = "preserve"
    batch: int = DEFAULT_BATCH
    group_prefix: str = ""
    translate_groups: bool = True
    preflight: Preflight = "quick"
    target_nonempty: TargetNonEmpty = "refuse"


# Choices that do not change what is restored where: a rerun that sets them differently (say,
# 'restore.preflight'='none' after a long full pre-flight) is still the same restore and resumes.
_NOT_IN_RESTORE_ID = {"batch", "preflight", "target_nonempty"}


def restore_id(selection: Selection, backup_ids: Sequence[str]) -> str:
    identity = json.dumps(
        {
            "selection": selection.model_dump(mode="json", exclude=_NOT_IN_RESTORE_ID),
            "backups": list(backup_ids),
        },
        sort_keys=True,
    )
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


def _target_name(selection: Selection, source_topic: str) -> str:
    return source_topic if selection.target_topic in ("*", "`*`") else selection.target_topic


def _filter_objects(
    objects: list[RestoreObject], selection: Selection, available_keys: set[str]
) -> list[RestoreObject]:
    for name, _ in selection.filter:
        if name not in available_keys:
            raise RestoreFilterError(name, tuple(sorted(available_keys)))
    wanted = dict(selection.filter)
    return [
        o
        for o in objects
        if all(o.partition_values.get(name) == value for name, value in wanted.items())
        and selection.window.may_hold(o.first_offset, o.last_offset, o.min_timestamp, o.max_timestamp)
    ]


def _manifest_envelope(manifest: Manifest) -> bool:
    envelope = manifest.spec.get("envelope")
    enabled = bool(envelope.get("enabled")) if isinstance(envelope, dict) else manifest.lossless
    return enabled and manifest.format.upper() in ("AVRO", "PARQUET", "JSON")


# --- from manifests --------------------------------------------------------------------------


def _plan_from_manifests(
    s3: Any, selection: Selection, chain: list[Manifest], listed: dict[str, dict[str, Any]]
) -> RestorePlan:
    bucket, prefix = selection.bucket, selection.prefix
    last = chain[-1]
    formats = {m.format for m in chain}
    if len(formats) > 1:
        raise UnsupportedRestoreError(
            f"the backups under s3://{bucket}/{prefix} mix formats {sorted(formats)}"
        )
    if selection.format and selection.format.upper() != last.format.upper():
        raise UnsupportedRestoreError(
            f"STOREAS {selection.format} but the manifests under s3://{bucket}/{prefix} say {last.format}"
        )
    topics_in_chain = {p.topic for m in chain for p in m.partitions}
    if selection.source_topic:
        if selection.source_topic not in topics_in_chain:
            orphans = tuple(k for k in listed if parse_object_key(k, prefix).topic == selection.source_topic)
            if orphans:
                raise BackupIncompleteError(
                    bucket,
                    prefix,
                    f"objects of topic {selection.source_topic!r} are not in any manifest",
                    orphans,
                )
            raise NothingToRestoreError(
                bucket,
                prefix,
                f"no backup of topic {selection.source_topic!r} (backed up: {sorted(topics_in_chain)})",
            )
        topics = [selection.source_topic]
    else:
        topics = sorted(topics_in_chain)
        if len(topics) > 1 and selection.target_topic not in ("*", "`*`"):
            raise UnsupportedRestoreError(
                f"s3://{bucket}/{prefix} holds topics {topics}; restore them with INSERT INTO * or pick one "
                "with 'source.topic'"
            )
    lossless = all(m.lossless for m in chain)
    record_filter = selection.window.active or bool(selection.filter)
    available_keys = {k for m in chain for p in m.partitions for o in p.objects for k in o.partition_values}
    topic_entries: dict[str, TopicEntry] = {t.name: t for m in chain for t in m.topics}
    ids = [m.backup_id for m in chain]
    units: list[RestoreUnit] = []
    targets: dict[str, TargetTopic] = {}
    for topic in topics:
        partitions = sorted({p.partition for m in chain for p in m.partitions if p.topic == topic})
        if selection.partitions is not None:
            partitions = [p for p in partitions if p in selection.partitions]
        target = _target_name(selection, topic)
        oldest: int | None = None
        for partition in partitions:
            entries = [(m, m.partition(topic, partition)) for m in chain]
            entries = [(m, e) for m, e in entries if e is not None]
            objects: list[RestoreObject] = []
            gaps: list[OffsetGap] = []
            segments: list[Segment] = []
            for manifest, entry in entries:
                assert entry is not None
                gaps.extend(entry.gaps)
                segments.append(
                    Segment(
                        backup_id=manifest.backup_id,
                        start_offset=entry.start_offset,
                        end_offset=entry.end_offset,
                        record_count=entry.record_count,
                        records_digest=entry.records_digest,
                    )
                )
                for o in entry.objects:  # whether each is in the bucket: see tasks.restore_preflight
                    objects.append(
                        RestoreObject(
                            **o.model_dump(exclude={"records_digest"}), backup_id=manifest.backup_id
                        )
                    )
            # a hole between one manifest's end and the next one's start is a recorded gap too
            for (_, before), (_, after) in zip(entries, entries[1:], strict=False):
                assert before is not None and after is not None
                if after.start_offset > before.end_offset:
                    gaps.append(
                        OffsetGap(first=before.end_offset, last=after.start_offset - 1, cause="retention")
                    )
            objects = _filter_objects(objects, selection, available_keys)
            objects.sort(key=lambda o: (o.first_offset or 0, o.key))
            for restore_object in objects:
                min_ts = restore_object.min_timestamp
                if min_ts is not None and (oldest is None or min_ts < oldest):
                    oldest = min_ts
            translate = sorted(
                {
                    c.offset
                    for m in chain
                    for g in m.consumer_groups
                    for c in g.offsets
                    if c.topic == topic and c.partition == partition
                }
            )
            preserve = selection.partitioner == "preserve"
            units.append(
                RestoreUnit(
                    unit_id=f"{topic}.{partition}",
                    source_topic=topic,
                    source_partition=partition,
                    target_topic=target,
                    target_partition=partition if preserve else None,
                    routing="preserve" if preserve else "murmur2",
                    objects=tuple(objects),
                    segments=tuple(segments),
                    gaps=tuple(gaps),
                    offsets_known=True,
                    check_gaps=not record_filter,
                    compare_segments=not record_filter and lossless,
                    translate_offsets=tuple(translate) if preserve and selection.translate_groups else (),
                )
            )
        entry_t = topic_entries.get(topic)
        all_partitions = sorted({p.partition for m in chain for p in m.partitions if p.topic == topic})
        count = entry_t.partition_count if entry_t else (max(all_partitions) + 1 if all_partitions else 1)
        needed = max(partitions) + 1 if partitions else 1
        previous = targets.get(target)
        targets[target] = TargetTopic(
            name=target,
            partitions_needed=max(needed, previous.partitions_needed if previous else 0),
            partition_count=max(count, previous.partition_count if previous else 0),
            replication_factor=entry_t.replication_factor if entry_t else None,
            configs=dict(entry_t.configs) if entry_t else {},
            oldest_timestamp=oldest,
        )
    notes = []
    if not lossless:
        notes.append(
            "the backup is not lossless (value only, or envelope parts or converters dropped): "
            "what it did not keep (keys, headers, timestamps) is new in the target"
        )
    if selection.partitioner != "preserve" and any(m.consumer_groups for m in chain):
        notes.append("consumer-group offsets are not translated with restore.partitioner=murmur2")
    groups = tuple(g for m in chain[-1:] for g in m.consumer_groups) if selection.translate_groups else ()
    return RestorePlan(
        restore_id=restore_id(selection, ids),
        bucket=bucket,
        prefix=prefix,
        format=last.format,
        envelope=_manifest_envelope(last),
        lossless=lossless,
        manifest_format=True,
        backup_ids=tuple(ids),
        codec_spec=dict(last.spec),
        batch=selection.batch,
        window=selection.window,
        partitioner=selection.partitioner,
        targets=tuple(targets.values()),
        units=tuple(units),
        consumer_groups=groups,
        group_prefix=selection.group_prefix,
        target_nonempty=selection.target_nonempty,
        notes=tuple(notes),
    )


# --- without a manifest: Stream Reactor's data ------------------------------------------------


def _format_of(selection: Selection, keys: Sequence[str]) -> str | None:
    if selection.format:
        return selection.format.upper()
    extensions = {k.rsplit(".", 1)[-1].lower() for k in keys if "." in k.rsplit("/", 1)[-1]}
    found = {_EXTENSIONS[e] for e in extensions if e in _EXTENSIONS}
    return found.pop() if len(found) == 1 else None


def _plan_from_listing(s3: Any, selection: Selection, listed: dict[str, dict[str, Any]]) -> RestorePlan:
    bucket, prefix = selection.bucket, selection.prefix
    keys = sorted(listed)
    # Our own backup writes metadata on every object: such objects without a manifest are a
    # backup that never committed, never Stream Reactor data.
    for key in keys[:3]:
        head = head_object(s3, bucket, key) or {}
        if _KBACKUP_OBJECT_METADATA in head.get("Metadata", {}):
            raise BackupIncompleteError(bucket, prefix, "no manifest", tuple(keys))
    fmt = _format_of(selection, keys)
    if fmt is None:
        raise BackupIncompleteError(
            bucket,
            prefix,
            "no manifest, and no STOREAS to read the objects as Stream Reactor data",
            tuple(keys),
        )
    envelope = bool(selection.envelope) and fmt in ("AVRO", "PARQUET", "JSON")
    parsed = [parse_object_key(k, prefix) for k in keys]
    available_keys = {name for p in parsed for name in p.partition_values}
    notes: list[str] = []
    units: list[RestoreUnit] = []
    targets: dict[str, TargetTopic] = {}
    window = selection.window
    if envelope:
        # Source topic/partition/offset come from each record's metadata: one stream in key order.
        objects = [
            RestoreObject(key=p.key, partition_values=p.partition_values, size=listed[p.key].get("Size"))
            for p in parsed
        ]
        objects = _filter_objects(objects, selection, available_keys)
        if selection.target_topic in ("*", "`*`"):
            raise UnsupportedRestoreError("INSERT INTO * needs a manifest; name the target topic")
        preserve = selection.partitioner == "preserve"
        units.append(
            RestoreUnit(
                unit_id="listing",
                source_topic=None,
                source_partition=None,
                target_topic=selection.target_topic,
                target_partition=None,
                routing="metadata" if preserve else "murmur2",
                objects=tuple(objects),
                offsets_known=True,
                check_gaps=False,
                compare_segments=False,
            )
        )
        targets[selection.target_topic] = TargetTopic(
            name=selection.target_topic, partitions_needed=1, partition_count=1
        )
        notes.append(
            "Stream Reactor envelope without a manifest: partitions come from each record's metadata"
        )
    else:
        shaped = [p for p in parsed if p.topic is not None and p.partition is not None]
        by_partition: dict[tuple[str, int], list[RestoreObject]] = {}
        rest: list[RestoreObject] = []
        for p in parsed:
            obj = RestoreObject(
                key=p.key, partition_values=p.partition_values, size=listed[p.key].get("Size")
            )
            if p.topic is not None and p.partition is not None:
                if selection.source_topic and p.topic != selection.source_topic:
                    continue
                if selection.partitions is not None and p.partition not in selection.partitions:
                    continue
                by_partition.setdefault((p.topic, p.partition), []).append(obj)
            else:
                rest.append(obj)
        last_offsets = {p.key: p.last_offset for p in shaped}
        if by_partition:
            topics = sorted({t for t, _ in by_partition})
            if len(topics) > 1 and selection.target_topic not in ("*", "`*`"):
                raise UnsupportedRestoreError(
                    f"s3://{bucket}/{prefix} holds topics {topics}; pick one with 'source.topic'"
                )
            preserve = selection.partitioner == "preserve"
            for (topic, partition), objects in sorted(by_partition.items()):
                objects = _filter_objects(objects, selection, available_keys)
                objects.sort(key=lambda o: (last_offsets.get(o.key) or 0, o.key))
                target = _target_name(selection, topic)
                units.append(
                    RestoreUnit(
                        unit_id=f"{topic}.{partition}",
                        source_topic=topic,
                        source_partition=partition,
                        target_topic=target,
                        target_partition=partition if preserve else None,
                        routing="preserve" if preserve else "round-robin",
                        objects=tuple(objects),
                        offsets_known=False,
                        check_gaps=False,
                        compare_segments=False,
                    )
                )
                previous = targets.get(target)
                needed = max(partition + 1, previous.partitions_needed if previous else 0)
                targets[target] = TargetTopic(name=target, partitions_needed=needed, partition_count=needed)
        elif rest:
            if selection.target_topic in ("*", "`*`"):
                raise UnsupportedRestoreError("INSERT INTO * needs a manifest or topic/partition keys")
            objects = _filter_objects(rest, selection, available_keys)
            units.append(
                RestoreUnit(
                    unit_id="listing",
                    source_topic=None,
                    source_partition=None,
                    target_topic=selection.target_topic,
                    target_partition=None,
                    routing="round-robin",
                    objects=tuple(objects),
                    offsets_known=False,
                    check_gaps=False,
                    compare_segments=False,
                )
            )
            targets[selection.target_topic] = TargetTopic(
                name=selection.target_topic, partitions_needed=1, partition_count=1
            )
        if window.from_offset is not None or window.to_offset is not None:
            notes.append("value-only objects carry no offsets: the offset window counts records in key order")
        notes.append(
            "value-only data: keys, headers and timestamps are not in the backup; the target gets "
            "null keys, no headers and new timestamps"
        )
    codec_spec = {
        "envelope": {
            "enabled": envelope,
            "key": selection.envelope_parts[0],
            "value": selection.envelope_parts[1],
            "headers": selection.envelope_parts[2],
            "metadata": selection.envelope_parts[3],
        },
        "key_converter": selection.key_converter,
        "value_converter": selection.value_converter,
    }
    return RestorePlan(
        restore_id=restore_id(selection, [f"listing:{len(keys)}:{keys[-1]}"]),
        bucket=bucket,
        prefix=prefix,
        format=fmt,
        envelope=envelope,
        lossless=False,
        manifest_format=False,
        backup_ids=(),
        codec_spec=codec_spec,
        batch=selection.batch,
        window=window,
        partitioner=selection.partitioner,
        targets=tuple(targets.values()),
        units=tuple(u for u in units if u.objects),
        consumer_groups=(),
        group_prefix=selection.group_prefix,
        target_nonempty=selection.target_nonempty,
        notes=tuple(notes),
    )


def plan_restore(s3: Any, selection: Selection) -> RestorePlan:
    """Find what to restore under s3://bucket/prefix and run the pre-flight; raise before anything
    is produced when the backup is incomplete, an object is missing or not as the manifest says
    (PreflightError, naming every such object), or a filter names an unknown key."""
    from tasks.restore_preflight import preflight

    bucket, prefix = selection.bucket, selection.prefix
    check_bucket(s3, bucket)
    folder = join_key(prefix) + "/" if join_key(prefix) else ""
    listed = {o["Key"]: o for o in list_objects(s3, bucket, folder) if not is_manifest_key(o["Key"])}
    chain = read_chain(s3, bucket, prefix)
    if chain:
        plan = _plan_from_manifests(s3, selection, chain, listed)
    elif listed:
        plan = _plan_from_listing(s3, selection, listed)
    else:
        raise NothingToRestoreError(bucket, prefix, "no objects and no manifest under the prefix")
    if not plan.units:
        raise NothingToRestoreError(
            bucket, prefix, "the selection (topic, partitions, filter, window) matches no object"
        )
    return plan.model_copy(update={"preflight": preflight(s3, plan, listed, selection.preflight)})


@task(name="discover-objects", cache_policy=NO_CACHE, **RETRY_OPTIONS)
def plan_restore_task(selection: Selection) -> RestorePlan:
    from tasks.s3 import s3_client

    return plan_restore(s3_client(), selection)
