"""The AVRO container of typed columns from Avro values (formats/avro_columns.py has the rules):
the schema an AVRO object's typed columns are written under (io.kbackup.KafkaAvroValue, with the
logical types query engines read as timestamps, dates and decimals) and reading its blocks back
as typed columns.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import fastavro
import pyarrow as pa

from formats.avro_columns import AVRO_NAME, AVRO_NAMESPACE, MARKERS, SCHEMA_ID, arrow_type, plain_schema
from formats.json_columns import TOMBSTONE, Untypable


def avro_container_schema(schema: pa.Schema) -> dict[str, Any]:
    """The Avro schema of an AVRO object's typed columns (io.kbackup.KafkaAvroValue): the fields
    with the logical types that DuckDB and Spark read as timestamps, dates and decimals, every
    top-level field nullable; Untypable for a type without an Avro counterpart here."""
    counter = iter(range(1, 1 << 31))

    def nullable(kind: pa.DataType, is_nullable: bool) -> Any:
        plain = of(kind)
        return ["null", plain] if is_nullable and plain != "null" else plain

    def of(kind: pa.DataType) -> Any:
        simple = {
            pa.null(): "null",
            pa.bool_(): "boolean",
            pa.int32(): "int",
            pa.int64(): "long",
            pa.float32(): "float",
            pa.float64(): "double",
            pa.binary(): "bytes",
            pa.string(): "string",
        }
        if kind in simple:
            return simple[kind]
        if pa.types.is_date32(kind):
            return {"type": "int", "logicalType": "date"}
        if kind == pa.time32("ms"):
            return {"type": "int", "logicalType": "time-millis"}
        if kind == pa.time64("us"):
            return {"type": "long", "logicalType": "time-micros"}
        if pa.types.is_timestamp(kind) and kind.unit in ("ms", "us") and kind.tz in (None, "UTC"):
            unit = "millis" if kind.unit == "ms" else "micros"
            local = "" if kind.tz else "local-"
            return {"type": "long", "logicalType": f"{local}timestamp-{unit}"}
        if pa.types.is_decimal(kind):
            return {
                "type": "bytes",
                "logicalType": "decimal",
                "precision": kind.precision,
                "scale": kind.scale,
            }
        if pa.types.is_fixed_size_binary(kind):
            return {"type": "fixed", "name": f"Fixed{next(counter)}", "size": kind.byte_width}
        if pa.types.is_list(kind):
            return {"type": "array", "items": nullable(kind.value_type, kind.value_field.nullable)}
        if pa.types.is_map(kind):
            return {"type": "map", "values": nullable(kind.item_type, kind.item_field.nullable)}
        if pa.types.is_struct(kind):
            fields = [kind.field(i) for i in range(kind.num_fields)]
            return {
                "type": "record",
                "name": f"Record{next(counter)}",
                "fields": [{"name": f.name, "type": nullable(f.type, f.nullable)} for f in fields],
            }
        raise Untypable(f"no Avro type for {kind}")

    fields: list[dict[str, Any]] = [
        {"name": f.name, "type": nullable(f.type, True), "default": None}
        for f in schema
        if f.name not in MARKERS
    ]
    fields.append({"name": SCHEMA_ID, "type": ["null", "int"], "default": None})
    fields.append({"name": TOMBSTONE, "type": "boolean"})
    return {"type": "record", "name": AVRO_NAME, "namespace": AVRO_NAMESPACE, "fields": fields}


def container_batches(blocks: Iterator[Any], writer_schema: Any) -> Iterator[pa.RecordBatch]:
    """The typed columns of an AVRO object's blocks (fastavro.block_reader's), one batch a block:
    each body decoded with the plain container schema, so times come back as they were written."""
    parsed = fastavro.parse_schema(writer_schema)
    plain = plain_schema(parsed)
    struct = arrow_type(parsed)
    schema = pa.schema([struct.field(i) for i in range(struct.num_fields)])
    for block in blocks:
        body = block.bytes_
        stream = body if isinstance(body, io.BytesIO) else io.BytesIO(body)
        rows = [fastavro.schemaless_reader(stream, plain, None) for _ in range(block.num_records)]
        yield pa.RecordBatch.from_pylist(rows, schema=schema)
