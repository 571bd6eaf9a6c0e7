"""Discovery without a manifest: data written by Lenses Stream Reactor, read from the listing of
the prefix as its source connector reads it — the format from STOREAS or the keys' extension,
topic, partition and last offset from the keys (Stream Reactor's `topic(partition_offset).ext`
or the default `topic/partition/offset.ext`), PARTITIONBY values from `name=value` folders.

Objects our own backup wrote are never read this way: without a manifest they are a backup that
never committed (`refuse_uncommitted_backup`, the one S3 read here).

`plan_from_listing` is pure: it takes the listing already read (tasks.restore.discover.plan_restore
reads it); tested in memory in tests/unit/test_restore_plan.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from formats.registry import format_of_extension, supports_envelope
from kcql.selection import Selection
from kcql.specs import CodecOptions, EnvelopeOptions
from layout.keys import ParsedKey, parse_object_key
from layout.restore.errors import BackupIncompleteError
from layout.restore.plan import RestoreObject, RestorePlan, RestoreUnit, Routing, TargetTopic, plan_of
from layout.restore.units import (
    add_target,
    named_target,
    one_topic_or_every_topic,
    partition_unit,
    selected_objects,
    stream_unit,
)
from tasks.services.object_store import ObjectInfo

if TYPE_CHECKING:
    from tasks.services.object_store import ObjectStore

Listing = Mapping[str, ObjectInfo]  # key -> the listing's entry (size, ...)

# Object metadata our backup writes on every object: its presence means "kbackup wrote this".
KBACKUP_OBJECT_METADATA = "backup-id"
ENVELOPE_NOTE = "Stream Reactor envelope without a manifest: partitions come from each record's metadata"
OFFSET_WINDOW_NOTE = "value-only objects carry no offsets: the offset window counts records in key order"
VALUE_ONLY_NOTE = (
    "value-only data: keys, headers and timestamps are not in the backup; the target gets "
    "null keys, no headers and new timestamps"
)


def refuse_uncommitted_backup(store: ObjectStore, bucket: str, prefix: str, listed: Listing) -> None:
    """Raise BackupIncompleteError when the first objects carry our backup's metadata: a backup
    that wrote objects but no manifest, which must not restore as Stream Reactor data."""
    keys = sorted(listed)
    for key in keys[:3]:
        head = store.head(bucket, key)
        if head is not None and KBACKUP_OBJECT_METADATA in head.metadata:
            raise BackupIncompleteError(bucket, prefix, "no manifest", tuple(keys))


def listing_format(selection: Selection, keys: Sequence[str]) -> str | None:
    """STOREAS, else the one format the keys' extensions name (None: none, or several)."""
    if selection.format:
        return selection.format.upper()
    extensions = {k.rsplit(".", 1)[-1] for k in keys if "." in k.rsplit("/", 1)[-1]}
    found = {f for f in map(format_of_extension, extensions) if f is not None}
    return found.pop() if len(found) == 1 else None


def plan_from_listing(selection: Selection, listed: Listing) -> RestorePlan:
    """The plan for the prefix's objects (`listed`, not empty), read as Stream Reactor data."""
    bucket, prefix = selection.bucket, selection.prefix
    keys = sorted(listed)
    fmt = listing_format(selection, keys)
    if fmt is None:
        raise BackupIncompleteError(
            bucket,
            prefix,
            "no manifest, and no STOREAS to read the objects as Stream Reactor data",
            tuple(keys),
        )
    envelope = bool(selection.envelope) and supports_envelope(fmt)
    parsed = [parse_object_key(k, prefix) for k in keys]
    objects = [
        RestoreObject(key=p.key, partition_values=p.partition_values, size=listed[p.key].size) for p in parsed
    ]
    available_keys = {name for p in parsed for name in p.partition_values}
    if envelope:
        units = [_envelope_stream(selection, objects, available_keys)]
        notes = [ENVELOPE_NOTE]
    else:
        units = _value_only_units(selection, parsed, objects, available_keys)
        window = selection.window
        notes = [OFFSET_WINDOW_NOTE] if window.from_offset is not None or window.to_offset is not None else []
        notes.append(VALUE_ONLY_NOTE)
    targets: dict[str, TargetTopic] = {}
    for unit in units:  # a stream needs one partition, a source partition's unit its own
        needed = (unit.source_partition or 0) + 1
        add_target(
            targets, TargetTopic(name=unit.target_topic, partitions_needed=needed, partition_count=needed)
        )
    return plan_of(
        selection,
        [f"listing:{len(keys)}:{keys[-1]}"],
        format=fmt,
        envelope=envelope,
        lossless=False,
        manifest_format=False,
        backup_ids=(),
        codec=_codec(selection, envelope),
        targets=tuple(targets.values()),
        units=tuple(u for u in units if u.objects),
        consumer_groups=(),
        notes=tuple(notes),
    )


def _envelope_stream(
    selection: Selection, objects: Sequence[RestoreObject], available_keys: set[str]
) -> RestoreUnit:
    """Envelope objects: each record's metadata names its source topic, partition and offset, so
    every object is one stream in key order."""
    selected = selected_objects(objects, selection, available_keys)
    target = named_target(selection, "a manifest; name the target topic")
    routing: Routing = "metadata" if selection.partitioner == "preserve" else "murmur2"
    return stream_unit(target, selected, routing=routing, offsets_known=True)


def _value_only_units(
    selection: Selection,
    parsed: Sequence[ParsedKey],
    objects: Sequence[RestoreObject],
    available_keys: set[str],
) -> list[RestoreUnit]:
    """Value-only objects (`objects`, in the order of their `parsed` keys): one unit per source
    partition the keys name, in last-offset order; or, when no key names one, every object as one
    stream in key order."""
    by_partition: dict[tuple[str, int], list[RestoreObject]] = {}
    rest: list[RestoreObject] = []
    for p, o in zip(parsed, objects, strict=True):
        if p.topic is None or p.partition is None:
            rest.append(o)
        elif (not selection.source_topic or p.topic == selection.source_topic) and (
            selection.partitions is None or p.partition in selection.partitions
        ):
            by_partition.setdefault((p.topic, p.partition), []).append(o)
    if by_partition:
        last_offsets = {p.key: p.last_offset for p in parsed}
        topics = sorted({t for t, _ in by_partition})
        one_topic_or_every_topic(
            selection, topics, f"s3://{selection.bucket}/{selection.prefix}", "pick one with 'source.topic'"
        )
        units = []
        for (topic, partition), listed_objects in sorted(by_partition.items()):
            selected = selected_objects(listed_objects, selection, available_keys)
            selected.sort(key=lambda o: (last_offsets.get(o.key) or 0, o.key))
            units.append(
                partition_unit(
                    selection, topic, partition, selected, other_routing="round-robin", offsets_known=False
                )
            )
        return units
    if rest:
        target = named_target(selection, "a manifest or topic/partition keys")
        selected = selected_objects(rest, selection, available_keys)
        return [stream_unit(target, selected, routing="round-robin", offsets_known=False)]
    return []


def _codec(selection: Selection, envelope: bool) -> CodecOptions:
    """What the codecs need to read Stream Reactor's objects: the statement's envelope and converters."""
    key, value, headers, metadata = selection.envelope_parts
    return CodecOptions(
        envelope=EnvelopeOptions(enabled=envelope, key=key, value=value, headers=headers, metadata=metadata),
        key_converter=selection.key_converter,
        value_converter=selection.value_converter,
    )
