"""The restore's column checks on hand-built batches (no services): ordering rules on the offset
column, PARTITIONBY clusters merged by offset, segment digests, the window as a mask. A
record-by-record reference (the rules as the restore applied them before it read columns)
checks the vectorised ones on random clusters."""

from __future__ import annotations

import hashlib
import heapq
import random
from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pytest

from formats.columns import from_records
from formats.digest import digest_input
from formats.envelope import Record, TimestampType
from kcql.selection import Window
from kcql.specs import CodecOptions
from layout.manifest import OffsetGap
from layout.restore.digests import SegmentDigests
from layout.restore.errors import OrderingViolationError
from layout.restore.order import clusters, in_gaps
from layout.restore.plan import RestoreObject, RestoreUnit, Segment
from tasks.restore import decode as restore_decode
from tasks.restore.decode import unit_records
from tasks.restore.produce import window_mask


def records(offsets: Sequence[int], topic: str = "t", partition: int = 0) -> list[Record]:
    return [
        Record(
            f"k{o}".encode(),
            f"v{o}".encode(),
            (("h", b"x"),) if o % 2 else (),
            topic,
            partition,
            o,
            1_000 + o if o % 3 else None,
            TimestampType.CREATE_TIME if o % 3 else TimestampType.NO_TIMESTAMP_TYPE,
        )
        for o in offsets
    ]


def batches(offsets: Sequence[int], size: int = 3, **where: object) -> list[pa.RecordBatch]:
    """The object's records as DECODED batches of `size` (several per object, so that the
    checks carry their state across batches)."""
    rows = records(offsets, **where)  # type: ignore[arg-type]
    return [from_records(rows[i : i + size], decoded=True) for i in range(0, len(rows), size)]


@pytest.fixture
def objects(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[pa.RecordBatch]]:
    """Object key -> its decoded batches, served in place of S3 and the codec."""
    data: dict[str, list[pa.RecordBatch]] = {}

    def decode(_s3: object, _plan: object, _unit: object, obj: RestoreObject) -> Iterator[pa.RecordBatch]:
        yield from data[obj.key]

    monkeypatch.setattr(restore_decode, "decode_object", decode)
    return data


class _Plan:
    """What unit_records reads of a plan: a manifest backup of envelopes with metadata."""

    manifest_format = True
    envelope = True
    codec = CodecOptions()


def unit(
    objects: Sequence[RestoreObject],
    gaps: Sequence[OffsetGap] = (),
    window: tuple[int, int] | None = None,
    routing: str = "preserve",
) -> RestoreUnit:
    return RestoreUnit(
        unit_id="t.0",
        source_topic="t",
        source_partition=0,
        target_topic="r",
        target_partition=0,
        routing=routing,  # type: ignore[arg-type]
        objects=tuple(objects),
        segments=(
            Segment(
                backup_id="b", start_offset=window[0], end_offset=window[1], record_count=0, records_digest=""
            ),
        )
        if window
        else (),
        gaps=tuple(gaps),
        offsets_known=True,
        check_gaps=True,
        compare_segments=False,
    )


def obj(key: str, first: int, last: int, count: int | None = None, **values: str) -> RestoreObject:
    return RestoreObject(
        key=key, first_offset=first, last_offset=last, record_count=count, partition_values=values
    )


def run(restore_unit: RestoreUnit) -> tuple[list[tuple[int, str]], OrderingViolationError | None]:
    """(offset, first object of its batch) of every record yielded, and the error raised."""
    out: list[tuple[int, str]] = []
    try:
        for source in unit_records(None, _Plan(), restore_unit):  # type: ignore[arg-type]
            assert source.batch.column("offset").to_pylist() == source.offsets.tolist()
            out.extend((int(o), source.objects[0]) for o in source.offsets)
    except OrderingViolationError as exc:
        return out, exc
    return out, None


def what(error: OrderingViolationError | None) -> tuple[object, ...] | None:
    return None if error is None else (error.topic, error.partition, error.key, error.offset, error.reason)


def test_an_offset_outside_the_objects_range_is_named(objects):
    objects["a"] = batches([0, 1, 2, 3, 12])
    out, error = run(unit([obj("a", 0, 10)], window=(0, 13)))
    assert [o for o, _ in out] == [0, 1, 2, 3]
    assert what(error) == ("t", 0, "a", 12, "outside the object's range 0–10")


def test_a_repeat_inside_an_object_is_found_across_its_batches(objects):
    objects["a"] = batches([0, 1, 2, 2, 3], size=3)  # the repeat is the first record of batch 2
    out, error = run(unit([obj("a", 0, 3)], window=(0, 4)))
    assert [o for o, _ in out] == [0, 1, 2]
    assert what(error) == ("t", 0, "a", 2, "offset does not increase after 2")


def test_overlapping_chained_objects_are_refused_before_any_record(objects):
    objects["a"], objects["b"] = batches([0, 1, 2]), batches([2, 3])
    out, error = run(unit([obj("a", 0, 2), obj("b", 2, 3)]))
    assert out == []
    assert what(error) == ("t", 0, "b", 2, "object overlaps a (offsets 0–2)")


def test_a_gap_the_manifest_did_not_record_is_refused_and_a_recorded_one_passes(objects):
    objects["a"], objects["b"] = batches([0, 1, 2, 3, 4]), batches([7, 8, 9])
    layout = [obj("a", 0, 4), obj("b", 7, 9)]
    out, error = run(unit(layout, window=(0, 10)))
    assert [o for o, _ in out] == [0, 1, 2, 3, 4]
    assert what(error) == ("t", 0, "b", 7, "offsets 5–6 are missing and the manifest records no gap there")
    out, error = run(unit(layout, gaps=[OffsetGap(first=5, last=6, cause="compaction")], window=(0, 10)))
    assert error is None and [o for o, _ in out] == [0, 1, 2, 3, 4, 7, 8, 9]
    out, error = run(unit(layout, gaps=[OffsetGap(first=5, last=6, cause="compaction")], window=(0, 12)))
    assert what(error) == (
        "t",
        0,
        "b",
        10,
        "offsets 10–11 of the backed-up window are in no object and no recorded gap",
    )


def test_partitionby_objects_are_merged_by_offset(objects):
    objects["a"] = batches([0, 2, 3, 6, 8])
    objects["b"] = batches([1, 4, 5, 7, 9], size=2)
    out, error = run(unit([obj("a", 0, 8, region="x"), obj("b", 1, 9, region="y")], window=(0, 10)))
    assert error is None and [o for o, _ in out] == list(range(10))
    sources = list(
        unit_records(None, _Plan(), unit([obj("a", 0, 8, region="x"), obj("b", 1, 9, region="y")]))
    )  # type: ignore[arg-type]
    merged = pa.Table.from_batches([s.batch for s in sources])
    assert merged.column("value").to_pylist() == [f"v{o}".encode() for o in range(10)]
    assert {k for s in sources for k in s.objects} == {"a", "b"}


def test_a_repeat_between_merged_objects_names_the_later_object(objects):
    objects["a"], objects["b"] = batches([0, 2, 4]), batches([1, 2, 3])
    out, error = run(unit([obj("a", 0, 4, region="x"), obj("b", 1, 3, region="y")]))
    assert [o for o, _ in out] == [0, 1, 2]
    assert what(error) == ("t", 0, "b", 2, "offset 2 repeats or goes back after 2 (object a)")


def test_an_object_out_of_order_inside_a_cluster_fails_where_a_merge_would_meet_it(objects):
    objects["a"], objects["b"] = batches([0, 2, 4, 6]), batches([1, 5, 3])
    gap = OffsetGap(first=3, last=3, cause="compaction")
    out, error = run(unit([obj("a", 0, 6, region="x"), obj("b", 1, 5, region="y")], gaps=[gap]))
    # a merge yields 0 1 2 4 5 and then asks b for its next record: 3
    assert [o for o, _ in out] == [0, 1, 2, 4, 5]
    assert what(error) == ("t", 0, "b", 3, "offset does not increase after 5")


def test_metadata_routing_checks_each_source_partition_on_its_own(objects):
    rows = records([0, 1], partition=0) + records([0, 1], partition=1) + records([2], partition=0)
    objects["x"] = [from_records(rows, decoded=True)]
    objects["y"] = [from_records(records([2], partition=1) + records([1], partition=0), decoded=True)]
    layout = [RestoreObject(key="x"), RestoreObject(key="y")]
    out, error = run(unit(layout, routing="metadata"))
    assert len(out) == 6
    assert what(error) == ("t", 0, "y", 1, "offset does not increase after 2 (object x): objects overlap")


# --- the rules record by record (the restore before it read columns) as a reference ------------


def reference(
    restore_unit: RestoreUnit, data: dict[str, list[int]]
) -> tuple[list[int], tuple[object, ...] | None]:
    out: list[int] = []
    topic, partition = restore_unit.source_topic, restore_unit.source_partition

    def fail(key: str, offset: int, reason: str) -> tuple[list[int], tuple[object, ...]]:
        return out, (topic, partition, key, offset, reason)

    def stream(o: RestoreObject) -> Iterator[tuple[int, str]]:
        previous = None
        for offset in data[o.key]:
            if not o.first_offset <= offset <= o.last_offset:  # type: ignore[operator]
                raise OrderingViolationError(
                    topic,
                    partition,
                    o.key,
                    offset,
                    f"outside the object's range {o.first_offset}–{o.last_offset}",
                )
            if previous is not None and offset <= previous:
                raise OrderingViolationError(
                    topic, partition, o.key, offset, f"offset does not increase after {previous}"
                )
            previous = offset
            yield offset, o.key

    previous: tuple[int, str] | None = None
    expected = min((s.start_offset for s in restore_unit.segments), default=None)
    try:
        for cluster in clusters(restore_unit.objects):
            streams = [stream(o) for o in cluster]
            merged = streams[0] if len(streams) == 1 else heapq.merge(*streams, key=lambda r: r[0])
            for offset, key in merged:
                if previous is not None and offset <= previous[0]:
                    return fail(
                        key,
                        offset,
                        f"offset {offset} repeats or goes back after {previous[0]} (object {previous[1]})",
                    )
                if (
                    expected is not None
                    and offset > expected
                    and not in_gaps(expected, offset - 1, restore_unit.gaps)
                ):
                    return fail(
                        key,
                        offset,
                        f"offsets {expected}–{offset - 1} are missing and the manifest records no gap there",
                    )
                expected = offset + 1
                previous = (offset, key)
                out.append(offset)
    except OrderingViolationError as exc:
        return out, what(exc)
    end = max((s.end_offset for s in restore_unit.segments), default=expected)
    if (
        expected is not None
        and end is not None
        and expected < end
        and not in_gaps(expected, end - 1, restore_unit.gaps)
    ):
        last = restore_unit.objects[-1].key
        return fail(
            last,
            expected,
            f"offsets {expected}–{end - 1} of the backed-up window are in no object and no recorded gap",
        )
    return out, None


@pytest.mark.parametrize("seed", range(300))
def test_the_column_checks_match_the_record_by_record_rules(objects, seed):
    rng = random.Random(seed)
    layout, data, start = [], {}, 0
    for number in range(rng.randint(1, 4)):
        if rng.random() < 0.5:  # a PARTITIONBY cluster: offsets dealt to 2-3 objects
            span = sorted(rng.sample(range(start, start + 30), rng.randint(2, 20)))
            parts = rng.randint(2, 3)
            dealt = [
                [o for i, o in enumerate(span) if i % parts == p or rng.random() < 0.05] for p in range(parts)
            ]
        else:
            dealt = [sorted(rng.sample(range(start, start + 15), rng.randint(1, 10)))]
        for p, offsets in enumerate(dealt):
            offsets = offsets or [start]
            first, last = min(offsets), max(offsets)
            if rng.random() < 0.15:  # break it: swap, repeat or stray
                i = rng.randrange(len(offsets))
                offsets = [
                    *offsets[:i],
                    rng.choice([offsets[i] - 1, offsets[i], last + 3, first]),
                    *offsets[i:],
                ]
            key = f"o{number}-{p}"
            data[key] = offsets
            layout.append(obj(key, first, last, region=f"{number}-{p}"))
        start = max(max(o) for o in dealt if o) + rng.randint(1, 3) if any(dealt) else start + 1
    present = {o for offsets in data.values() for o in offsets}
    begin = layout[0].first_offset or 0
    missing = [o for o in range(begin, start) if o not in present]
    # most holes recorded as gaps, some not
    holes = [OffsetGap(first=o, last=o, cause="compaction") for o in missing if rng.random() < 0.97]
    restore_unit = unit(layout, gaps=holes, window=(begin, start))
    for key, offsets in data.items():
        objects[key] = batches(offsets, size=rng.randint(1, 4))
    out, error = run(restore_unit)
    expected_out, expected_error = reference(restore_unit, data)
    assert what(error) == expected_error
    assert [o for o, _ in out] == expected_out


# --- digests and the window ---------------------------------------------------------------------


def test_segment_digests_match_the_per_record_digest():
    rows = records(range(20))
    segments = (
        Segment(backup_id="1", start_offset=0, end_offset=7, record_count=7, records_digest=""),
        Segment(backup_id="2", start_offset=7, end_offset=20, record_count=13, records_digest=""),
    )
    restore_unit = unit([obj("a", 0, 19)]).model_copy(update={"segments": segments, "compare_segments": True})
    digests = SegmentDigests(restore_unit)
    for i in range(0, 20, 6):
        batch = from_records(rows[i : i + 6], decoded=True)
        digests.add(batch, np.array(batch.column("offset").to_pylist(), dtype=np.int64))
    for segment, hasher, count in zip(segments, digests.hashers, digests.counts, strict=True):
        expected = hashlib.sha256()
        for r in rows[segment.start_offset : segment.end_offset]:
            expected.update(digest_input(r.key, r.value, r.headers, r.timestamp, int(r.timestamp_type)))
        assert hasher.hexdigest() == expected.hexdigest() and count == segment.record_count


@pytest.mark.parametrize(
    "window",
    [
        Window(),
        Window(from_offset=3, to_offset=9),
        Window(from_timestamp=1_004, to_timestamp=1_010),
        Window(from_offset=2, from_timestamp=1_001),
    ],
)
def test_the_window_mask_admits_what_admits_admits(window):
    rows = records(range(12))
    batch = from_records(rows, decoded=True)
    mask = window_mask(window, np.arange(12, dtype=np.int64), batch.column("timestamp"))
    admitted = [window.admits(r.offset, r.timestamp) for r in rows]
    assert (mask is None and all(admitted)) or (mask is not None and mask.tolist() == admitted)
