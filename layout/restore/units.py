"""The one unit builder of discovery: manifests and listings both turn what they found into
RestoreUnits and TargetTopics here, so a unit means the same whichever way it was discovered.

Pure: no S3 reads; tested in tests/unit/test_restore_plan.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from kcql.selection import Selection
from layout.manifest import OffsetGap
from layout.restore.errors import RestoreFilterError, UnsupportedRestoreError
from layout.restore.plan import RestoreObject, RestoreUnit, Routing, Segment, TargetTopic

EVERY_TOPIC = ("*", "`*`")  # INSERT INTO *: each source topic into a topic of its own name
LISTING_UNIT = "listing"


def target_name(selection: Selection, source_topic: str) -> str:
    """The target of a source topic's records: the statement's, or (INSERT INTO *) the source's own
    name; either after the selection's topic prefix (`restore.topic.prefix`: a drill's scratch topics)."""
    name = source_topic if selection.target_topic in EVERY_TOPIC else selection.target_topic
    return selection.topic_prefix + name


def one_topic_or_every_topic(selection: Selection, topics: Sequence[str], where: str, remedy: str) -> None:
    """More than one source topic restores only with INSERT INTO *."""
    if len(topics) > 1 and selection.target_topic not in EVERY_TOPIC:
        raise UnsupportedRestoreError(f"{where} holds topics {list(topics)}; {remedy}")


def named_target(selection: Selection, needs: str) -> str:
    """The target of a unit that has no source topic: INSERT INTO * cannot name it."""
    if selection.target_topic in EVERY_TOPIC:
        raise UnsupportedRestoreError(f"INSERT INTO * needs {needs}")
    return selection.topic_prefix + selection.target_topic


def selected_objects(
    objects: Iterable[RestoreObject], selection: Selection, available_keys: set[str]
) -> list[RestoreObject]:
    """The objects the filter's partition values and the window's bounds keep; a filter on a key
    no object has is an error naming the keys there are."""
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


def partition_unit(
    selection: Selection,
    topic: str,
    partition: int,
    objects: Sequence[RestoreObject],
    *,
    other_routing: Routing,
    offsets_known: bool,
    segments: Sequence[Segment] = (),
    gaps: Sequence[OffsetGap] = (),
    check_gaps: bool = False,
    compare_segments: bool = False,
    translate_offsets: Sequence[int] = (),
) -> RestoreUnit:
    """One source partition's unit: with 'preserve' into the same partition of its target, else
    routed by `other_routing`. Consumer-group offsets translate only with 'preserve'."""
    preserve = selection.partitioner == "preserve"
    return RestoreUnit(
        unit_id=f"{topic}.{partition}",
        source_topic=topic,
        source_partition=partition,
        target_topic=target_name(selection, topic),
        target_partition=partition if preserve else None,
        routing="preserve" if preserve else other_routing,
        objects=tuple(objects),
        segments=tuple(segments),
        gaps=tuple(gaps),
        offsets_known=offsets_known,
        check_gaps=check_gaps,
        compare_segments=compare_segments,
        translate_offsets=tuple(translate_offsets) if preserve and selection.translate_groups else (),
    )


def stream_unit(
    target: str, objects: Sequence[RestoreObject], *, routing: Routing, offsets_known: bool
) -> RestoreUnit:
    """Objects that name no source partition, read as one stream in key order."""
    return RestoreUnit(
        unit_id=LISTING_UNIT,
        source_topic=None,
        source_partition=None,
        target_topic=target,
        target_partition=None,
        routing=routing,
        objects=tuple(objects),
        offsets_known=offsets_known,
        check_gaps=False,
        compare_segments=False,
    )


def add_target(targets: dict[str, TargetTopic], target: TargetTopic) -> None:
    """Record a target topic; one named again keeps the larger partition needs and counts."""
    previous = targets.get(target.name)
    if previous is not None:
        target = target.model_copy(
            update={
                "partitions_needed": max(target.partitions_needed, previous.partitions_needed),
                "partition_count": max(target.partition_count, previous.partition_count),
            }
        )
    targets[target.name] = target
