"""Typed columns for JSON values: what value-only PARQUET and AVRO objects hold with
`value.converter=json`, so that a query engine can select and sum the documents' fields.

The rules (docs/user-guide.md, "Querying a backup", states them for users):
- **Schema.** Inferred per object by pyarrow's JSON reader (`pyarrow.json.read_json`) over the
  object's values as newline-delimited JSON: numbers are `int64` (a column mixing integers and
  fractions is `double`), strings `string`, booleans `bool`, nested objects structs, arrays lists,
  a field that is null wherever it appears `null` (an array's elements: `string`). Strings are
  never read as timestamps (Arrow's reader would turn "2023-01-01" into a `timestamp[s]` and lose
  its spelling): the object is then read a second time with its inferred schema, those fields
  declared `string` (as it is when the reader's first arrays are invalid, see `_valid`).
- **Missing fields** are null in the rows that lack them. An explicit `null` member is kept apart
  from a missing one: `_kbackup_nulls` lists, per row, the JSON Pointers (RFC 6901) of the members
  whose value is `null` (an empty list for most rows). Null array elements keep their place.
- **Tombstones.** A null value is a row whose document fields are all null, `_kbackup_tombstone`
  true and `_kbackup_nulls` null; every other row has `_kbackup_tombstone` false (so `{}` is false
  with an empty list).
- **Restore.** A row becomes the document of its non-null members plus the listed nulls, written
  as compact JSON (`formats.codec.compact_json`): equal as a document to the value backed up
  (`json.loads` of both compare equal), not byte for byte (spacing and member order are the
  inferred schema's; an integer in a `double` column comes back as a float, 10 → 10.0).
- **Fallback.** Before an object is written typed, its rows are turned back into documents and
  compared with every value. If any value is not a JSON object (an array, a scalar, invalid JSON,
  an empty value), a field changes type between records, a number would not come back equal (an
  integer beyond 2^53 in a `double` column), a field is named `_kbackup_tombstone` or
  `_kbackup_nulls`, or the format cannot hold the schema (an empty object everywhere in Parquet, a
  field name that is not an Avro name in AVRO), the whole object is written as without typed
  columns: one `value` column with each value's bytes, exactly as consumed (a `string` column when
  every value is UTF-8 text, else `binary`), which restores byte for byte. One bad record costs
  its object's columns, never a record.

Pure: no Prefect, boto3 or confluent-kafka here.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from formats.codec import compact_json
from formats.errors import FormatError

TAG = b"json"
"""The `kbackup` schema metadata (Parquet) of an object with typed columns."""
TOMBSTONE = "_kbackup_tombstone"
NULLS = "_kbackup_nulls"
MARKERS = (TOMBSTONE, NULLS)


class Untypable(FormatError):
    """Why an object's values cannot be typed columns: never raised out of a codec, whose writer
    then keeps the values' bytes (and says why in its `fallback` attribute)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


# --- writing --------------------------------------------------------------------------------


def json_bytes(value: Any) -> bytes | None:
    """A record's value as the JSON bytes to type: bytes as they are, str encoded, a document
    (a per-record writer's dict) serialized."""
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return compact_json(value)


def typed_table(values: pa.Array | pa.ChunkedArray) -> pa.Table:
    """The object's values (binary, nulls for tombstones) as typed columns plus the two marker
    columns, or Untypable naming the first reason they cannot be."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    values = values.cast(pa.binary())
    raw = values.to_pylist()
    documents = [_document(value, index) for index, value in enumerate(raw)]
    lines = pc.replace_substring(pc.replace_substring(values, "\n", " "), "\r", " ")
    text = b"\n".join(b"{}" if line is None else line for line in lines.to_pylist()) + b"\n"
    table = _read(text, None)
    schema = _repaired(table.schema)
    if schema != table.schema or not _valid(table):
        table = _read(text, schema)
        if not _valid(table):
            raise Untypable(f"pyarrow's JSON reader built invalid arrays: {_valid(table, reason=True)}")
    if table.num_rows != len(raw):
        raise Untypable(f"the JSON reader found {table.num_rows} documents in {len(raw)} values")
    for name in MARKERS:
        if name in table.schema.names:
            raise Untypable(f"a field is named {name!r}, a column of its own")
    tombstones = values.is_null()
    table = table.append_column(
        pa.field(TOMBSTONE, pa.bool_(), nullable=False), pa.chunked_array([tombstones])
    )
    nulls = pa.array(
        [None if document is None else list(null_pointers(document)) for document in documents],
        pa.list_(pa.string()),
    )
    table = table.append_column(NULLS, pa.chunked_array([nulls]))
    for index, (document, row) in enumerate(zip(documents, table.to_pylist(), strict=True)):
        back = row_document(row)
        if back != document:
            raise Untypable(f"record {index} would not come back equal ({compact_json(back)[:200]!r})")
    return table


def _document(value: bytes | None, index: int) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        document = json.loads(value)
    except ValueError as exc:
        raise Untypable(f"record {index} is not JSON ({exc})") from None
    if not isinstance(document, dict):
        raise Untypable(f"record {index} is a JSON {type(document).__name__}, not an object")
    return document


def _read(text: bytes, schema: pa.Schema | None) -> pa.Table:
    try:
        return pj.read_json(
            io.BytesIO(text),
            read_options=pj.ReadOptions(use_threads=False, block_size=max(1 << 20, len(text) + 1)),
            parse_options=pj.ParseOptions(explicit_schema=schema),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise Untypable(str(exc)) from None


def _valid(table: pa.Table, reason: bool = False) -> Any:
    """Whether the reader's arrays are valid (or, with `reason`, what is wrong). pyarrow 26's
    reader loses nulls that come before an array's first typed element (`[null, 1]` holds one
    element instead of two) while it infers; with the schema declared it reads them right."""
    try:
        table.validate(full=True)
    except pa.ArrowInvalid as exc:
        return str(exc) if reason else False
    return "" if reason else True


def _repaired(schema: pa.Schema) -> pa.Schema:
    return pa.schema([field.with_type(_repaired_type(field.type)) for field in schema])


def _repaired_type(kind: pa.DataType) -> pa.DataType:
    """The type with every timestamp (inferred from a string) a string again, and the element
    type of an array that holds only nulls `string` (pyarrow cannot read `[null, null]` as a
    list of `null`)."""
    if pa.types.is_timestamp(kind):
        return pa.string()
    if pa.types.is_struct(kind):
        return pa.struct(
            [kind.field(i).with_type(_repaired_type(kind.field(i).type)) for i in range(kind.num_fields)]
        )
    if pa.types.is_list(kind):
        item = pa.string() if pa.types.is_null(kind.value_type) else _repaired_type(kind.value_type)
        return pa.list_(kind.value_field.with_type(item))
    return kind


def _escape(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def null_pointers(document: Any, prefix: str = "") -> Iterator[str]:
    """The JSON Pointers of the members of `document` (at any depth) whose value is null."""
    if isinstance(document, dict):
        for name, member in document.items():
            pointer = f"{prefix}/{_escape(name)}"
            if member is None:
                yield pointer
            else:
                yield from null_pointers(member, pointer)
    elif isinstance(document, list):
        for index, item in enumerate(document):
            yield from null_pointers(item, f"{prefix}/{index}")


def fallback_values(values: Sequence[pa.Array]) -> pa.Array:
    """The values of an object that is not typed, as its one `value` column: `string` when every
    value is UTF-8 text (a query engine's JSON functions read it), else `binary`."""
    joined = pa.concat_arrays([v.cast(pa.binary()) for v in values]) if values else pa.array([], pa.binary())
    try:
        return joined.cast(pa.string())
    except pa.ArrowInvalid:
        return joined


# --- reading --------------------------------------------------------------------------------


def _members(value: Any) -> Any:
    """The value without its null object members (nested too); null array elements stay."""
    if isinstance(value, dict):
        return {name: _members(member) for name, member in value.items() if member is not None}
    if isinstance(value, list):
        return [_members(item) for item in value]
    return value


def row_document(row: dict[str, Any]) -> dict[str, Any] | None:
    """The document of one row of typed columns (markers included), None for a tombstone."""
    if row.get(TOMBSTONE):
        return None
    document = _members({name: member for name, member in row.items() if name not in MARKERS})
    for pointer in row.get(NULLS) or ():
        *path, last = [_unescape(token) for token in pointer.split("/")[1:]]
        parent: Any = document
        for token in path:
            parent = parent[int(token)] if isinstance(parent, list) else parent[token]
        parent[last] = None
    return document


def row_values(rows: Sequence[dict[str, Any]]) -> list[bytes | None]:
    """The JSON values (compact JSON bytes, None for tombstones) of rows of typed columns."""
    values: list[bytes | None] = []
    for row in rows:
        document = row_document(row)
        values.append(None if document is None else compact_json(document))
    return values


def batch_values(batch: pa.RecordBatch) -> pa.Array:
    """A batch of typed columns as the binary JSON values it restores to."""
    return pa.array(row_values(batch.to_pylist()), pa.binary())


# --- AVRO -----------------------------------------------------------------------------------

AVRO_NAME = "KafkaJsonValue"
AVRO_NAMESPACE = "io.kbackup"
_AVRO_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def avro_schema(schema: pa.Schema) -> dict[str, Any]:
    """The Avro schema of typed columns (every document field nullable), or Untypable when a
    field's name is not an Avro name or its type has no Avro counterpart here."""
    counter = iter(range(1, 1 << 31))

    def field(name: str, kind: pa.DataType) -> dict[str, Any]:
        if not _AVRO_NAME.match(name):
            raise Untypable(f"field {name!r} is not an Avro name")
        return {"name": name, "type": nullable(kind), "default": None}

    def nullable(kind: pa.DataType) -> Any:
        plain = of(kind)
        return "null" if plain == "null" else ["null", plain]

    def of(kind: pa.DataType) -> Any:
        if pa.types.is_null(kind):
            return "null"
        if pa.types.is_boolean(kind):
            return "boolean"
        if pa.types.is_int64(kind):
            return "long"
        if pa.types.is_float64(kind):
            return "double"
        if pa.types.is_string(kind):
            return "string"
        if pa.types.is_list(kind):
            return {"type": "array", "items": nullable(kind.value_type)}
        if pa.types.is_struct(kind):
            return {
                "type": "record",
                "name": f"Object{next(counter)}",
                "fields": [field(kind.field(i).name, kind.field(i).type) for i in range(kind.num_fields)],
            }
        raise Untypable(f"no Avro type for {kind}")

    fields = [field(f.name, f.type) for f in schema if f.name not in MARKERS]
    fields.append({"name": TOMBSTONE, "type": "boolean"})
    fields.append({"name": NULLS, "type": ["null", {"type": "array", "items": "string"}]})
    return {"type": "record", "name": AVRO_NAME, "namespace": AVRO_NAMESPACE, "fields": fields}
