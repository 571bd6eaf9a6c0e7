"""AVRO: an Avro object container file (fastavro), envelope or value-only."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO

import fastavro
from fastavro.write import Writer

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
_CODECS = {"null": "null", "deflate": "deflate", "snappy": "snappy", "zstd": "zstandard"}


def _b(part: Any) -> bytes | None:
    return part.encode() if isinstance(part, str) else part


class _AvroWriter(ObjectWriter):
    def __init__(self, context: CodecContext, codec: str) -> None:
        super().__init__(context)
        self.buffer = io.BytesIO()
        schema = ENVELOPE_SCHEMA if context.envelope else VALUE_SCHEMA
        self.writer = Writer(self.buffer, schema, codec=_CODECS[codec])
        self.pending = 0

    @property
    def size_estimate(self) -> int:
        return self.buffer.tell() + self.pending

    def write(self, records: Sequence[Record]) -> None:
        write = self.writer.write
        if self.context.envelope:
            for record in records:
                key, value, headers, metadata = self.kept(record)
                write(
                    {
                        "key": _b(key),
                        "value": _b(value),
                        "headers": [{"key": n, "value": v} for n, v in headers],
                        "metadata": {
                            "topic": record.topic,
                            "partition": record.partition,
                            "offset": record.offset,
                            "timestamp": record.timestamp,
                            "timestamp_type": record.timestamp_type.label,
                        }
                        if metadata
                        else None,
                    }
                )
                self.pending += 64 + len(key or b"") + len(value or b"")
        else:
            for record in records:
                write({"value": _b(record.value)})
                self.pending += 16 + len(record.value or b"")
        self.writer.flush()
        self.pending = 0
        self.record_count += len(records)

    def finish(self) -> bytes:
        self.writer.flush()
        return self.buffer.getvalue()


class AvroCodec(Codec):
    spec = CodecSpec("AVRO", "avro", True, True, ("null", "deflate", "snappy", "zstd"), "deflate")

    def writer(self, context: CodecContext) -> ObjectWriter:
        return _AvroWriter(context, self.compression(context))

    def reader(self, data: bytes | BinaryIO, context: CodecContext) -> Iterator[Record]:
        index = 0
        try:
            reader = fastavro.reader(io.BytesIO(as_bytes(data)))
            fields = {f["name"] for f in reader.writer_schema.get("fields", [])}
            ours = reader.writer_schema.get("name") in ("io.kbackup.KafkaRecord", "KafkaRecord")
            shape = (
                "ours"
                if ours
                else "stream-reactor"
                if {"value", "metadata"} <= fields
                else (
                    "value"
                    if reader.writer_schema.get("name") in ("io.kbackup.KafkaValue", "KafkaValue")
                    else "row"
                )
            )
            for row in reader:
                yield _record(row, shape, context, index)
                index += 1
        except CorruptObjectError:
            raise
        except Exception as exc:  # noqa: BLE001 - fastavro raises many kinds for bad input
            raise CorruptObjectError(context.object_key, index, f"{type(exc).__name__}: {exc}") from exc


def _record(row: dict[str, Any], shape: str, context: CodecContext, index: int) -> Record:
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
    if shape == "value":
        return value_only_record(row["value"], context, index)
    return value_only_record(compact_json(row), context, index)
