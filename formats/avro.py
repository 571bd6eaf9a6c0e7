"""AVRO: an Avro object container file (fastavro), envelope or value-only. Value-only objects
with `value.converter=json` hold the documents' fields as typed fields, their Avro schema derived
from the Arrow schema pyarrow's JSON reader inferred (formats/json_columns.py); with
`value.converter=avro` the registry records' fields, as io.kbackup.KafkaAvroValue
(formats/avro_columns.py; reading them back needs `CodecContext.avro_schemas`)."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterator, Sequence
from itertools import chain
from operator import itemgetter
from typing import TYPE_CHECKING, Any, BinaryIO

import fastavro
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from fastavro.schema import to_parsing_canonical_form
from fastavro.write import Writer

from formats import avro_columns, avro_container
from formats.avro_binary import decode_envelopes, encode_columns, encode_envelopes, encode_value_columns
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
from formats.columns import DECODE_BATCH, DECODED, HEADER, decoded_batches
from formats.envelope import Record, TimestampType
from formats.errors import CorruptObjectError
from formats.json_columns import (
    AVRO_NAME,
    AVRO_NAMESPACE,
    Untypable,
    avro_schema,
    json_bytes,
    row_document,
    typed_table,
)

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
_ENVELOPE_CANONICAL = to_parsing_canonical_form(ENVELOPE_SCHEMA)
"""The schema formats.avro_binary.decode_envelopes decodes; other writer schemas of that name go
through fastavro's rows."""
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


def sync_marker(topic: str, partition: int, first_offset: int | None) -> bytes:
    """The 16-byte sync marker of an object, derived from where it starts rather than random
    (fastavro's default): the same records then encode to the same bytes, so a retried export's
    upload of an object is identical to the first and not a conflict. A marker only needs to be
    unlikely inside the data."""
    start = "" if first_offset is None else str(first_offset)
    return hashlib.sha256(f"kbackup avro\x00{topic}\x00{partition}\x00{start}".encode()).digest()[:16]


class _AvroWriter(ObjectWriter):
    def __init__(self, context: CodecContext, codec: str) -> None:
        super().__init__(context)
        self.buffer = io.BytesIO()
        self.schema = ENVELOPE_SCHEMA if context.envelope else VALUE_SCHEMA
        self.codec = codec
        self.level = context.compression_level
        if self.level is None:
            self.level = DEFAULT_LEVELS.get(codec)
        self._writer: Writer | None = None

    def _open(self, first_offset: int | None) -> Writer:
        """fastavro's Writer, made at the first records (it writes the header, sync marker
        included, as it is made)."""
        if self._writer is None:
            self._writer = Writer(
                self.buffer,
                self.schema,
                codec=_CODECS[self.codec],
                compression_level=self.level,
                sync_marker=sync_marker(self.context.topic, self.context.partition, first_offset),
            )
        return self._writer

    @property
    def size_estimate(self) -> int:
        return self.buffer.tell()

    def write(self, records: Sequence[Record]) -> None:
        if not records:
            return
        ctx = self.context
        writer = self._open(records[0].offset)
        if ctx.envelope:
            body = encode_envelopes(
                records, ctx.envelope_key, ctx.envelope_value, ctx.envelope_headers, ctx.envelope_metadata
            )
            writer.write_block(_Block(len(records), body))
        else:
            for record in records:
                writer.write({"value": _b(record.value)})
            writer.flush()
        self.record_count += len(records)

    def write_columns(self, batch: pa.RecordBatch) -> None:
        """One block per batch, its body encoded from the columns (formats.avro_binary)."""
        count = batch.num_rows
        if not count:
            return
        ctx = self.context
        writer = self._open(batch.column("offset")[0].as_py())
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
        writer.write_block(_Block(count, body))
        self.record_count += count

    def finish(self) -> bytes:
        self._open(None).flush()
        return self.buffer.getvalue()


def _json_rows(table: pa.Table) -> list[dict[str, Any]]:
    return table.to_pylist()


class _TypedAvroWriter(_AvroWriter):
    """Value-only objects with typed fields (`value.converter=json` or `avro`): the values are
    kept until finish(), which types them with `typing` (formats/json_columns.py's typed_table,
    formats/avro_columns.py's typed_avro_table) and writes the table's `rows` as records of the
    Avro schema `schema` gives for it, or writes io.kbackup.KafkaValue records when the values
    cannot be typed. The size rule counts the values' bytes."""

    def __init__(
        self,
        context: CodecContext,
        codec: str,
        typing: Callable[[pa.ChunkedArray], pa.Table] = typed_table,
        schema: Callable[[pa.Schema], dict[str, Any]] = avro_schema,
        rows: Callable[[pa.Table], list[dict[str, Any]]] = _json_rows,
    ) -> None:
        super().__init__(context, codec)
        self.typing = typing
        self.typed_schema = schema
        self.rows = rows
        self.values: list[pa.Array] = []
        self.size = 0
        self.first_offset: int | None = None
        self.fallback: str | None = None
        """Why the last finish() wrote io.kbackup.KafkaValue instead of typed fields (None: typed)."""

    @property
    def size_estimate(self) -> int:
        return self.size

    def _add(self, values: pa.Array, first_offset: int | None) -> None:
        if not self.values:
            self.first_offset = first_offset
        self.values.append(values)
        self.size += int(pc.sum(pc.binary_length(values)).as_py() or 0)
        self.record_count += len(values)

    def write(self, records: Sequence[Record]) -> None:
        if records:
            self._add(pa.array([json_bytes(r.value) for r in records], pa.binary()), records[0].offset)

    def write_columns(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows:
            self._add(batch.column("value"), batch.column("offset")[0].as_py())

    def finish(self) -> bytes:
        values = pa.chunked_array(self.values, pa.binary())
        try:
            table = self.typing(values)
            self.fallback = None
            return self._container(fastavro.parse_schema(self.typed_schema(table.schema)), self.rows(table))
        except (
            Untypable,
            pa.ArrowException,
            fastavro.schema.SchemaParseException,
            ValueError,
            TypeError,
        ) as exc:
            self.fallback = str(exc)  # fastavro's errors for a schema or row it cannot write
        return self._container(VALUE_SCHEMA, [{"value": value} for value in values.to_pylist()])

    def _container(self, schema: Any, rows: list[dict[str, Any]]) -> bytes:
        self.schema = schema
        self.buffer = io.BytesIO()
        self._writer = None
        writer = self._open(self.first_offset)
        for row in rows:
            writer.write(row)
        writer.flush()
        return self.buffer.getvalue()


class AvroCodec(Codec):
    spec = CodecSpec("AVRO", "avro", True, True, ("null", "deflate", "snappy", "zstd"), "zstd")

    def writer(self, context: CodecContext) -> ObjectWriter:
        if not context.envelope and context.value_converter == "json":
            return _TypedAvroWriter(context, self.compression(context))
        if not context.envelope and context.value_converter == "avro":
            lookup = context.avro_schemas
            return _TypedAvroWriter(
                context,
                self.compression(context),
                lambda values: avro_columns.typed_avro_table(values, lookup),
                avro_container.avro_container_schema,
                avro_columns.container_rows,
            )
        return _AvroWriter(context, self.compression(context))

    def reader(self, data: bytes | BinaryIO, context: CodecContext) -> Iterator[Record]:
        raw = as_bytes(data)
        index = 0
        try:
            reader, shape = _open(raw)
            if shape == "avro":
                lookup = context.avro_schemas
                if lookup is None:
                    raise avro_columns.SchemasNeeded(context.object_key)
                blocks = fastavro.block_reader(io.BytesIO(raw))
                for batch in avro_container.container_batches(blocks, reader.writer_schema):
                    for value in avro_columns.row_wire_values(batch, lookup):
                        yield value_only_record(value, context, index)
                        index += 1
                return
            for row in reader:
                yield _record(row, shape, context, index)
                index += 1
        except (CorruptObjectError, avro_columns.SchemasNeeded):
            raise
        except Exception as exc:  # noqa: BLE001 - fastavro raises many kinds for bad input
            raise undecodable_record(context, index, exc) from exc

    def read_columns(self, data: bytes | BinaryIO, context: CodecContext) -> Iterator[pa.RecordBatch]:
        """Our envelopes: fastavro reads the blocks (container, codec, sync markers) and
        formats.avro_binary.decode_envelopes turns each body into columns; at the first block it
        cannot decode, fastavro's rows take over from there, naming the bad record as the
        per-record reader does. Other shapes go record by record."""
        raw = as_bytes(data)
        try:
            reader, shape = _open(raw)
        except Exception as exc:  # noqa: BLE001
            raise undecodable_record(context, 0, exc) from exc
        if shape != "ours":
            yield from decoded_batches(self.reader(raw, context))
            return
        index = 0
        if to_parsing_canonical_form(reader.writer_schema) != _ENVELOPE_CANONICAL:
            yield from decoded_batches(self.reader(raw, context))  # e.g. a damaged header
            return
        blocks = fastavro.block_reader(io.BytesIO(raw))
        while True:
            try:
                block = next(blocks, None)
                if block is None:
                    return
                body = block.bytes_  # type: ignore[attr-defined]  # the decompressed body
                body = body.getvalue() if isinstance(body, io.BytesIO) else body
                batch = decode_envelopes(body, block.num_records, context.topic, context.partition, index)
            except Exception:  # noqa: BLE001 - fastavro's rows below name the bad record
                break
            yield batch
            index += batch.num_rows
        yield from _envelope_batches(reader, context, index)


def _envelope_batches(reader: Any, context: CodecContext, skip: int) -> Iterator[pa.RecordBatch]:
    """Our envelopes through fastavro's rows (dicts), the first `skip` left out: the path that
    names the record of a corrupt object as the per-record reader does."""
    index = 0
    rows: list[Any] = []
    try:
        for row in reader:
            if index < skip:
                index += 1
                continue
            rows.append(row)
            if len(rows) >= DECODE_BATCH:
                yield _checked_columns(rows, context, index)
                index += len(rows)
                rows = []
        if rows:
            yield _checked_columns(rows, context, index)
    except CorruptObjectError:
        raise
    except Exception as exc:  # noqa: BLE001 - fastavro raises many kinds for bad input
        if rows:  # a row read before the bad one may be refused first
            _checked_columns(rows, context, index)
        raise undecodable_record(context, index + len(rows), exc) from exc


def _open(data: bytes | BinaryIO) -> tuple[Any, str]:
    """fastavro's reader and the shape of its rows: ours, value, json or avro (typed fields),
    stream-reactor or row."""
    reader = fastavro.reader(io.BytesIO(as_bytes(data)))
    schema = reader.writer_schema
    if not isinstance(schema, dict):
        raise TypeError(f"unsupported writer schema {schema!r}: a primitive type name or a union")
    fields = {f["name"] for f in schema.get("fields", [])}
    ours = schema.get("name") in ("io.kbackup.KafkaRecord", "KafkaRecord")
    shape = (
        "ours"
        if ours
        else "json"
        if schema.get("name") in (f"{AVRO_NAMESPACE}.{AVRO_NAME}", AVRO_NAME)
        else "avro"
        if schema.get("name")
        in (f"{avro_columns.AVRO_NAMESPACE}.{avro_columns.AVRO_NAME}", avro_columns.AVRO_NAME)
        else "stream-reactor"
        if {"value", "metadata"} <= fields
        else ("value" if schema.get("name") in ("io.kbackup.KafkaValue", "KafkaValue") else "row")
    )
    return reader, shape


def _checked_columns(rows: list[Any], context: CodecContext, start: int) -> pa.RecordBatch:
    """_envelope_columns, or the error of the first row the per-record reader refuses."""
    try:
        return _envelope_columns(rows, context, start)
    except CorruptObjectError:
        raise
    except Exception as exc:  # noqa: BLE001 - rows of an unexpected shape
        for i, row in enumerate(rows):
            try:
                _record(row, "ours", context, start + i)
            except Exception as row_exc:  # noqa: BLE001
                raise undecodable_record(context, start + i, row_exc) from row_exc
        raise undecodable_record(context, start, exc) from exc


_LABEL_TYPES = {TimestampType(t).label: t for t in range(3)}


def _envelope_columns(rows: list[Any], context: CodecContext, start: int) -> pa.RecordBatch:
    """Rows of io.kbackup.KafkaRecord as DECODED, what the per-record reader gives."""
    count = len(rows)
    metadata = list(map(itemgetter("metadata"), rows))
    headers = list(map(itemgetter("headers"), rows))
    counts = np.fromiter(map(len, headers), dtype=np.int32, count=count)
    offsets = np.zeros(count + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    items = list(chain.from_iterable(headers))
    header_items = pa.StructArray.from_arrays(
        [
            pa.array(list(map(itemgetter("key"), items)), pa.string()),
            pa.array(list(map(itemgetter("value"), items)), pa.binary()),
        ],
        fields=list(HEADER),
    )
    if None in metadata:  # no metadata: the context's topic and partition, offset = index
        missing = {"topic": context.topic, "partition": context.partition, "timestamp": None}
        metadata = [
            m if m is not None else {**missing, "offset": start + i, "timestamp_type": _NO_LABEL}
            for i, m in enumerate(metadata)
        ]
    labels = list(map(itemgetter("timestamp_type"), metadata))
    try:
        types = [_LABEL_TYPES[label] for label in labels]
    except KeyError:
        first = next(i for i, label in enumerate(labels) if label not in _LABEL_TYPES)
        try:
            TimestampType.from_label(labels[first])
        except ValueError as exc:
            raise CorruptObjectError(context.object_key, start + first, f"ValueError: {exc}") from exc
        raise
    return pa.RecordBatch.from_arrays(
        [
            pa.array(list(map(itemgetter("offset"), metadata)), pa.int64()),
            pa.array(list(map(itemgetter("timestamp"), metadata)), pa.int64()),
            pa.array(types, pa.int8()),
            pa.array(list(map(itemgetter("key"), rows)), pa.binary()),
            pa.array(list(map(itemgetter("value"), rows)), pa.binary()),
            pa.ListArray.from_arrays(pa.array(offsets), header_items),
            pa.array(list(map(itemgetter("topic"), metadata)), pa.string()),
            pa.array(list(map(itemgetter("partition"), metadata)), pa.int32()),
        ],
        schema=DECODED,
    )


_NO_LABEL = TimestampType.NO_TIMESTAMP_TYPE.label


def _record(row: AvroMessage, shape: str, context: CodecContext, index: int) -> Record:
    if shape == "row":
        return value_only_record(compact_json(row), context, index)
    if not isinstance(row, dict):
        # the other shapes come from record schemas, whose rows fastavro reads as dicts
        raise TypeError(f"a {shape} row is a {type(row).__name__}, not a record")
    if shape == "ours":
        metadata = row["metadata"]  # read first, as before: the first missing field is named
        return envelope_record(
            row["key"],
            row["value"],
            tuple((h["key"], h["value"]) for h in row["headers"]),
            metadata,
            context,
            index,
        )
    if shape == "stream-reactor":
        return stream_reactor_record(row, context)
    if shape == "json":
        document = row_document(row)
        return value_only_record(None if document is None else compact_json(document), context, index)
    return value_only_record(row["value"], context, index)
