"""Confluent's wire format (formats/wire.py): the ids of a whole array and their rewrite, checked
against a per-record reference over random binary arrays (nulls, short values, slices)."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from formats.wire import rewrite_schema_ids, schema_ids, wire_id, with_schema_id

IDS = st.integers(-(1 << 31), (1 << 31) - 1)
SMALL_IDS = st.integers(0, 5)
VALUES = st.one_of(
    st.none(),
    st.binary(max_size=8),
    st.builds(with_schema_id, st.binary(max_size=6), SMALL_IDS),
    st.builds(with_schema_id, st.binary(max_size=3), IDS),
)
TYPES = st.sampled_from([pa.binary(), pa.large_binary()])


def _reference(values: list[bytes | None], mapping: dict[int, int]) -> list[bytes | None]:
    out: list[bytes | None] = []
    for value in values:
        schema_id = wire_id(value)
        if value is None or schema_id is None or schema_id not in mapping:
            out.append(value)
        else:
            out.append(with_schema_id(value[5:], mapping[schema_id]))
    return out


def test_one_value():
    value = with_schema_id(b"\x02ab", 7)
    assert value == b"\x00\x00\x00\x00\x07\x02ab"
    assert wire_id(value) == 7
    assert wire_id(with_schema_id(b"", -2)) == -2
    assert wire_id(b"\x00\x00\x00\x07") is None  # 4 bytes: too short
    assert wire_id(b"\x01\x00\x00\x00\x07") is None  # another magic byte
    assert wire_id(None) is None


def test_ids_of_an_array():
    values = pa.array(
        [with_schema_id(b"x", 3), None, b"{}", with_schema_id(b"", 3), with_schema_id(b"y", 9), b""]
    )
    assert schema_ids(values) == ({3, 9}, 2)
    assert schema_ids(pa.chunked_array([values[:2], values[2:]])) == ({3, 9}, 2)
    assert schema_ids(pa.array([], pa.binary())) == (set(), 0)
    assert schema_ids(pa.nulls(3, pa.binary())) == (set(), 0)


def test_rewrite_keeps_what_it_does_not_map():
    values = pa.array([with_schema_id(b"x", 3), None, b"\x00abc", with_schema_id(b"y", 9)])
    rewritten = rewrite_schema_ids(values, {3: 300, 4: 400})
    assert rewritten.to_pylist() == [with_schema_id(b"x", 300), None, b"\x00abc", with_schema_id(b"y", 9)]
    assert values.to_pylist()[0] == with_schema_id(b"x", 3)  # the input is not written to
    assert rewrite_schema_ids(values, {4: 5}) is values
    assert rewrite_schema_ids(values, {}) is values
    assert rewrite_schema_ids(values, {3: 3}) is values
    with pytest.raises(ValueError, match="4 bytes"):
        rewrite_schema_ids(values, {3: 1 << 31})


@settings(max_examples=300, deadline=None)
@given(
    st.lists(VALUES, max_size=30),
    st.dictionaries(SMALL_IDS, IDS, max_size=4),
    TYPES,
    st.data(),
)
def test_rewrite_matches_the_per_record_reference(values, mapping, kind, data):
    array = pa.array(values, kind)
    start = data.draw(st.integers(0, len(values)))
    stop = data.draw(st.integers(start, len(values)))
    sliced = array.slice(start, stop - start)
    expected = _reference(values[start:stop], mapping)
    rewritten = rewrite_schema_ids(sliced, mapping)
    rewritten.validate(full=True)
    assert rewritten.type == kind
    assert rewritten.to_pylist() == expected
    if expected == values[start:stop]:
        assert rewritten is sliced
    ids = {wire_id(v) for v in values[start:stop]} - {None}
    others = sum(1 for v in values[start:stop] if v is not None and wire_id(v) is None)
    assert schema_ids(sliced) == (ids, others)
    chunked = pa.chunked_array([array.slice(0, start), sliced], kind)
    assert rewrite_schema_ids(chunked, mapping).to_pylist() == _reference(values[:stop], mapping)


@given(st.lists(VALUES, max_size=20), TYPES)
def test_an_empty_mapping_is_the_identity(values, kind):
    array = pa.array(values, kind)
    assert rewrite_schema_ids(array, {}) is array
