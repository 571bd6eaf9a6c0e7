"""Records as columns (formats/columns.py): the batch digest is the record-by-record digest."""

from __future__ import annotations

import hashlib
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from formats.columns import batch_digest, from_records, records_digest_inputs, to_records, update_digest
from formats.digest import digest_input, records_digest
from formats.envelope import Record
from tests.unit.test_formats import record_lists


@given(record_lists())
@settings(max_examples=150, deadline=None)
def test_columns_hold_every_record_exactly(records: list[Record]) -> None:
    batch = from_records(records)
    assert list(to_records(batch, "t", 0)) == [
        Record(r.key, r.value, r.headers, "t", 0, r.offset, r.timestamp, r.timestamp_type) for r in records
    ]


@pytest.mark.parametrize("small_batch", [0, 10**9], ids=["kernels", "record-by-record"])
@given(records=record_lists(), data=st.data())
@settings(max_examples=150, deadline=None)
def test_batch_digest_inputs_are_the_record_digest_inputs(
    small_batch: int, records: list[Record], data: st.DataObject
) -> None:
    with mock.patch("formats.columns.SMALL_BATCH", small_batch):
        _digest_inputs_are_the_records(records, data)


def _digest_inputs_are_the_records(records: list[Record], data: st.DataObject) -> None:
    batch = from_records(records)
    inputs = records_digest_inputs(batch)
    assert [value.as_py() for value in inputs] == [
        digest_input(r.key, r.value, r.headers, r.timestamp, int(r.timestamp_type)) for r in records
    ]
    assert batch_digest(batch) == records_digest(records)
    start = data.draw(st.integers(0, len(records)))
    stop = data.draw(st.integers(start, len(records)))
    hasher = hashlib.sha256()
    update_digest(hasher, inputs, start, stop)
    assert "sha256:" + hasher.hexdigest() == records_digest(records[start:stop])
    assert batch_digest(batch.slice(start, stop - start)) == records_digest(records[start:stop])
