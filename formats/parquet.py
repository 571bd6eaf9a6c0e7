"""PARQUET: one row per record (pyarrow), envelope as columns with `metadata` a struct and
headers a list of structs; batches are converted column-wise."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

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

HEADER = pa.struct([("key", pa.string()), ("value", pa.binary())])
METADATA = pa.struct(
    [
        ("topic", pa.string()),
        ("partition", pa.int32()),
        ("offset", pa.int64()),
        ("timestamp", pa.int64()),
        ("timestamp_type", pa.string()),
    ]
)
ENVELOPE = pa.schema(
    [("key", pa.binary()), ("value", pa.binary()), ("headers", pa.list_(HEADER)), ("metadata", METADATA)],
    metadata={b"kbackup": b"envelope"},
)
VALUE_ONLY = pa.schema([("value", pa.binary())], metadata={b"kbackup": b"value"})


_DICTIONARY_COLUMNS = ["headers.list.element.key", "metadata.topic", "metadata.timestamp_type"]
_STATISTICS_COLUMNS = ["metadata.partition", "metadata.offset", "metadata.timestamp"]


class _ParquetWriter(ObjectWriter):
    def __init__(self, context: CodecContext, compression: str) -> None:
        super().__init__(context)
        self.buffer = io.BytesIO()
        self.schema = ENVELOPE if context.envelope else VALUE_ONLY
        self.writer = pq.ParquetWriter(
            self.buffer,
            self.schema,
            compression=compression,
            compression_level=context.compression_level,
            # Keys and values are mostly unique: a dictionary would be built and thrown away for
            # every page, and min/max statistics over them help no reader.
            use_dictionary=_DICTIONARY_COLUMNS if context.envelope else False,
            write_statistics=_STATISTICS_COLUMNS if context.envelope else False,
        )

    @property
    def size_estimate(self) -> int:
        return self.buffer.tell()

    def write(self, records: Sequence[Record]) -> None:
        ctx = self.context
        none = [None] * len(records)
        values = pa.array(
            [r.value for r in records] if ctx.envelope_value or not ctx.envelope else none, pa.binary()
        )
        if not ctx.envelope:
            batch = pa.RecordBatch.from_arrays([values], schema=self.schema)
        else:
            keys = pa.array([r.key for r in records] if ctx.envelope_key else none, pa.binary())
            headers = pa.array(
                [r.headers for r in records] if ctx.envelope_headers else [()] * len(records),
                pa.list_(HEADER),
            )
            if ctx.envelope_metadata:
                metadata = pa.StructArray.from_arrays(
                    [
                        pa.array([r.topic for r in records], pa.string()),
                        pa.array([r.partition for r in records], pa.int32()),
                        pa.array([r.offset for r in records], pa.int64()),
                        pa.array([r.timestamp for r in records], pa.int64()),
                        pa.array([r.timestamp_type.label for r in records], pa.string()),
                    ],
                    fields=list(METADATA),
                )
            else:
                metadata = pa.nulls(len(records), METADATA)
            batch = pa.RecordBatch.from_arrays([keys, values, headers, metadata], schema=self.schema)
        self.writer.write_batch(batch)
        self.record_count += len(records)

    def finish(self) -> bytes:
        self.writer.close()
        return self.buffer.getvalue()


class ParquetCodec(Codec):
    spec = CodecSpec("PARQUET", "parquet", True, True, ("snappy", "zstd", "gzip", "lz4", "none"), "zstd")

    def writer(self, context: CodecContext) -> ObjectWriter:
        return _ParquetWriter(context, self.compression(context))

    def reader(self, data: bytes | BinaryIO, context: CodecContext) -> Iterator[Record]:
        index = 0
        try:
            parquet = pq.ParquetFile(io.BytesIO(as_bytes(data)))
            schema = parquet.schema_arrow
            names = set(schema.names)
            tag = (schema.metadata or {}).get(b"kbackup")
            for batch in parquet.iter_batches(batch_size=4096):
                if tag == b"envelope" and batch.column("metadata").null_count == 0:
                    for record in _envelope_records(batch):
                        yield record
                        index += 1
                    continue
                for row in batch.to_pylist():
                    yield _record(row, tag, names, context, index)
                    index += 1
        except CorruptObjectError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise CorruptObjectError(context.object_key, index, f"{type(exc).__name__}: {exc}") from exc


def _envelope_records(batch: pa.RecordBatch) -> Iterator[Record]:
    """Column-wise decoding of one batch of envelopes whose metadata are all present."""
    headers = batch.column("headers")
    header_offsets = headers.offsets.to_pylist()
    header_items = headers.values
    header_names = header_items.field("key").to_pylist()
    header_values = header_items.field("value").to_pylist()
    header_pairs = list(zip(header_names, header_values, strict=True))
    header_valid = headers.is_valid().to_pylist() if headers.null_count else None
    metadata = batch.column("metadata")
    labels = {
        label: TimestampType.from_label(label) for label in set(metadata.field("timestamp_type").to_pylist())
    }
    rows = zip(
        batch.column("key").to_pylist(),
        batch.column("value").to_pylist(),
        metadata.field("topic").to_pylist(),
        metadata.field("partition").to_pylist(),
        metadata.field("offset").to_pylist(),
        metadata.field("timestamp").to_pylist(),
        metadata.field("timestamp_type").to_pylist(),
        strict=True,
    )
    for i, (key, value, topic, partition, offset, timestamp, label) in enumerate(rows):
        if header_valid is not None and not header_valid[i]:
            record_headers: tuple = ()
        else:
            record_headers = tuple(header_pairs[header_offsets[i] : header_offsets[i + 1]])
        yield Record(key, value, record_headers, topic, partition, offset, timestamp, labels[label])


def _record(
    row: dict[str, Any], tag: bytes | None, names: set[str], context: CodecContext, index: int
) -> Record:
    if tag == b"envelope":
        metadata = row["metadata"]
        return Record(
            row["key"],
            row["value"],
            tuple((h["key"], h["value"]) for h in row["headers"] or ()),
            metadata["topic"] if metadata else context.topic,
            metadata["partition"] if metadata else context.partition,
            metadata["offset"] if metadata else index,
            metadata["timestamp"] if metadata else None,
            TimestampType.from_label(metadata["timestamp_type"])
            if metadata
            else TimestampType.NO_TIMESTAMP_TYPE,
        )
    if tag == b"value":
        return value_only_record(row["value"], context, index)
    if {"value", "metadata"} <= names:
        return stream_reactor_record(row, context)
    return value_only_record(compact_json(row), context, index)
