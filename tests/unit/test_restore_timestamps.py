"""The timestamps the producer cannot write (layout.restore.timestamps): which records have
timestamp 0, the batch with the substitute, and which objects the manifest says may hold one."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from formats.columns import from_records
from formats.envelope import Record, TimestampType
from layout.restore.errors import UnwritableTimestampError
from layout.restore.plan import RestoreObject
from layout.restore.timestamps import SUBSTITUTE_MS, may_hold_zero, substituted, zero_rows

stamps = st.lists(
    st.one_of(st.none(), st.sampled_from([0, 1, -1, 2**63 - 1]), st.integers(-(2**63), 2**63 - 1))
)


def _batch(values: list[int | None]) -> pa.RecordBatch:
    return from_records(
        [
            Record(
                b"k",
                b"v",
                (),
                "t",
                0,
                i,
                stamp,
                TimestampType.NO_TIMESTAMP_TYPE if stamp is None else TimestampType.CREATE_TIME,
            )
            for i, stamp in enumerate(values)
        ],
        decoded=True,
    )


@given(stamps)
def test_only_timestamp_zero_is_substituted_and_records_without_one_stay_without(values):
    batch = _batch(values)
    rows = zero_rows(batch.column("timestamp"))
    assert rows.tolist() == [i for i, v in enumerate(values) if v == 0]
    after = substituted(batch, rows).column("timestamp").to_pylist()
    assert after == [SUBSTITUTE_MS if v == 0 else v for v in values]
    assert substituted(batch, rows).schema == batch.schema


def test_the_manifest_bounds_say_which_objects_may_hold_timestamp_zero():
    def obj(low: int | None, high: int | None) -> RestoreObject:
        return RestoreObject(key="k", min_timestamp=low, max_timestamp=high)

    assert may_hold_zero(obj(0, 5)) and may_hold_zero(obj(-5, 5)) and may_hold_zero(obj(0, 0))
    assert not may_hold_zero(obj(1, 5)) and not may_hold_zero(obj(-5, -1))
    assert not may_hold_zero(obj(None, None))  # no timestamps at all


def test_the_refusal_names_the_record_the_value_and_the_property():
    error = UnwritableTimestampError("orders", 3, 41, 0, "p/orders/3/000000000099.avro", count=4)
    assert (error.topic, error.partition, error.offset, error.timestamp, error.count) == (
        "orders",
        3,
        41,
        0,
        4,
    )
    text = str(error)
    assert text.startswith("orders/3 offset 41 (object p/orders/3/000000000099.avro) has timestamp 0")
    assert "(and 3 more such records)" in text and "nothing was written" in text
    assert "'restore.timestamp.zero'='substitute'" in text
    assert "may be committed" in str(UnwritableTimestampError("t", 0, 1, 0, "k", written=True))
