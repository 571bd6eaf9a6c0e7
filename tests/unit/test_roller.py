"""The object roller (layout/objects.py): objects cut by the flush rules from column batches."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from formats import get_codec
from formats.codec import CodecContext
from formats.columns import from_records, records_digest_inputs, to_records
from formats.digest import records_digest
from formats.envelope import Record, TimestampType
from layout.keys import KeyNaming, Padding
from layout.objects import FinishedObject, FlushRules, ObjectRoller

TOPIC, PARTITION = "orders", 3


@st.composite
def partition_records(draw: st.DrawFn) -> list[Record]:
    """A partition's records: offsets increasing with holes, timestamps mostly increasing with
    jumps, some missing; values of varied sizes."""
    count = draw(st.integers(1, 120))
    offset, timestamp = draw(st.integers(0, 1000)), draw(st.integers(0, 10**12))
    records = []
    for _ in range(count):
        offset += draw(st.sampled_from([1, 1, 1, 2, 7]))
        timestamp += draw(st.sampled_from([0, 5, 400, 1500, 4000, -300]))
        stamped = draw(st.booleans()) or draw(st.booleans())
        records.append(
            Record(
                draw(st.one_of(st.none(), st.binary(max_size=8))),
                draw(st.one_of(st.none(), st.binary(max_size=300))),
                tuple(
                    draw(
                        st.lists(
                            st.tuples(st.sampled_from(["a", "b"]), st.none() | st.binary(max_size=9)),
                            max_size=3,
                        )
                    )
                ),
                TOPIC,
                PARTITION,
                offset,
                timestamp if stamped else None,
                TimestampType.CREATE_TIME if stamped else TimestampType.NO_TIMESTAMP_TYPE,
            )
        )
    return records


def _roll(
    records: list[Record], rules: FlushRules, cuts: list[int], fmt: str = "PARQUET"
) -> list[FinishedObject]:
    codec = get_codec(fmt)
    roller = ObjectRoller(
        codec,
        CodecContext(TOPIC, PARTITION, envelope=True),
        KeyNaming(prefix="p", extension=codec.spec.extension, padding=Padding()),
        rules,
    )
    finished: list[FinishedObject] = []
    bounds = [0, *sorted(set(cuts)), len(records)]
    for start, stop in zip(bounds, bounds[1:], strict=False):
        if stop > start:
            batch = from_records(records[start:stop])
            finished += roller.add(batch, records_digest_inputs(batch))
    return finished + roller.finish_all()


def _reference_cuts(records: list[Record], rules: FlushRules) -> list[tuple[int, int]]:
    """The count and interval rules applied record by record: (first, last) offset per object."""
    objects: list[list[Record]] = []
    for record in records:
        current = objects[-1] if objects else None
        if (
            current is not None
            and current[0].timestamp is not None
            and record.timestamp is not None
            and rules.interval_seconds is not None
            and record.timestamp - current[0].timestamp >= rules.interval_seconds * 1000
        ):
            current = None
        if current is None or len(current) >= rules.count:
            objects.append([])
        objects[-1].append(record)
    return [(o[0].offset, o[-1].offset) for o in objects]


rules_strategy = st.builds(
    FlushRules,
    count=st.integers(1, 60),
    size=st.just(10**12),
    interval_seconds=st.none() | st.integers(1, 10),
)


@given(partition_records(), rules_strategy, st.lists(st.integers(0, 120), max_size=6))
@settings(max_examples=120, deadline=None)
def test_count_and_interval_cut_as_record_by_record(
    records: list[Record], rules: FlushRules, cuts: list[int]
) -> None:
    finished = _roll(records, rules, [c for c in cuts if c < len(records)])
    assert [(o.first_offset, o.last_offset) for o in finished] == _reference_cuts(records, rules)
    by_offset = {r.offset: r for r in records}
    for obj in finished:
        inside = [r for r in records if obj.first_offset <= r.offset <= obj.last_offset]
        assert obj.record_count == len(inside)
        assert obj.records_digest == records_digest(inside)
        stamps = [r.timestamp for r in inside if r.timestamp is not None]
        assert (obj.min_timestamp, obj.max_timestamp) == (
            (min(stamps), max(stamps)) if stamps else (None, None)
        )
        decoded = list(get_codec("PARQUET").reader(obj.data, CodecContext(TOPIC, PARTITION, envelope=True)))
        assert decoded == [by_offset[r.offset] for r in decoded] == inside


@given(
    partition_records(),
    st.integers(1, 60),
    st.integers(200, 6000),
    st.lists(st.integers(0, 120), max_size=6),
    st.sampled_from(["PARQUET", "AVRO", "JSON"]),
)
@settings(max_examples=60, deadline=None)
def test_objects_do_not_depend_on_how_the_consumer_batched_the_records(
    records: list[Record], count: int, size: int, cuts: list[int], fmt: str
) -> None:
    """Same records, any batch boundaries: the same objects, byte for byte (a retried export
    writes the same keys with the same bytes)."""
    rules = FlushRules(count=count, size=size, interval_seconds=5)
    whole = _roll(records, rules, [], fmt)
    split = _roll(records, rules, [c for c in cuts if c < len(records)], fmt)
    assert [(o.key, o.records_digest, o.record_count) for o in split] == [
        (o.key, o.records_digest, o.record_count) for o in whole
    ]
    assert [o.data for o in split] == [o.data for o in whole]
    assert sum(o.record_count for o in whole) == len(records)


def test_the_size_rule_rolls_large_objects() -> None:
    records = [
        Record(
            b"k",
            random.Random(offset).randbytes(10_240),
            (),
            TOPIC,
            PARTITION,
            offset,
            1000 + offset,
            TimestampType.CREATE_TIME,
        )
        for offset in range(2000)
    ]
    finished = _roll(
        records, FlushRules(count=100_000, size=2_000_000, interval_seconds=3600), [1234, 1500], "AVRO"
    )
    assert len(finished) > 1
    assert [r.offset for o in finished for r in _decoded(o)] == [r.offset for r in records]


def _sparse(count: int, days: int) -> list[Record]:
    """`count` records spread evenly over `days` days of timestamps."""
    step = days * 86_400_000 // count
    start = 1_700_000_000_000
    return [
        Record(b"k", b"v" * 100, (), TOPIC, PARTITION, o, start + o * step, TimestampType.CREATE_TIME)
        for o in range(count)
    ]


def test_sparse_timestamps_make_one_object_by_default() -> None:
    """2,000 records over 40 days: the default rules (no interval) cut by count and size only."""
    records = _sparse(2000, 40)
    finished = _roll(records, FlushRules(), [700, 1400])
    assert [(o.first_offset, o.last_offset, o.record_count) for o in finished] == [(0, 1999, 2000)]
    assert FlushRules().interval_seconds is None


def test_a_set_interval_still_cuts_by_record_time() -> None:
    """'flush.interval'=3600 on the same records: one object per hour of record time (a record
    every 28.8 minutes: two or three per object), as the statement asked."""
    records = _sparse(2000, 40)
    finished = _roll(records, FlushRules(interval_seconds=3600), [700, 1400])
    assert len(finished) == len(_reference_cuts(records, FlushRules(interval_seconds=3600))) == 667
    assert all(o.max_timestamp - o.min_timestamp < 3_600_000 for o in finished)


def _decoded(obj: FinishedObject) -> list[Record]:
    return list(get_codec("AVRO").reader(obj.data, CodecContext(TOPIC, PARTITION, envelope=True)))


def test_batches_round_trip_to_records() -> None:
    records = [
        Record(
            None, b"", (("a", None), ("a", b"x")), TOPIC, PARTITION, 5, None, TimestampType.NO_TIMESTAMP_TYPE
        )
    ]
    assert list(to_records(from_records(records), TOPIC, PARTITION)) == records
