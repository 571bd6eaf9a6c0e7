"""Typed columns for JSON values (value.converter=json, value-only PARQUET and AVRO): the schema
pyarrow's JSON reader infers, the rules for missing fields, nulls, tombstones and type changes,
the fallback that keeps the values' bytes, and round trips equal as documents (hypothesis)."""

from __future__ import annotations

import io
import json
import string
from typing import Any

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from formats import CodecContext, Record, get_codec
from formats.json_columns import NULLS, TOMBSTONE
from tests.support.columns import value_batch

FORMATS = ["PARQUET", "AVRO"]
JSON = CodecContext("sales", 3, value_converter="json", object_key="k")


def _write(fmt: str, values: list[bytes | None], by_records: bool = False) -> tuple[bytes, Any]:
    writer = get_codec(fmt).writer(JSON)
    half = len(values) // 2
    if by_records:
        records = [Record(None, v, (), "sales", 3, i, None) for i, v in enumerate(values)]
        writer.write(records[:half])
        writer.write(records[half:])
    else:
        writer.write_columns(value_batch(values[:half]))
        writer.write_columns(value_batch(values[half:], half))
    return writer.finish(), writer


def _restored(fmt: str, data: bytes) -> list[bytes | None]:
    codec = get_codec(fmt)
    by_columns = [v for b in codec.read_columns(data, JSON) for v in b.column("value").to_pylist()]
    by_records = [r.value for r in codec.reader(io.BytesIO(data), JSON)]
    assert [None if v is None else bytes(v) for v in by_records] == by_columns
    return by_columns


def _documents(values: list[bytes | None]) -> list[Any]:
    return [None if v is None else json.loads(v) for v in values]


def _rows(fmt: str, data: bytes) -> list[dict[str, Any]]:
    if fmt == "PARQUET":
        return pq.read_table(io.BytesIO(data)).to_pylist()
    return list(fastavro.reader(io.BytesIO(data)))


def _dumps(document: Any) -> bytes:
    return json.dumps(document).encode()


SALES = [
    _dumps(
        {
            "product_category": "Electronics",
            "amount": 12,
            "paid": True,
            "tags": ["a", "b"],
            "customer": {"id": 7},
        }
    ),
    _dumps(
        {
            "product_category": "Books",
            "amount": 3.5,
            "paid": False,
            "tags": [],
            "customer": {"id": 8, "vip": True},
        }
    ),
]


@pytest.mark.parametrize("fmt", FORMATS)
def test_fields_become_typed_columns(fmt):
    data, writer = _write(fmt, SALES)
    assert writer.fallback is None
    if fmt == "PARQUET":
        schema = pq.read_schema(io.BytesIO(data))
        assert schema.metadata[b"kbackup"] == b"json"
        assert schema.field("product_category").type == pa.string()
        assert schema.field("amount").type == pa.float64()  # integers and fractions: double
        assert schema.field("paid").type == pa.bool_()
        assert pa.types.is_list(schema.field("tags").type)
        assert schema.field("customer").type == pa.struct([("id", pa.int64()), ("vip", pa.bool_())])
    else:
        fields = {f["name"]: f["type"] for f in fastavro.reader(io.BytesIO(data)).writer_schema["fields"]}
        assert fields["product_category"] == ["null", "string"]
        assert fields["amount"] == ["null", "double"]
        assert fields["paid"] == ["null", "boolean"]
        assert fields["tags"][1]["type"] == "array"
        assert [f["name"] for f in fields["customer"][1]["fields"]] == ["id", "vip"]
    rows = _rows(fmt, data)
    assert rows[0]["customer"] == {"id": 7, "vip": None}  # missing in this record: null
    assert _documents(_restored(fmt, data)) == _documents(SALES)


@pytest.mark.parametrize("fmt", FORMATS)
def test_missing_fields_are_null_and_explicit_nulls_are_listed(fmt):
    values = [
        _dumps({"a": 1}),
        _dumps({"a": None, "b": "x"}),
        _dumps({"b": None, "c": {"d": None, "e": [{"f": None}]}}),
    ]
    data, writer = _write(fmt, values)
    assert writer.fallback is None
    rows = _rows(fmt, data)
    assert [(r["a"], r["b"]) for r in rows] == [(1, None), (None, "x"), (None, None)]
    assert [r[NULLS] for r in rows] == [[], ["/a"], ["/b", "/c/d", "/c/e/0/f"]]
    restored = _restored(fmt, data)
    assert _documents(restored) == _documents(values)
    assert "a" not in json.loads(restored[2]) and json.loads(restored[1])["a"] is None


@pytest.mark.parametrize("fmt", FORMATS)
def test_tombstone_is_a_row_of_nulls_told_apart_from_an_empty_object(fmt):
    values = [_dumps({"a": 1, "s": {"x": "y"}}), None, b"{}"]
    data, writer = _write(fmt, values)
    assert writer.fallback is None
    rows = _rows(fmt, data)
    assert rows[1] == {"a": None, "s": None, TOMBSTONE: True, NULLS: None}
    assert rows[2] == {"a": None, "s": None, TOMBSTONE: False, NULLS: []}
    assert _restored(fmt, data) == [b'{"a":1,"s":{"x":"y"}}', None, b"{}"]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ([b'{"a": 1}', b'{"a": "one"}'], "changed from number to string"),  # a field changes type
        ([b'{"a": [1, "x"]}'], "changed from number to string"),
        ([b'{"a": 9007199254740993}', b'{"a": 0.5}'], "would not come back equal"),  # beyond 2^53 in a double
        ([b'{"a": 1}', b"[1, 2]"], "is a JSON list, not an object"),
        ([b'{"a": 1}', b"42"], "is a JSON int, not an object"),
        ([b'{"a": 1}', b'"text"'], "is a JSON str, not an object"),
        ([b'{"a": 1}', b'{"a": '], "is not JSON"),
        ([b'{"a": 1}', b""], "is not JSON"),
        ([b'{"a": "x\ny"}'], "is not JSON"),  # a raw line break inside a string
        ([b'{"a": 1, "a": 2}'], "specified twice"),
        ([b'{"_kbackup_tombstone": 1}'], "a column of its own"),
    ],
)
def test_values_that_cannot_be_typed_keep_their_bytes(fmt, values, reason):
    values = [*values, None]
    data, writer = _write(fmt, values)
    assert reason in writer.fallback
    if fmt == "PARQUET":
        schema = pq.read_schema(io.BytesIO(data))
        assert schema.metadata[b"kbackup"] == b"value"
        assert schema.field("value").type == pa.string()  # UTF-8 text: query engines read it as JSON text
    else:
        assert fastavro.reader(io.BytesIO(data)).writer_schema["name"] == "io.kbackup.KafkaValue"
    assert _restored(fmt, data) == values


@pytest.mark.parametrize("fmt", FORMATS)
def test_bytes_that_are_not_text_fall_back_to_binary(fmt):
    values = [b'{"a": 1}', b"\xff\xfe", None]
    data, writer = _write(fmt, values)
    assert "not JSON" in writer.fallback
    if fmt == "PARQUET":
        assert pq.read_schema(io.BytesIO(data)).field("value").type == pa.binary()
    assert _restored(fmt, data) == values


def test_parquet_cannot_hold_an_object_that_is_always_empty():
    data, writer = _write("PARQUET", [b'{"s": {}}'])
    assert "no child field" in writer.fallback
    assert _restored("PARQUET", data) == [b'{"s": {}}']
    data, writer = _write("AVRO", [b'{"s": {}}'])
    assert writer.fallback is None
    assert _restored("AVRO", data) == [b'{"s":{}}']


def test_a_name_avro_cannot_spell_falls_back_in_avro_only():
    values = [b'{"product-category": "Books", "": 1}']
    data, writer = _write("AVRO", values)
    assert "not an Avro name" in writer.fallback
    assert _restored("AVRO", data) == values
    data, writer = _write("PARQUET", values)
    assert writer.fallback is None
    assert _documents(_restored("PARQUET", data)) == _documents(values)


@pytest.mark.parametrize("fmt", FORMATS)
def test_leading_nulls_in_arrays_are_kept(fmt):
    """pyarrow's JSON reader drops nulls before an array's first typed element while it infers;
    the object is read again with the inferred schema declared."""
    values = [b'{"a": [null, {"f": 1}], "b": [null, null], "c": [null, "x"], "d": [null, [null, 1]]}']
    data, writer = _write(fmt, values)
    assert writer.fallback is None
    rows = _rows(fmt, data)
    assert rows[0]["b"] == [None, None] and rows[0]["c"] == [None, "x"]
    assert _documents(_restored(fmt, data)) == _documents(values)


@pytest.mark.parametrize("fmt", FORMATS)
def test_strings_stay_strings(fmt):
    values = [_dumps({"day": "2023-01-01", "at": {"t": "2023-01-01T10:00:00"}, "l": ["2023-01-01 10:00:00"]})]
    data, writer = _write(fmt, values)
    assert writer.fallback is None
    if fmt == "PARQUET":
        assert pq.read_schema(io.BytesIO(data)).field("day").type == pa.string()  # not timestamp[s]
    assert _documents(_restored(fmt, data)) == _documents(values)


@pytest.mark.parametrize("fmt", FORMATS)
def test_size_estimate_counts_the_values_and_the_objects_are_deterministic(fmt):
    writer = get_codec(fmt).writer(JSON)
    writer.write_columns(value_batch(SALES))
    assert writer.size_estimate == sum(len(v) for v in SALES)
    assert writer.record_count == 2
    assert writer.finish() == _write(fmt, SALES)[0]


@pytest.mark.parametrize("fmt", FORMATS)
def test_other_converters_and_the_envelope_are_unchanged(fmt):
    """Only value-only objects with the json value converter get typed columns: the envelope
    (and a value-only object with another converter) is written as before, byte for byte."""
    records = [
        Record(b"k", SALES[0], (("h", b"v"),), "sales", 3, 5, 1000),
        Record(None, None, (), "sales", 3, 6, None),
    ]
    for envelope in (True, False):
        written = {}
        for converter in ("bytes", "json"):
            writer = get_codec(fmt).writer(
                CodecContext(
                    "sales", 3, envelope=envelope, value_converter=converter, key_converter=converter
                )
            )
            writer.write(records)
            written[converter] = writer.finish()
        assert (written["json"] == written["bytes"]) is envelope


# --- hypothesis: any JSON objects round trip equal as documents -------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=8,
)
objects = st.dictionaries(st.text(max_size=5), json_values, max_size=5)


@settings(max_examples=150, deadline=None)
@given(
    fmt=st.sampled_from(FORMATS), documents=st.lists(st.one_of(st.none(), objects), min_size=1, max_size=12)
)
def test_any_json_objects_round_trip_as_documents(fmt, documents):
    values = [None if d is None else _dumps(d) for d in documents]
    data, _ = _write(fmt, values, by_records=len(values) % 2 == 0)
    assert _documents(_restored(fmt, data)) == documents


# Records of one shape (each field keeps its type, any field may be missing or null), which must
# come back typed, not through the fallback.
names = st.text(string.ascii_letters + "_", min_size=1, max_size=6)
numbers = st.one_of(st.integers(-(2**53), 2**53), st.floats(allow_nan=False, allow_infinity=False))
leaf_types = st.sampled_from(
    [st.booleans(), st.integers(-(2**63), 2**63 - 1), numbers, st.text(max_size=10), st.just(None)]
)


def _typed_fields(depth: int) -> st.SearchStrategy[dict[str, st.SearchStrategy[Any]]]:
    kinds = leaf_types
    if depth:
        kinds = (
            kinds
            | _typed_fields(depth - 1).map(_object_of)
            | leaf_types.map(lambda s: st.lists(s, max_size=3))
        )
    return st.dictionaries(names, kinds, min_size=1, max_size=4)


def _object_of(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    present = st.lists(st.sampled_from(sorted(fields)), min_size=1, unique=True)
    return present.flatmap(
        lambda keys: st.fixed_dictionaries({k: st.one_of(st.none(), fields[k]) for k in keys})
    )


@settings(max_examples=100, deadline=None)
@given(
    fmt=st.sampled_from(FORMATS),
    documents=_typed_fields(2).flatmap(
        lambda fields: st.lists(st.one_of(st.none(), _object_of(fields)), min_size=1, max_size=10)
    ),
)
def test_objects_of_one_shape_are_typed_and_round_trip(fmt, documents):
    values = [None if d is None else _dumps(d) for d in documents]
    data, writer = _write(fmt, values)
    assert writer.fallback is None
    assert _documents(_restored(fmt, data)) == documents
