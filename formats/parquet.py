"""PARQUET: one row per record (pyarrow), envelope as columns with `metadata` a struct and
headers a list of structs; batches are converted column-wise. Value-only objects with
`value.converter=json` hold the documents' fields as typed columns (formats/json_columns.py),
with `value.converter=avro` the Avro records' fields (formats/avro_columns.py, schema metadata
`kbackup: avro`; reading them back needs `CodecContext.avro_schemas`)."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Sequence
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from formats.avro_columns import TAG as AVRO_TAG
from formats.avro_columns import SchemasNeeded, typed_avro_table
from formats.avro_columns import batch_values as avro_batch_values
from formats.avro_columns import row_wire_values as avro_row_values
from formats.codec import (
    Codec,
    CodecContext,
    CodecSpec,
    ObjectWriter,
    as_bytes,
    compact_json,
    envelope_record,
    stream_reactor_record,
    undecodable_record,
    value_only_record,
)
from formats.columns import DECODE_BATCH, DECODED, decoded_batches
from formats.envelope import Record, TimestampType
from formats.errors import CorruptObjectError
from formats.json_columns import TAG as JSON_TAG
from formats.json_columns import Untypable, batch_values, fallback_values, json_bytes, row_values, typed_table

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


LABELS = pa.array([TimestampType(t).label for t in range(3)], pa.string())
"""The timestamp types' labels, indexed by their number (a `take` maps a type column to them)."""

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

    def write_columns(self, batch: pa.RecordBatch) -> None:
        """The batch's columns straight into the envelope (or value-only) columns."""
        count = batch.num_rows
        if not count:
            return
        ctx = self.context
        if not ctx.envelope:
            columns = [batch.column("value")]
        else:
            headers = batch.column("headers")
            if not ctx.envelope_headers:
                headers = pa.ListArray.from_arrays(
                    pa.array(np.zeros(count + 1, np.int32)), pa.array([], HEADER)
                )
            if ctx.envelope_metadata:
                metadata = pa.StructArray.from_arrays(
                    [
                        pa.repeat(pa.scalar(ctx.topic, pa.string()), count),
                        pa.repeat(pa.scalar(ctx.partition, pa.int32()), count),
                        batch.column("offset"),
                        batch.column("timestamp"),
                        LABELS.take(batch.column("timestamp_type")),
                    ],
                    fields=list(METADATA),
                )
            else:
                metadata = pa.nulls(count, METADATA)
            nulls = pa.nulls(count, pa.binary())
            columns = [
                batch.column("key") if ctx.envelope_key else nulls,
                batch.column("value") if ctx.envelope_value else nulls,
                headers,
                metadata,
            ]
        self.writer.write_batch(pa.RecordBatch.from_arrays(columns, schema=self.schema))
        self.record_count += count

    def finish(self) -> bytes:
        self.writer.close()
        return self.buffer.getvalue()


class _TypedParquetWriter(ObjectWriter):
    """Value-only objects with typed columns (`value.converter=json` or `avro`): the values are
    kept until finish(), which types them with `typing` (formats/json_columns.py's typed_table,
    formats/avro_columns.py's typed_avro_table) and writes the columns tagged `tag`, or the
    `value` column when the values cannot be typed. The size rule counts the values' bytes."""

    def __init__(
        self,
        context: CodecContext,
        compression: str,
        typing: Callable[[pa.ChunkedArray], pa.Table] = typed_table,
        tag: bytes = JSON_TAG,
    ) -> None:
        super().__init__(context)
        self.compression = compression
        self.typing = typing
        self.tag = tag
        self.values: list[pa.Array] = []
        self.size = 0
        self.fallback: str | None = None
        """Why the last finish() wrote the values' bytes instead of typed columns (None: typed)."""

    @property
    def size_estimate(self) -> int:
        return self.size

    def _add(self, values: pa.Array) -> None:
        self.values.append(values)
        self.size += int(pc.sum(pc.binary_length(values)).as_py() or 0)
        self.record_count += len(values)

    def write(self, records: Sequence[Record]) -> None:
        if records:
            self._add(pa.array([json_bytes(r.value) for r in records], pa.binary()))

    def write_columns(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows:
            self._add(batch.column("value"))

    def finish(self) -> bytes:
        level = self.context.compression_level
        try:
            table = self.typing(pa.chunked_array(self.values, pa.binary()))
            buffer = io.BytesIO()
            pq.write_table(
                table.replace_schema_metadata({b"kbackup": self.tag}),
                buffer,
                compression=self.compression,
                compression_level=level,
            )
            self.fallback = None
            return buffer.getvalue()
        except (Untypable, pa.ArrowException) as exc:
            self.fallback = str(exc)
        values = fallback_values(self.values)
        buffer = io.BytesIO()
        pq.write_table(
            pa.table([values], schema=pa.schema([("value", values.type)], metadata={b"kbackup": b"value"})),
            buffer,
            compression=self.compression,
            compression_level=level,
            use_dictionary=False,
            write_statistics=False,
        )
        return buffer.getvalue()


class ParquetCodec(Codec):
    spec = CodecSpec("PARQUET", "parquet", True, True, ("snappy", "zstd", "gzip", "lz4", "none"), "zstd")

    def writer(self, context: CodecContext) -> ObjectWriter:
        if not context.envelope and context.value_converter == "json":
            return _TypedParquetWriter(context, self.compression(context))
        if not context.envelope and context.value_converter == "avro":
            lookup = context.avro_schemas
            return _TypedParquetWriter(
                context, self.compression(context), lambda values: typed_avro_table(values, lookup), AVRO_TAG
            )
        return _ParquetWriter(context, self.compression(context))

    def read_columns(self, data: bytes | BinaryIO, context: CodecContext) -> Iterator[pa.RecordBatch]:
        """Our own objects (envelope or value-only) map column to column; other shapes (Stream
        Reactor's, plain rows) go record by record."""
        try:
            parquet = pq.ParquetFile(io.BytesIO(as_bytes(data)))
            tag = (parquet.schema_arrow.metadata or {}).get(b"kbackup")
        except Exception as exc:  # noqa: BLE001
            raise undecodable_record(context, 0, exc) from exc
        if tag not in (b"envelope", b"value", JSON_TAG, AVRO_TAG):
            yield from decoded_batches(self._records(parquet, context))
            return
        lookup = context.avro_schemas
        if tag == AVRO_TAG and lookup is None:
            raise SchemasNeeded(context.object_key)
        index = 0
        try:
            for batch in parquet.iter_batches(batch_size=DECODE_BATCH):
                if tag == b"envelope":
                    yield _envelope_columns(batch, context, index)
                elif tag == JSON_TAG:
                    yield _value_columns(batch_values(batch), context, index)
                elif tag == AVRO_TAG and lookup is not None:
                    yield _value_columns(avro_batch_values(batch, lookup), context, index)
                else:
                    yield _value_columns(batch.column("value"), context, index)
                index += batch.num_rows
        except CorruptObjectError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise undecodable_record(context, index, exc) from exc

    def reader(self, data: bytes | BinaryIO, context: CodecContext) -> Iterator[Record]:
        try:
            parquet = pq.ParquetFile(io.BytesIO(as_bytes(data)))
        except Exception as exc:  # noqa: BLE001
            raise undecodable_record(context, 0, exc) from exc
        yield from self._records(parquet, context)

    def _records(self, parquet: pq.ParquetFile, context: CodecContext) -> Iterator[Record]:
        try:
            schema = parquet.schema_arrow
        except Exception as exc:  # noqa: BLE001
            raise undecodable_record(context, 0, exc) from exc
        names = set(schema.names)
        tag = (schema.metadata or {}).get(b"kbackup")
        lookup = context.avro_schemas
        if tag == AVRO_TAG and lookup is None:
            raise SchemasNeeded(context.object_key)
        index = 0
        try:
            for batch in parquet.iter_batches(batch_size=4096):
                if tag == b"envelope" and batch.column("metadata").null_count == 0:
                    for record in _envelope_records(batch):
                        yield record
                        index += 1
                    continue
                if tag == JSON_TAG:
                    for value in row_values(batch.to_pylist()):
                        yield value_only_record(value, context, index)
                        index += 1
                    continue
                if tag == AVRO_TAG and lookup is not None:
                    for value in avro_row_values(batch, lookup):
                        yield value_only_record(value, context, index)
                        index += 1
                    continue
                for row in batch.to_pylist():
                    yield _record(row, tag, names, context, index)
                    index += 1
        except CorruptObjectError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise undecodable_record(context, index, exc) from exc


def _indexes(start: int, count: int) -> pa.Array:
    return pa.array(np.arange(start, start + count, dtype=np.int64))


def _value_columns(values: pa.Array, context: CodecContext, start: int) -> pa.RecordBatch:
    """Value-only records as DECODED: offset = index in the object, no key, headers or timestamp."""
    count = len(values)
    return pa.RecordBatch.from_arrays(
        [
            _indexes(start, count),
            pa.nulls(count, pa.int64()),
            pa.repeat(pa.scalar(0, pa.int8()), count),
            pa.nulls(count, pa.binary()),
            values.cast(pa.binary()),
            pa.ListArray.from_arrays(pa.array(np.zeros(count + 1, np.int32)), pa.array([], HEADER)),
            pa.repeat(pa.scalar(context.topic, pa.string()), count),
            pa.repeat(pa.scalar(context.partition, pa.int32()), count),
        ],
        schema=DECODED,
    )


def _envelope_columns(batch: pa.RecordBatch, context: CodecContext, start: int) -> pa.RecordBatch:
    """One batch of our envelopes as DECODED, what the per-record reader gives: a null metadata
    means the context's topic and partition, offset = index in the object, no timestamp; null
    headers mean none."""
    count = batch.num_rows
    metadata = batch.column("metadata")
    labels = metadata.field("timestamp_type")
    types = pc.index_in(labels, value_set=LABELS)
    present = metadata.is_valid()
    unknown = pc.and_(present, types.is_null())
    if pc.any(unknown).as_py():
        first = int(np.flatnonzero(unknown.to_numpy(zero_copy_only=False))[0])
        try:
            TimestampType.from_label(labels[first].as_py())
        except ValueError as exc:
            raise CorruptObjectError(context.object_key, start + first, f"ValueError: {exc}") from exc
    headers = batch.column("headers")
    if headers.null_count:
        headers = pc.if_else(headers.is_valid(), headers, pa.scalar([], headers.type))
    if headers.flatten().null_count:
        first = next(i for i, h in enumerate(headers.to_pylist()) if h is not None and None in h)
        raise CorruptObjectError(context.object_key, start + first, "a header is null")
    if metadata.null_count:
        offset = pc.if_else(present, metadata.field("offset"), _indexes(start, count))
        timestamp = pc.if_else(present, metadata.field("timestamp"), pa.scalar(None, pa.int64()))
        types = pc.if_else(present, types, pa.scalar(0, types.type))
        topic = pc.if_else(present, metadata.field("topic"), pa.scalar(context.topic, pa.string()))
        partition = pc.if_else(present, metadata.field("partition"), pa.scalar(context.partition, pa.int32()))
    else:
        offset = metadata.field("offset")
        timestamp = metadata.field("timestamp")
        topic = metadata.field("topic")
        partition = metadata.field("partition")
    return pa.RecordBatch.from_arrays(
        [
            offset.cast(pa.int64()),
            timestamp.cast(pa.int64()),
            types.cast(pa.int8()),
            batch.column("key").cast(pa.binary()),
            batch.column("value").cast(pa.binary()),
            headers.cast(DECODED.field("headers").type),
            topic.cast(pa.string()),
            partition.cast(pa.int32()),
        ],
        schema=DECODED,
    )


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
        metadata = row["metadata"]  # read first, as before: the first missing field is named
        return envelope_record(
            row["key"],
            row["value"],
            tuple((h["key"], h["value"]) for h in row["headers"] or ()),
            metadata,
            context,
            index,
        )
    if tag == b"value":
        value = row["value"]  # a string column: the values of a JSON object that fell back
        return value_only_record(value.encode() if isinstance(value, str) else value, context, index)
    if {"value", "metadata"} <= names:
        return stream_reactor_record(row, context)
    return value_only_record(compact_json(row), context, index)
