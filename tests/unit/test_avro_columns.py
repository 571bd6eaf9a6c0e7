"""Typed columns for Avro values (value.converter=avro, value-only PARQUET and AVRO): the Arrow
type of each Avro type, values in Confluent's wire format decoded into columns and encoded back
to the same bytes, two schema versions in one object, tombstones, the fallback that keeps the
values' bytes, and the codecs' round trips (hypothesis)."""

from __future__ import annotations

import datetime
import decimal
import io
import uuid
from typing import Any

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from formats import CodecContext, Record, get_codec
from formats.avro_columns import (
    SCHEMA_ID,
    TOMBSTONE,
    SchemasNeeded,
    Untypable,
    arrow_type,
    batch_values,
    row_wire_values,
    typed_avro_table,
)
from formats.avro_container import avro_container_schema
from formats.wire import with_schema_id
from tests.support.columns import value_batch

FORMATS = ["PARQUET", "AVRO"]
UTC = datetime.UTC

EVERYTHING = fastavro.parse_schema(
    {
        "type": "record",
        "name": "Sale",
        "namespace": "shop",
        "fields": [
            {"name": "id", "type": "long"},
            {"name": "count", "type": ["null", "int"]},
            {"name": "ratio", "type": "float"},
            {"name": "price", "type": "double"},
            {"name": "paid", "type": "boolean"},
            {"name": "nothing", "type": "null"},
            {"name": "raw", "type": "bytes"},
            {"name": "note", "type": "string"},
            {"name": "color", "type": {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN"]}},
            {"name": "code", "type": {"type": "fixed", "name": "Code", "size": 4}},
            {"name": "tags", "type": {"type": "array", "items": "string"}},
            {
                "name": "seen",
                "type": {"type": "map", "values": {"type": "long", "logicalType": "timestamp-millis"}},
            },
            {
                "name": "address",
                "type": {
                    "type": "record",
                    "name": "Address",
                    "fields": [
                        {"name": "city", "type": "string"},
                        {"name": "zip", "type": ["null", "string"]},
                        {"name": "codes", "type": {"type": "map", "values": "int"}},
                    ],
                },
            },
            {"name": "billing", "type": ["null", "Address"]},
            {"name": "day", "type": {"type": "int", "logicalType": "date"}},
            {"name": "at_ms", "type": {"type": "int", "logicalType": "time-millis"}},
            {"name": "at_us", "type": {"type": "long", "logicalType": "time-micros"}},
            {"name": "ts_ms", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "ts_us", "type": {"type": "long", "logicalType": "timestamp-micros"}},
            {
                "name": "amount",
                "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2},
            },
            {
                "name": "total",
                "type": {
                    "type": "fixed",
                    "name": "Total",
                    "size": 8,
                    "logicalType": "decimal",
                    "precision": 12,
                    "scale": 3,
                },
            },
            {"name": "ref", "type": {"type": "string", "logicalType": "uuid"}},
        ],
    }
)


def _row(i: int) -> dict[str, Any]:
    return {
        "id": i,
        "count": None if i % 2 else i * 10,
        "ratio": 1.5,
        "price": 2.25 + i,
        "paid": bool(i % 2),
        "nothing": None,
        "raw": bytes([0, 255, i]),
        "note": f"hé {i}",
        "color": "GREEN" if i % 2 else "RED",
        "code": b"ab" + bytes([i, 0]),
        "tags": ["a", "b"][: i % 3],
        "seen": {"x": datetime.datetime(2024, 1, 2, 3, 4, 5, 6000, tzinfo=UTC)} if i % 2 else {},
        "address": {"city": "Oslo", "zip": None, "codes": {"a": i}},
        "billing": None if i % 2 else {"city": "Rome", "zip": "00100", "codes": {}},
        "day": datetime.date(2024, 5, 6),
        "at_ms": datetime.time(1, 2, 3, 4000),
        "at_us": datetime.time(1, 2, 3, 4),
        "ts_ms": datetime.datetime(2024, 1, 2, 3, 4, 5, 6000, tzinfo=UTC),
        "ts_us": datetime.datetime(1960, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        "amount": decimal.Decimal("-12.34") + i,
        "total": decimal.Decimal("1.500"),
        "ref": str(uuid.UUID(int=i)).upper(),  # kept as spelt, not as uuid.UUID spells it
    }


def _wire(schema: Any, row: Any, schema_id: int) -> bytes:
    body = io.BytesIO()
    fastavro.schemaless_writer(body, schema, row)
    return with_schema_id(body.getvalue(), schema_id)


V1 = fastavro.parse_schema(
    {
        "type": "record",
        "name": "User",
        "fields": [{"name": "name", "type": "string"}, {"name": "age", "type": "int"}],
    }
)
V2 = fastavro.parse_schema(
    {
        "type": "record",
        "name": "User",
        "fields": [
            {"name": "name", "type": "string"},
            {"name": "age", "type": "long"},
            {"name": "email", "type": ["null", "string"], "default": None},
        ],
    }
)
SCHEMAS = {7: EVERYTHING, 21: V1, 22: V2}
LOOKUP = SCHEMAS.__getitem__
VALUES = [_wire(EVERYTHING, _row(i), 7) for i in range(5)]


def _context(lookup: Any = LOOKUP, **options: Any) -> CodecContext:
    return CodecContext("sales", 3, value_converter="avro", object_key="k", avro_schemas=lookup, **options)


def _write(
    fmt: str, values: list[bytes | None], by_records: bool = False, lookup: Any = LOOKUP
) -> tuple[bytes, Any]:
    writer = get_codec(fmt).writer(_context(lookup))
    half = len(values) // 2
    if by_records:
        records = [Record(None, v, (), "sales", 3, i, None) for i, v in enumerate(values)]
        writer.write(records[:half])
        writer.write(records[half:])
    else:
        writer.write_columns(value_batch(values[:half]))
        writer.write_columns(value_batch(values[half:], half))
    return writer.finish(), writer


def _restored(fmt: str, data: bytes, lookup: Any = LOOKUP) -> list[bytes | None]:
    codec = get_codec(fmt)
    by_columns = [
        v for b in codec.read_columns(data, _context(lookup)) for v in b.column("value").to_pylist()
    ]
    by_records = [r.value for r in codec.reader(io.BytesIO(data), _context(lookup))]
    assert by_records == by_columns
    return by_columns


def _rows(fmt: str, data: bytes) -> list[dict[str, Any]]:
    if fmt == "PARQUET":
        return pq.read_table(io.BytesIO(data)).to_pylist()
    return list(fastavro.reader(io.BytesIO(data)))  # type: ignore[arg-type]


# --- types -----------------------------------------------------------------------------------


def test_each_avro_type_has_its_arrow_type():
    struct = arrow_type(EVERYTHING)
    types = {struct.field(i).name: struct.field(i) for i in range(struct.num_fields)}
    address = pa.struct(
        [
            pa.field("city", pa.string(), nullable=False),
            ("zip", pa.string()),
            pa.field(
                "codes", pa.map_(pa.string(), pa.field("value", pa.int32(), nullable=False)), nullable=False
            ),
        ]
    )
    expected = {
        "id": pa.int64(),
        "count": pa.int32(),
        "ratio": pa.float32(),
        "price": pa.float64(),
        "paid": pa.bool_(),
        "nothing": pa.null(),
        "raw": pa.binary(),
        "note": pa.string(),
        "color": pa.string(),
        "code": pa.binary(4),
        "tags": pa.list_(pa.field("item", pa.string(), nullable=False)),
        "seen": pa.map_(pa.string(), pa.field("value", pa.timestamp("ms", tz="UTC"), nullable=False)),
        "address": address,
        "billing": address,
        "day": pa.date32(),
        "at_ms": pa.time32("ms"),
        "at_us": pa.time64("us"),
        "ts_ms": pa.timestamp("ms", tz="UTC"),
        "ts_us": pa.timestamp("us", tz="UTC"),
        "amount": pa.decimal128(10, 2),
        "total": pa.decimal128(12, 3),
        "ref": pa.string(),
    }
    assert {name: field.type for name, field in types.items()} == expected
    assert [name for name, field in types.items() if field.nullable] == ["count", "nothing", "billing"]


def test_types_without_a_column():
    with pytest.raises(Untypable, match="union of 2 types"):
        arrow_type(fastavro.parse_schema(["int", "string"]))
    with pytest.raises(Untypable, match="union of 3 types"):
        arrow_type(fastavro.parse_schema(["null", "int", "string"]))
    recursive = {"type": "record", "name": "Node", "fields": [{"name": "next", "type": ["null", "Node"]}]}
    with pytest.raises(Untypable, match="recursive"):
        arrow_type(fastavro.parse_schema(recursive))
    wide = {"type": "bytes", "logicalType": "decimal", "precision": 50, "scale": 4}
    assert arrow_type(fastavro.parse_schema(wide)) == pa.decimal256(50, 4)
    local = {"type": "long", "logicalType": "local-timestamp-micros"}
    assert arrow_type(fastavro.parse_schema(local)) == pa.timestamp("us")
    unknown = {"type": "string", "logicalType": "iso-datetime"}
    assert arrow_type(unknown) == pa.string()


# --- the table -------------------------------------------------------------------------------


def test_every_type_decodes_into_columns_and_encodes_back():
    values = [*VALUES, None]
    table = typed_avro_table(pa.chunked_array([pa.array(values[:2]), pa.array(values[2:])]), LOOKUP)
    assert table.schema.names[-2:] == [SCHEMA_ID, TOMBSTONE]
    assert table.schema.field(SCHEMA_ID).type == pa.int32()
    rows = table.to_pylist()
    first = rows[0]
    assert first["ts_ms"] == datetime.datetime(2024, 1, 2, 3, 4, 5, 6000, tzinfo=UTC)
    assert first["ts_us"] == datetime.datetime(1960, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert first["day"] == datetime.date(2024, 5, 6)
    assert first["at_ms"] == datetime.time(1, 2, 3, 4000)
    assert first["amount"] == decimal.Decimal("-12.34")
    assert first["ref"] == "00000000-0000-0000-0000-000000000000"
    assert first["billing"] == {"city": "Rome", "zip": "00100", "codes": []}
    assert (first[SCHEMA_ID], first[TOMBSTONE]) == (7, False)
    assert rows[-1][SCHEMA_ID] is None and rows[-1][TOMBSTONE] is True
    assert all(v is None for name, v in rows[-1].items() if name != TOMBSTONE)
    assert batch_values(table, LOOKUP).to_pylist() == values
    assert row_wire_values(table.to_batches()[0], LOOKUP) == values


def test_two_schema_versions_in_one_object():
    values = [
        _wire(V1, {"name": "ann", "age": 31}, 21),
        None,
        _wire(V2, {"name": "bob", "age": 1 << 40, "email": "bob@example.com"}, 22),
        _wire(V2, {"name": "cy", "age": 5, "email": None}, 22),
    ]
    table = typed_avro_table(pa.array(values), LOOKUP)
    assert table.schema.field("age").type == pa.int64()
    assert table.select(["name", "age", "email", SCHEMA_ID]).to_pylist() == [
        {"name": "ann", "age": 31, "email": None, SCHEMA_ID: 21},
        {"name": None, "age": None, "email": None, SCHEMA_ID: None},
        {"name": "bob", "age": 1 << 40, "email": "bob@example.com", SCHEMA_ID: 22},
        {"name": "cy", "age": 5, "email": None, SCHEMA_ID: 22},
    ]
    assert batch_values(table, LOOKUP).to_pylist() == values


def test_only_tombstones():
    table = typed_avro_table(pa.array([None, None], pa.binary()), LOOKUP)
    assert table.schema.names == [SCHEMA_ID, TOMBSTONE]
    assert batch_values(table, LOOKUP).to_pylist() == [None, None]


MARKED = fastavro.parse_schema(
    {"type": "record", "name": "M", "fields": [{"name": TOMBSTONE, "type": "boolean"}]}
)
CHOICE = fastavro.parse_schema(
    {"type": "record", "name": "C", "fields": [{"name": "either", "type": ["int", "string"]}]}
)
TEXT = fastavro.parse_schema({"type": "record", "name": "T", "fields": [{"name": "s", "type": "string"}]})
UNTYPABLE = {
    "not wire": ([VALUES[0], b'{"a": 1}'], "record 1 is not in the Avro wire format"),
    "empty value": ([VALUES[0], b""], "record 1 is not in the Avro wire format"),
    "unknown id": ([VALUES[0], _wire(V1, {"name": "a", "age": 1}, 99)], "schema id 99 is unknown"),
    "union": ([_wire(CHOICE, {"either": 3}, 30)], "union of 2 types"),
    "marker": ([_wire(MARKED, {TOMBSTONE: True}, 31)], "a column of its own"),
    "not a record": ([with_schema_id(b"\x02", 32)], "is not a record"),
    "trailing bytes": ([VALUES[0] + b"\x00"], "1 bytes after the Avro body"),
    "truncated": ([VALUES[0][:-3]], "record 0 does not decode"),
    "bad utf-8": ([with_schema_id(b"\x02\xff", 33)], "record 0 does not decode"),
    # V1's name: its length 1 spelt with a redundant varint byte decodes, but encodes back shorter
    "not canonical": ([with_schema_id(b"\x82\x00a\x02", 34)], "record 0 would not encode back"),
}
MORE = {30: CHOICE, 31: MARKED, 32: fastavro.parse_schema("int"), 33: TEXT, 34: V1}


def _more(schema_id: int) -> Any:
    return MORE[schema_id] if schema_id in MORE else SCHEMAS[schema_id]


@pytest.mark.parametrize("name", list(UNTYPABLE))
def test_values_that_cannot_be_typed(name):
    values, reason = UNTYPABLE[name]
    with pytest.raises(Untypable, match=reason):
        typed_avro_table(pa.array(values, pa.binary()), _more)


def test_no_lookup_cannot_be_typed():
    with pytest.raises(Untypable, match="no schema registry lookup"):
        typed_avro_table(pa.array(VALUES), None)


# --- the codecs ------------------------------------------------------------------------------


@pytest.mark.parametrize("by_records", [False, True])
@pytest.mark.parametrize("fmt", FORMATS)
def test_objects_hold_typed_columns_and_restore_the_wire_bytes(fmt, by_records):
    values = [*VALUES[:2], None, *VALUES[2:]]
    data, writer = _write(fmt, values, by_records)
    assert writer.fallback is None
    assert writer.record_count == len(values)
    assert _restored(fmt, data) == values
    rows = _rows(fmt, data)
    assert rows[0]["ts_ms"] == datetime.datetime(2024, 1, 2, 3, 4, 5, 6000, tzinfo=UTC)
    assert rows[0]["day"] == datetime.date(2024, 5, 6)
    assert rows[0]["amount"] == decimal.Decimal("-12.34")
    assert rows[0]["address"]["city"] == "Oslo"
    assert rows[2][TOMBSTONE] is True and rows[2]["id"] is None
    if fmt == "PARQUET":
        assert pq.read_schema(io.BytesIO(data)).metadata[b"kbackup"] == b"avro"
    else:
        schema = fastavro.reader(io.BytesIO(data)).writer_schema
        assert isinstance(schema, dict) and schema["name"] == "io.kbackup.KafkaAvroValue"


@pytest.mark.parametrize("fmt", FORMATS)
def test_schema_versions_and_tombstones_through_the_codecs(fmt):
    values = [
        _wire(V1, {"name": "ann", "age": 31}, 21),
        None,
        _wire(V2, {"name": "b", "age": 2, "email": "e"}, 22),
    ]
    data, writer = _write(fmt, values)
    assert writer.fallback is None
    assert _restored(fmt, data) == values
    assert [r["email"] for r in _rows(fmt, data)] == [None, None, "e"]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", ["not wire", "unknown id", "union"])
def test_an_object_that_cannot_be_typed_keeps_the_values_bytes(fmt, name):
    values, reason = UNTYPABLE[name]
    values = [*values, None]
    data, writer = _write(fmt, values, lookup=_more)
    assert reason in writer.fallback
    assert _restored(fmt, data, lookup=None) == values  # no schemas needed to read the bytes back


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_lookup_when_writing_keeps_the_values_bytes(fmt):
    data, writer = _write(fmt, VALUES, lookup=None)
    assert "no schema registry lookup" in writer.fallback
    assert _restored(fmt, data, lookup=None) == VALUES


@pytest.mark.parametrize("fmt", FORMATS)
def test_reading_typed_columns_needs_the_schemas(fmt):
    data, _ = _write(fmt, VALUES)
    codec = get_codec(fmt)
    with pytest.raises(SchemasNeeded, match="writer schemas") as raised:
        list(codec.read_columns(data, _context(None)))
    assert raised.value.object_key == "k"
    with pytest.raises(SchemasNeeded):
        list(codec.reader(io.BytesIO(data), _context(None)))


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_envelope_is_unchanged_by_the_converter(fmt):
    values = [*VALUES, None]
    objects = []
    for converter in ("bytes", "avro"):
        context = CodecContext("sales", 3, envelope=True, value_converter=converter, avro_schemas=LOOKUP)
        writer = get_codec(fmt).writer(context)
        writer.write_columns(value_batch(values))
        objects.append(writer.finish())
    assert objects[0] == objects[1]


def test_the_container_schema_names_logical_types():
    table = typed_avro_table(pa.array(VALUES), LOOKUP)
    fields = {f["name"]: f["type"] for f in avro_container_schema(table.schema)["fields"]}
    assert fields["ts_ms"] == ["null", {"type": "long", "logicalType": "timestamp-millis"}]
    assert fields["day"] == ["null", {"type": "int", "logicalType": "date"}]
    assert fields["amount"] == [
        "null",
        {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2},
    ]
    assert fields[SCHEMA_ID] == ["null", "int"]
    assert fields[TOMBSTONE] == "boolean"


# --- hypothesis ------------------------------------------------------------------------------

INT32 = st.integers(-(1 << 31), (1 << 31) - 1)
INT64 = st.integers(-(1 << 63), (1 << 63) - 1)
ROWS = st.fixed_dictionaries(
    {
        "id": INT64,
        "count": st.none() | INT32,
        "ratio": st.floats(width=32, allow_nan=False),
        "price": st.floats(allow_nan=False),
        "paid": st.booleans(),
        "nothing": st.none(),
        "raw": st.binary(max_size=8),
        "note": st.text(max_size=8),
        "color": st.sampled_from(["RED", "GREEN"]),
        "code": st.binary(min_size=4, max_size=4),
        "tags": st.lists(st.text(max_size=3), max_size=3),
        "seen": st.dictionaries(st.text(max_size=3), INT64, max_size=3),
        "address": st.fixed_dictionaries(
            {
                "city": st.text(max_size=5),
                "zip": st.none() | st.text(max_size=5),
                "codes": st.dictionaries(st.text(max_size=3), INT32, max_size=2),
            }
        ),
        "billing": st.none(),
        "day": INT32,
        "at_ms": st.integers(0, 86_399_999),
        "at_us": st.integers(0, 86_399_999_999),
        "ts_ms": INT64,  # beyond Python's datetime range too: the columns hold the integers
        "ts_us": INT64,
        "amount": st.decimals(min_value=1 - 10**8, max_value=10**8 - 1, places=2, allow_nan=False),
        "total": st.decimals(min_value=1 - 10**9, max_value=10**9 - 1, places=3, allow_nan=False),
        "ref": st.text(max_size=40),
    }
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.none() | ROWS, max_size=6), st.sampled_from(FORMATS))
def test_any_values_of_a_schema_are_typed_and_restore_byte_for_byte(rows, fmt):
    # fastavro writes the integers of logical types as they are
    values = [None if row is None else _wire(EVERYTHING, row, 7) for row in rows]
    data, writer = _write(fmt, values)
    assert writer.fallback is None
    assert _restored(fmt, data) == values


def test_a_schema_with_references_as_the_manifest_lookup_parses_it():
    named: dict[str, Any] = {}
    fastavro.parse_schema(
        {
            "type": "record",
            "name": "Money",
            "namespace": "shop",
            "fields": [
                {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
                {"name": "cents", "type": "long"},
            ],
        },
        named_schemas=named,
    )
    order = fastavro.parse_schema(
        {
            "type": "record",
            "name": "Order",
            "namespace": "shop",
            "fields": [{"name": "paid", "type": "Money"}, {"name": "refund", "type": ["null", "shop.Money"]}],
        },
        named_schemas=named,
    )
    lookup = {40: order}.__getitem__
    values = [
        _wire(order, {"paid": {"at": 5, "cents": 100}, "refund": None}, 40),
        _wire(order, {"paid": {"at": 6, "cents": 1}, "refund": {"at": 7, "cents": 1}}, 40),
    ]
    table = typed_avro_table(pa.array(values), lookup)
    assert table.schema.field("refund").type == pa.struct(
        [
            pa.field("at", pa.timestamp("ms", tz="UTC"), nullable=False),
            pa.field("cents", pa.int64(), nullable=False),
        ]
    )
    assert batch_values(table, lookup).to_pylist() == values
    for fmt in FORMATS:
        data, writer = _write(fmt, values, lookup=lookup)
        assert writer.fallback is None
        assert _restored(fmt, data, lookup=lookup) == values
