"""AVRO: an Avro object container file (fastavro), envelope or value-only."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO

import fastavro
import pyarrow as pa
from fastavro.write import Writer

from formats.avro_binary import encode_columns, encode_envelopes, encode_value_columns
from formats.codec import (
    Codec,
    CodecContext,
    CodecSpec,
    ObjectWriter,
    as_bytes,
    compact_json,
    stream_reactor_record,
    value_only_record,
)
from formats.envelope import Record, TimestampType
from formats.errors import CorruptObjectError

if TYPE_CHECKING:
    from fastavro.types import AvroMessage

ENVELOPE_SCHEMA = fastavro.parse_schema(
    {
        "type": "record",
        "name": "KafkaRecord",
        "namespace": "io.kbackup",
        "fields": [
            {"name": "key", "type": ["null", "bytes"]},
            {"name": "value", "type": ["null", "bytes"]},
            {
                "name": "headers",
                "type": {
                    "type": "array",
                    "items": {
                        "type": "record",
                        "name": "Header",
                        "fields": [
                            {"name": "key", "type": "string"},
                            {"name": "value", "type": ["null", "bytes"]},
                        ],
                    },
                },
            },
            {
                "name": "metadata",
                "type": [
                    "null",
                    {
                        "type": "record",
                        "name": "Metadata",
                        "fields": [
                            {"name": "topic", "type": "string"},
                            {"name": "partition", "type": "int"},
                            {"name": "offset", "type": "long"},
                            {"name": "timestamp", "type": ["null", "long"]},
                            {"name": "timestamp_type", "type": "string"},
                        ],
                    },
                ],
            },
        ],
    }
)
VALUE_SCHEMA = fastavro.parse_schema(
    {
        "type": "record",
        "name": "KafkaValue",
        "namespace": "io.kbackup",
        "fields": [{"name": "value", "type": ["null", "bytes"]}],
    }
)
# The default codec is zstd at level 1, chosen by bench/avro_codecs.py (bench/README.md, "AVRO
# codecs"): it encoded 1.3-3x faster than deflate level 1 into objects 13-21 % smaller, about as
# fast as snappy into objects about half the size (snappy barely compresses hex or base64
# payloads), and decoded about as fast as null. Levels when 'compression.level' is not given:
# zstd's own default (3) encoded 1 KB values at half the speed of level 1 into objects no smaller;
# zlib's default (6) ran at 1/3 to 2/3 of level 1's speed for objects 3-17 % smaller. A backup is
# usually CPU-bound. Files are read with the codec in their header, so objects written with any
# codec restore.
DEFAULT_LEVELS = {"deflate": 1, "zstd": 1}
_CODECS = {"null": "null", "deflate": "deflate", "snappy": "snappy", "zstd": "zstandard"}


def _b(part: Any) -> bytes | None:
    return part.encode() if isinstance(part, str) else part


class _Block:
    """What fastavro's Writer.write_block reads from a block: its count and its raw body."""

    codec = "null"

    def __init__(self, num_records: int, body: bytes) -> None:
        self.num_records = num_records
        self.bytes_ = io.BytesIO(body)


class _AvroWriter(ObjectWriter):
    def __init__(self, context: CodecContext, codec: str) -> None:
        super().__init__(context)
        self.buffer = io.BytesIO()
        schema = ENVELOPE_SCHEMA if context.envelope else VALUE_SCHEMA
        level = context.compression_level
        if level is None:
            level = DEFAULT_LEVELS.get(codec)
        self.writer = Writer(self.buffer, schema, codec=_CODECS[codec], compression_level=level)

    @property
    def size_estimate(self) -> int:
        return self.buffer.tell()

    def write(self, records: Sequence[Record]) -> None:
        if not records:
            return
        ctx = self.context
        if ctx.envelope:
            body = encode_envelopes(
                records, ctx.envelope_key, ctx.envelope_value, ctx.envelope_headers, ctx.envelope_metadata
            )
            self.writer.write_block(_Block(len(records), body))
        else:
            for record in records:
                self.writer.write({"value": _b(record.value)})
            self.writer.flush()
        self.record_count += len(records)

    def write_columns(self, batch: pa.RecordBatch) -> None:
        """One block per batch, its body encoded from the columns (formats.avro_binary)."""
        count = batch.num_rows
        if not count:
            return
        ctx = self.context
        if ctx.envelope:
            body = encode_columns(
                batch,
                ctx.topic,
                ctx.partition,
                ctx.envelope_key,
                ctx.envelope_value,
                ctx.envelope_headers,
                ctx.envelope_metadata,
            )
        else:
            body = encode_value_columns(batch.column("value"))
        self.writer.write_block(_Block(count, body))
        self.record_count += count

    def finish(self) -> bytes:
        self.writer.flush()
        return self.buffer.getvalue()


class AvroCodec(Codec):
    spec = CodecSpec("AVRO", "avro", True, True, ("null", "deflate", "snappy", "zstd"), "zstd")

    def writer(self, context: CodecContext) -> ObjectWriter:
        return _AvroWriter(context, self.compression(context))

    def reader(self, data: bytes | BinaryIO, context: CodecContext) -> Iterator[Record]:
        index = 0
        try:
            reader = fastavro.reader(io.BytesIO(as_bytes(data)))
            schema = reader.writer_schema
            if not isinstance(schema, dict):
                raise TypeError(f"unsupported writer schema {schema!r}: a primitive type name or a union")
            fields = {f["name"] for f in schema.get("fields", [])}
            ours = schema.get("name") in ("io.kbackup.KafkaRecord", "KafkaRecord")
            shape = (
                "ours"
                if ours
                else "stream-reactor"
                if {"value", "metadata"} <= fields
                else ("value" if schema.get("name") in ("io.kbackup.KafkaValue", "KafkaValue") else "row")
            )
            for row in reader:
                yield _record(row, shape, context, index)
                index += 1
        except CorruptObjectError:
            raise
        except Exception as exc:  # noqa: BLE001 - fastavro raises many kinds for bad input
            raise CorruptObjectError(context.object_key, index, f"{type(exc).__name__}: {exc}") from exc


def _record(row: AvroMessage, shape: str, context: CodecContext, index: int) -> Record:
    if shape == "row":
        return value_only_record(compact_json(row), context, index)
    if not isinstance(row, dict):
        # the other shapes come from record schemas, whose rows fastavro reads as dicts
        raise TypeError(f"a {shape} row is a {type(row).__name__}, not a record")
    if shape == "ours":
        metadata = row["metadata"] or {}
        return Record(
            row["key"],
            row["value"],
            tuple((h["key"], h["value"]) for h in row["headers"]),
            metadata.get("topic", context.topic),
            metadata.get("partition", context.partition),
            metadata.get("offset", index),
            metadata.get("timestamp"),
            TimestampType.from_label(metadata["timestamp_type"])
            if metadata
            else TimestampType.NO_TIMESTAMP_TYPE,
        )
    if shape == "stream-reactor":
        return stream_reactor_record(row, context)
    return value_only_record(row["value"], context, index)
