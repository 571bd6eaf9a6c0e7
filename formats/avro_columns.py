"""Typed columns for Avro values: what value-only PARQUET and AVRO objects hold with
`value.converter=avro`, so that a query engine can select and sum the records' fields. The
design is formats/json_columns.py's (marker columns, the `Untypable` fallback, the round trip
checked before anything is written); what differs is where the schema comes from.

The rules:
- **Values.** Each value is in Confluent's wire format (formats/wire.py): magic byte 0, a 4-byte
  schema id, then the Avro binary body under that registry schema. An `AvroSchemaLookup` gives
  the fastavro-parsed writer schema of an id (references resolved by the caller; KeyError for an
  unknown id). The writer schema must be a record: its top-level fields are the columns.
- **Types** (`arrow_type`): record → struct, null/boolean/int/long/float/double/bytes/string →
  null/bool/int32/int64/float32/float64/binary/string, enum → string, fixed → fixed_size_binary,
  array → list, map → map<string, T>, a union of null and one type → that type (nullable); other
  unions cannot be typed. Logical types: date → date32, time-millis → time32[ms], time-micros →
  time64[us], timestamp-millis/-micros → timestamp[ms/us, UTC], local-timestamp-millis/-micros →
  timestamp[ms/us], decimal → decimal128 (decimal256 beyond 38 digits), uuid → string; other
  logical types are their underlying type. Values are decoded without fastavro's logical
  conversions (except decimal): a timestamp is its integer in the column's unit, a uuid its
  exact string, so every value fits and comes back to the same bytes.
- **Markers.** `_kbackup_schema_id` (int32) is each row's writer schema id, null for a tombstone;
  `_kbackup_tombstone` (bool, never null) is true for a null value, whose fields are all null.
- **Schema evolution.** An object whose values have several schema ids gets each id's columns
  unified (`pyarrow.unify_schemas`, permissive: int32 and int64 make int64, a struct gains the
  fields of both); a field that a version lacks is null in its rows, and every field nullable.
- **Restore** (`row_wire_values`, `batch_values`): a row is encoded with its own id's writer
  schema (fastavro's schemaless_writer, only that schema's fields) and prefixed with magic 0 and
  the same id, the original wire bytes. Restoring to another registry rewrites the ids afterwards
  (`formats.wire.rewrite_schema_ids`).
- **Fallback.** If a value is not in the wire format, an id is unknown, a writer schema is not a
  record or holds a type above that has no column, a field is named like a marker, the versions'
  columns cannot be unified, or any row would not encode back to exactly its value (prefix
  included), the whole object is written without typed columns: the `value` column of the
  values' bytes, as the JSON path does. One bad record costs its object's columns, never a record.

Pure: no Prefect, boto3 or confluent-kafka here.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import Any

import fastavro
import pyarrow as pa

from formats.errors import FormatError
from formats.json_columns import TOMBSTONE, Untypable
from formats.wire import PREFIX, schema_ids, wire_id, with_schema_id

__all__ = [
    "AVRO_NAME",
    "AVRO_NAMESPACE",
    "MARKERS",
    "SCHEMA_ID",
    "TAG",
    "TOMBSTONE",
    "AvroSchemaLookup",
    "SchemasNeeded",
    "Untypable",
    "arrow_type",
    "batch_values",
    "container_rows",
    "plain_schema",
    "row_wire_values",
    "typed_avro_table",
]

AvroSchemaLookup = Callable[[int], Any]
"""A schema id → its fastavro-parsed writer schema (KeyError for an unknown id)."""

TAG = b"avro"
"""The `kbackup` schema metadata (Parquet) of an object with typed Avro columns."""
SCHEMA_ID = "_kbackup_schema_id"
MARKERS = (SCHEMA_ID, TOMBSTONE)
AVRO_NAME = "KafkaAvroValue"
AVRO_NAMESPACE = "io.kbackup"


class SchemasNeeded(FormatError):
    """An object with typed Avro columns read without a schema lookup: its values cannot be
    encoded back without their writer schemas."""

    def __init__(self, object_key: str | None) -> None:
        self.object_key = object_key
        super().__init__(
            f"object {object_key or '(unnamed)'} holds Avro values as typed columns: reading it "
            "needs their writer schemas (CodecContext.avro_schemas), which a restore reads from "
            "the backup's manifests"
        )


# --- Avro schema → Arrow type ----------------------------------------------------------------

_PRIMITIVES = {
    "null": pa.null(),
    "boolean": pa.bool_(),
    "int": pa.int32(),
    "long": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
    "bytes": pa.binary(),
    "string": pa.string(),
}
_LOGICAL = {
    ("int", "date"): pa.date32(),
    ("int", "time-millis"): pa.time32("ms"),
    ("long", "time-micros"): pa.time64("us"),
    ("long", "timestamp-millis"): pa.timestamp("ms", tz="UTC"),
    ("long", "timestamp-micros"): pa.timestamp("us", tz="UTC"),
    ("long", "local-timestamp-millis"): pa.timestamp("ms"),
    ("long", "local-timestamp-micros"): pa.timestamp("us"),
    ("string", "uuid"): pa.string(),
}


def _nullable(schema: Any) -> bool:
    return schema == "null" or (isinstance(schema, list) and "null" in schema)


class _Types:
    """One walk over a schema: named types as they are defined, recursion refused."""

    def __init__(self, schema: Any) -> None:
        self.named: dict[str, Any] = (
            dict(schema.get("__named_schemas", {})) if isinstance(schema, dict) else {}
        )
        self.defining: set[str] = set()

    def field(self, name: str, schema: Any, nullable: bool | None = None) -> pa.Field:
        return pa.field(name, self.of(schema), nullable=_nullable(schema) if nullable is None else nullable)

    def of(self, schema: Any) -> pa.DataType:
        if isinstance(schema, list):
            branches = [branch for branch in schema if branch != "null"]
            if not branches:
                return pa.null()
            if len(branches) > 1 or len(schema) > 2:
                raise Untypable(f"a union of {len(schema)} types has no column type: {schema!r}"[:300])
            return self.of(branches[0])
        if isinstance(schema, str):
            if schema in _PRIMITIVES:
                return _PRIMITIVES[schema]
            if schema in self.defining:
                raise Untypable(f"type {schema} is recursive")
            if schema in self.named:
                return self.of(self.named[schema])
            raise Untypable(f"unknown Avro type {schema!r}")
        if not isinstance(schema, dict):
            raise Untypable(f"not an Avro schema: {schema!r}"[:300])
        kind = schema.get("type")
        logical = schema.get("logicalType")
        if kind in ("record", "error"):
            name = schema.get("name", "")
            self.named[name] = schema
            self.defining.add(name)
            try:
                return pa.struct([self.field(f["name"], f["type"]) for f in schema["fields"]])
            finally:
                self.defining.discard(name)
        if kind == "enum":
            self.named[schema.get("name", "")] = schema
            return pa.string()
        if kind == "fixed":
            self.named[schema.get("name", "")] = schema
            if logical == "decimal":
                return _decimal(schema)
            return pa.binary(int(schema["size"]))
        if kind == "array":
            return pa.list_(self.field("item", schema["items"]))
        if kind == "map":
            return pa.map_(pa.string(), self.field("value", schema["values"]))
        if kind == "bytes" and logical == "decimal":
            return _decimal(schema)
        if isinstance(kind, str) and isinstance(logical, str) and (kind, logical) in _LOGICAL:
            return _LOGICAL[(kind, logical)]
        return self.of(kind)  # a primitive, or a logical type this table does not know


def _decimal(schema: dict[str, Any]) -> pa.DataType:
    precision, scale = int(schema["precision"]), int(schema.get("scale", 0))
    if not 0 <= scale <= precision:
        raise Untypable(f"decimal({precision}, {scale}) has no column type")
    if precision <= 38:
        return pa.decimal128(precision, scale)
    if precision <= 76:
        return pa.decimal256(precision, scale)
    raise Untypable(f"decimal({precision}, {scale}) has more digits than a column holds")


def arrow_type(avro_schema: Any) -> pa.DataType:
    """The Arrow type of a (fastavro-parsed) Avro schema, or Untypable (see the module's rules).
    A union of null and one type is that type: the nullability is the field's."""
    return _Types(avro_schema).of(avro_schema)


def _columns(writer_schema: Any, schema_id: int) -> pa.Schema:
    """The columns of one writer schema: its record's fields, all nullable (tombstones)."""
    if not (isinstance(writer_schema, dict) and writer_schema.get("type") in ("record", "error")):
        raise Untypable(f"the writer schema of id {schema_id} is not a record")
    struct = arrow_type(writer_schema)
    fields = [struct.field(i).with_nullable(True) for i in range(struct.num_fields)]
    for field in fields:
        if field.name in MARKERS:
            raise Untypable(f"a field is named {field.name!r}, a column of its own")
    return pa.schema(fields)


def _all_nullable(kind: pa.DataType) -> pa.DataType:
    def field(f: pa.Field) -> pa.Field:
        return pa.field(f.name, _all_nullable(f.type), nullable=True)

    if pa.types.is_struct(kind):
        return pa.struct([field(kind.field(i)) for i in range(kind.num_fields)])
    if pa.types.is_map(kind):
        return pa.map_(kind.key_type, field(kind.item_field))
    if pa.types.is_list(kind):
        return pa.list_(field(kind.value_field))
    return kind


# --- decoding and encoding ------------------------------------------------------------------


def plain_schema(schema: Any) -> Any:
    """The schema parsed without its logical types except decimal: the same binary encoding,
    decoded to the integers and strings the columns hold. Named types defined elsewhere (a
    parsed schema's references, in its `__named_schemas`) are written out where first used, so
    the result stands alone."""
    named = schema.get("__named_schemas", {}) if isinstance(schema, dict) else {}
    defined: set[str] = set()

    def plain(node: Any) -> Any:
        if isinstance(node, str):
            if node in _PRIMITIVES or node in defined or node not in named:
                return node
            return plain(named[node])
        if isinstance(node, list):
            return [plain(item) for item in node]
        if not isinstance(node, dict):
            return node
        if node.get("type") in ("record", "error", "enum", "fixed") and "name" in node:
            defined.add(node["name"])
        out = {
            key: plain(value) if key in ("type", "items", "values", "fields") else value
            for key, value in node.items()
            if not key.startswith("__")
        }
        if out.get("logicalType", "decimal") != "decimal":
            del out["logicalType"]
        return out

    return fastavro.parse_schema(plain(schema))


class _Schemas:
    """Per id: the writer schema from the lookup (parsed once) and its plain form."""

    def __init__(self, lookup: AvroSchemaLookup) -> None:
        self.lookup = lookup
        self.writers: dict[int, Any] = {}
        self.plains: dict[int, Any] = {}

    def writer(self, schema_id: int) -> Any:
        schema = self.writers.get(schema_id)
        if schema is None:
            try:
                found = self.lookup(schema_id)
            except KeyError:
                raise Untypable(f"schema id {schema_id} is unknown") from None
            except Exception as exc:  # noqa: BLE001 - e.g. a schema that is not Avro
                raise Untypable(f"the schema of id {schema_id} cannot be used: {exc}") from None
            try:
                schema = self.writers[schema_id] = fastavro.parse_schema(found)
            except Exception as exc:  # noqa: BLE001 - fastavro's kinds of schema errors
                raise Untypable(f"the schema of id {schema_id} does not parse: {exc}") from None
        return schema

    def plain(self, schema_id: int) -> Any:
        schema = self.plains.get(schema_id)
        if schema is None:
            schema = self.plains[schema_id] = plain_schema(self.writer(schema_id))
        return schema


def _decoded(value: bytes, schema: Any) -> Any:
    stream = io.BytesIO(value)
    stream.seek(PREFIX)
    row = fastavro.schemaless_reader(stream, schema, None)
    if stream.tell() != len(value):
        raise ValueError(f"{len(value) - stream.tell()} bytes after the Avro body")
    return row


def typed_avro_table(values: pa.Array | pa.ChunkedArray, lookup: AvroSchemaLookup | None) -> pa.Table:
    """The object's values (wire format; nulls for tombstones) as typed columns plus the two
    marker columns, or Untypable naming the first reason they cannot be."""
    if lookup is None:
        raise Untypable("no schema registry lookup to decode the Avro values with")
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks else pa.array([], values.type)
    values = values.cast(pa.binary())
    ids, others = schema_ids(values)
    raw = values.to_pylist()
    if others:
        first = next(i for i, v in enumerate(raw) if v is not None and wire_id(v) is None)
        raise Untypable(f"record {first} is not in the Avro wire format (magic byte 0, schema id)")
    schemas = _Schemas(lookup)
    versions = [_columns(schemas.writer(schema_id), schema_id) for schema_id in sorted(ids)]
    try:
        columns = pa.unify_schemas(versions, promote_options="permissive") if versions else pa.schema([])
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise Untypable(f"the columns of schema ids {sorted(ids)} do not unify: {exc}") from None
    if len(versions) > 1:
        columns = pa.schema([pa.field(f.name, _all_nullable(f.type)) for f in columns])
    rows: list[dict[str, Any]] = []
    row_ids: list[int | None] = []
    for index, value in enumerate(raw):
        if value is None:
            rows.append({})
            row_ids.append(None)
            continue
        schema_id = int.from_bytes(value[1:PREFIX], "big", signed=True)
        try:
            row = _decoded(value, schemas.plain(schema_id))
        except Exception as exc:  # noqa: BLE001 - fastavro raises many kinds for bad input
            raise Untypable(f"record {index} does not decode with schema id {schema_id}: {exc}") from None
        rows.append(row)
        row_ids.append(schema_id)
    try:
        fields = pa.Table.from_pylist(rows, schema=columns).columns if len(columns) else []
    except pa.ArrowException as exc:
        raise Untypable(f"the decoded values do not fit their columns: {exc}") from None
    markers = [pa.field(SCHEMA_ID, pa.int32()), pa.field(TOMBSTONE, pa.bool_(), nullable=False)]
    table = pa.Table.from_arrays(
        [*fields, pa.chunked_array([pa.array(row_ids, pa.int32())]), pa.chunked_array([values.is_null()])],
        schema=pa.schema([*columns, *markers]),
    )
    try:
        back = _wire_values(container_rows(table), schemas)
    except Untypable:
        raise
    except Exception as exc:  # noqa: BLE001 - fastavro's errors for a row it cannot write
        raise Untypable(f"a row does not encode back: {exc}") from None
    for index, (value, again) in enumerate(zip(raw, back, strict=True)):
        if value != again:
            raise Untypable(f"record {index} would not encode back to its bytes")
    return table


# --- rows → wire values ----------------------------------------------------------------------


def _storage(kind: pa.DataType) -> pa.DataType:
    """The type whose Python values are what the plain schema encodes: times and dates their
    integers."""
    if pa.types.is_timestamp(kind) or pa.types.is_time64(kind):
        return pa.int64()
    if pa.types.is_date32(kind) or pa.types.is_time32(kind):
        return pa.int32()
    if pa.types.is_struct(kind):
        return pa.struct(
            [kind.field(i).with_type(_storage(kind.field(i).type)) for i in range(kind.num_fields)]
        )
    if pa.types.is_map(kind):
        return pa.map_(kind.key_type, kind.item_field.with_type(_storage(kind.item_type)))
    if pa.types.is_list(kind):
        return pa.list_(kind.value_field.with_type(_storage(kind.value_type)))
    return kind


def _converter(kind: pa.DataType) -> Callable[[Any], Any] | None:
    """What turns a Python value of `kind` (to_pylist's) into fastavro's: maps (lists of pairs)
    become dicts; None when nothing in `kind` needs it."""
    if pa.types.is_map(kind):
        item = _converter(kind.item_type)
        if item is None:
            return lambda v: None if v is None else dict(v)
        return lambda v: None if v is None else {key: item(value) for key, value in v}
    if pa.types.is_list(kind):
        element = _converter(kind.value_type)
        if element is None:
            return None
        return lambda v: None if v is None else [element(x) for x in v]
    if pa.types.is_struct(kind):
        fields = [kind.field(i) for i in range(kind.num_fields)]
        members = [(f.name, c) for f in fields if (c := _converter(f.type)) is not None]
        if not members:
            return None

        def struct(v: Any) -> Any:
            if v is None:
                return None
            for name, c in members:
                v[name] = c(v[name])
            return v

        return struct
    return None


def container_rows(table: pa.Table | pa.RecordBatch) -> list[dict[str, Any]]:
    """The rows of typed columns as fastavro writes them: times and dates as integers in their
    column's unit, maps as dicts (for the plain writer schema and for the AVRO container)."""
    schema = table.schema
    storage = pa.schema([f.with_type(_storage(f.type)) for f in schema])
    if storage != schema:
        table = table.cast(storage)
    rows = table.to_pylist()
    converters = [(f.name, c) for f in schema if (c := _converter(f.type)) is not None]
    if converters:
        for row in rows:
            for name, c in converters:
                row[name] = c(row[name])
    return rows


def _wire_values(rows: Sequence[dict[str, Any]], schemas: _Schemas) -> list[bytes | None]:
    values: list[bytes | None] = []
    for row in rows:
        if row.get(TOMBSTONE):
            values.append(None)
            continue
        schema_id = row[SCHEMA_ID]
        stream = io.BytesIO()
        fastavro.schemaless_writer(stream, schemas.plain(schema_id), row)
        values.append(with_schema_id(stream.getvalue(), schema_id))
    return values


def row_wire_values(
    rows: pa.RecordBatch | pa.Table | Sequence[dict[str, Any]], lookup: AvroSchemaLookup
) -> list[bytes | None]:
    """The wire values (None for tombstones) of rows of typed columns: each row encoded with the
    writer schema of its `_kbackup_schema_id` (only that schema's fields) after magic 0 and that
    id. Rows as dicts hold what `container_rows` gives (integer times, maps as dicts)."""
    if isinstance(rows, (pa.RecordBatch, pa.Table)):
        rows = container_rows(rows)
    return _wire_values(rows, _Schemas(lookup))


def batch_values(batch: pa.RecordBatch | pa.Table, lookup: AvroSchemaLookup) -> pa.Array:
    """A batch of typed columns as the binary wire values it restores to."""
    return pa.array(row_wire_values(batch, lookup), pa.binary())
