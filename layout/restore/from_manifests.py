"""Discovery from the manifest chain (the normal case): every backup under the prefix, oldest
first, commits its objects, windows, gaps and digests; a restore reads each source partition's
objects across the chain in offset order.

Pure: takes the chain and the prefix's listing already read (tasks.restore.discover.plan_restore
reads them); tested in memory in tests/unit/test_restore_plan.py.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from formats.registry import supports_envelope
from kcql.selection import Selection
from layout.keys import parse_object_key
from layout.manifest import Manifest, OffsetGap, TopicEntry
from layout.restore.errors import BackupIncompleteError, NothingToRestoreError, UnsupportedRestoreError
from layout.restore.plan import RestoreObject, RestorePlan, RestoreUnit, Segment, TargetTopic, plan_of
from layout.restore.units import (
    add_target,
    one_topic_or_every_topic,
    partition_unit,
    selected_objects,
    target_name,
)
from layout.spec_bridge import codec_of

NOT_LOSSLESS = (
    "the backup is not lossless (value only, or envelope parts or converters dropped): "
    "what it did not keep (keys, headers, timestamps) is new in the target"
)
GROUPS_NOT_TRANSLATED = "consumer-group offsets are not translated with restore.partitioner=murmur2"


def plan_from_manifests(
    selection: Selection, chain: Sequence[Manifest], listed: Collection[str]
) -> RestorePlan:
    """The plan for the chain (oldest first, not empty); `listed` is the keys of the prefix's objects,
    used here only to tell an unbacked topic from one whose objects no manifest commits."""
    last = chain[-1]
    _check_format(selection, chain)
    topics = _source_topics(selection, chain, listed)
    lossless = all(m.lossless for m in chain)
    record_filter = selection.window.active or bool(selection.filter)
    available_keys = {k for m in chain for p in m.partitions for o in p.objects for k in o.partition_values}
    topic_entries: dict[str, TopicEntry] = {t.name: t for m in chain for t in m.topics}
    units: list[RestoreUnit] = []
    targets: dict[str, TargetTopic] = {}
    for topic in topics:
        backed_up = sorted({p.partition for m in chain for p in m.partitions if p.topic == topic})
        partitions = [p for p in backed_up if selection.partitions is None or p in selection.partitions]
        oldest: int | None = None
        for partition in partitions:
            objects, segments, gaps = _partition_across_chain(chain, topic, partition)
            objects = selected_objects(objects, selection, available_keys)
            objects.sort(key=lambda o: (o.first_offset or 0, o.key))
            oldest = min(
                (t for t in [oldest, *(o.min_timestamp for o in objects)] if t is not None), default=None
            )
            units.append(
                partition_unit(
                    selection,
                    topic,
                    partition,
                    objects,
                    other_routing="murmur2",
                    offsets_known=True,
                    segments=segments,
                    gaps=gaps,
                    check_gaps=not record_filter,
                    compare_segments=not record_filter and lossless,
                    translate_offsets=_group_offsets(chain, topic, partition),
                )
            )
        entry = topic_entries.get(topic)
        count = entry.partition_count if entry else (max(backed_up) + 1 if backed_up else 1)
        add_target(
            targets,
            TargetTopic(
                name=target_name(selection, topic),
                partitions_needed=max(partitions) + 1 if partitions else 1,
                partition_count=count,
                replication_factor=entry.replication_factor if entry else None,
                configs=dict(entry.configs) if entry else {},
                oldest_timestamp=oldest,
            ),
        )
    notes = []
    if not lossless:
        notes.append(NOT_LOSSLESS)
    if selection.partitioner != "preserve" and any(m.consumer_groups for m in chain):
        notes.append(GROUPS_NOT_TRANSLATED)
    ids = [m.backup_id for m in chain]
    return plan_of(
        selection,
        ids,
        format=last.format,
        envelope=manifest_envelope(last),
        lossless=lossless,
        manifest_format=True,
        backup_ids=tuple(ids),
        codec=codec_of(last),
        targets=tuple(targets.values()),
        units=tuple(units),
        consumer_groups=tuple(last.consumer_groups) if selection.translate_groups else (),
        notes=tuple(notes),
        access=last.access,
    )


def manifest_envelope(manifest: Manifest) -> bool:
    """Whether the manifest's objects carry the envelope (its spec says; older ones: lossless)."""
    codec = codec_of(manifest)
    enabled = codec.envelope.enabled if "envelope" in codec.model_fields_set else manifest.lossless
    return enabled and supports_envelope(manifest.format)


def _check_format(selection: Selection, chain: Sequence[Manifest]) -> None:
    bucket, prefix = selection.bucket, selection.prefix
    formats = {m.format for m in chain}
    if len(formats) > 1:
        raise UnsupportedRestoreError(
            f"the backups under s3://{bucket}/{prefix} mix formats {sorted(formats)}"
        )
    last = chain[-1]
    if selection.format and selection.format.upper() != last.format.upper():
        raise UnsupportedRestoreError(
            f"STOREAS {selection.format} but the manifests under s3://{bucket}/{prefix} say {last.format}"
        )


def _source_topics(selection: Selection, chain: Sequence[Manifest], listed: Collection[str]) -> list[str]:
    """The topics restored: 'source.topic', or every topic of the chain (several only into *)."""
    bucket, prefix = selection.bucket, selection.prefix
    in_chain = {p.topic for m in chain for p in m.partitions}
    wanted = selection.source_topic
    if not wanted:
        topics = sorted(in_chain)
        one_topic_or_every_topic(
            selection,
            topics,
            f"s3://{bucket}/{prefix}",
            "restore them with INSERT INTO * or pick one with 'source.topic'",
        )
        return topics
    if wanted in in_chain:
        return [wanted]
    orphans = tuple(k for k in listed if parse_object_key(k, prefix).topic == wanted)
    if orphans:
        raise BackupIncompleteError(
            bucket, prefix, f"objects of topic {wanted!r} are not in any manifest", orphans
        )
    raise NothingToRestoreError(
        bucket, prefix, f"no backup of topic {wanted!r} (backed up: {sorted(in_chain)})"
    )


def _partition_across_chain(
    chain: Sequence[Manifest], topic: str, partition: int
) -> tuple[list[RestoreObject], list[Segment], list[OffsetGap]]:
    """A partition's objects, one segment per backup that holds it, and its gaps — those the
    backups recorded and the holes between one backup's end and the next one's start. Whether
    each object is in the bucket is the pre-flight's question (tasks.restore.preflight)."""
    entries = [(m, e) for m in chain if (e := m.partition(topic, partition)) is not None]
    objects: list[RestoreObject] = []
    segments: list[Segment] = []
    gaps: list[OffsetGap] = []
    for manifest, entry in entries:
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
        objects.extend(
            RestoreObject(**o.model_dump(exclude={"records_digest"}), backup_id=manifest.backup_id)
            for o in entry.objects
        )
    for (_, before), (_, after) in zip(entries, entries[1:], strict=False):
        if after.start_offset > before.end_offset:
            gaps.append(OffsetGap(first=before.end_offset, last=after.start_offset - 1, cause="retention"))
    return objects, segments, gaps


def _group_offsets(chain: Sequence[Manifest], topic: str, partition: int) -> list[int]:
    """The partition's committed consumer-group offsets across the chain, to translate."""
    return sorted(
        {
            c.offset
            for m in chain
            for g in m.consumer_groups
            for c in g.offsets
            if c.topic == topic and c.partition == partition
        }
    )
