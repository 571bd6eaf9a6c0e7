"""JSON Lines: one object per record (envelope) or one value per line (value-only).

Bytes are written as a JSON string when they are valid UTF-8 text, else as {"$base64": "…"}:
strings are always strings and base64 always an object, so the two cannot be confused.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, BinaryIO

import pyarrow as pa

from formats.codec import (
    TEXT_COMPRESSIONS,
    BufferWriter,
    Codec,
    CodecContext,
    CodecSpec,
    ObjectWriter,
    compact_json,
    envelope_record,
    stream_reactor_record,
    text_lines,
    undecodable_record,
    value_only_record,
)
from formats.columns import header_lists
from formats.envelope import Record, TimestampType
from formats.errors import CorruptObjectError

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def encode_bytes(part: Any) -> Any:
    if part is None:
        return None
    if isinstance(part, str):
        return part
    try:
        return part.decode("utf-8")
    except UnicodeDecodeError:
        return {"$base64": base64.b64encode(part).decode()}


def decode_bytes(part: Any) -> bytes | None:
    if part is None:
        return None
    if isinstance(part, str):
        return part.encode()
    if isinstance(part, dict) and set(part) == {"$base64"}:
        return base64.b64decode(part["$base64"], validate=True)
    return compact_json(part)  # a document (Stream Reactor's typed key/value)


class _JsonWriter(BufferWriter):
    def write(self, records: Sequence[Record]) -> None:
        if not records:
            return
        if self.context.envelope:
            lines = [self._envelope_line(record) for record in records]
        else:
            lines = [_value_line(record.value) for record in records]
        self.write_lines(lines)

    def write_columns(self, batch: pa.RecordBatch) -> None:
        """The lines from the columns (a list per column, no Record per row): the same text as
        write() gives for the same records."""
        count = batch.num_rows
        if not count:
            return
        ctx = self.context
        if not ctx.envelope:
            self.write_lines([_value_line(value) for value in batch.column("value").to_pylist()])
            return
        none = [None] * count
        keys = batch.column("key").to_pylist() if ctx.envelope_key else none
        values = batch.column("value").to_pylist() if ctx.envelope_value else none
        headers = header_lists(batch.column("headers")) if ctx.envelope_headers else [[]] * count
        if ctx.envelope_metadata:
            head = f'{{"topic":{_dumps(ctx.topic)},"partition":{ctx.partition},"offset":'
            labels = [TimestampType(t).label for t in range(3)]
            metadata = [
                f'{head}{offset},"timestamp":{"null" if timestamp is None else timestamp},'
                f'"timestamp_type":"{labels[ts_type]}"}}'
                for offset, timestamp, ts_type in zip(
                    batch.column("offset").to_pylist(),
                    batch.column("timestamp").to_pylist(),
                    batch.column("timestamp_type").to_pylist(),
                    strict=True,
                )
            ]
        else:
            metadata = ["null"] * count
        self.write_lines(
            [
                _envelope_text(key, value, record_headers, record_metadata)
                for key, value, record_headers, record_metadata in zip(
                    keys, values, headers, metadata, strict=True
                )
            ]
        )

    def _envelope_line(self, record: Record) -> str:
        """One envelope object, spelled out field by field: the same text json.dumps gives for
        the envelope dict, without building the dicts (this is the hot loop of a JSON backup)."""
        key, value, headers, metadata = self.kept(record)
        metadata_text = (
            f'{{"topic":{_dumps(record.topic)},"partition":{record.partition},"offset":{record.offset},'
            f'"timestamp":{"null" if record.timestamp is None else record.timestamp},'
            f'"timestamp_type":"{record.timestamp_type.label}"}}'
            if metadata
            else "null"
        )
        return _envelope_text(key, value, headers, metadata_text)


def _envelope_text(key: Any, value: Any, headers: Iterable[tuple[str, Any]], metadata_text: str) -> str:
    header_text = ",".join(
        f'{{"key":{_dumps(name)},"value":{_part(header_value)}}}' for name, header_value in headers
    )
    return (
        f'{{"key":{_part(key)},"value":{_part(value)},"headers":[{header_text}],"metadata":{metadata_text}}}'
    )


def _part(part: Any) -> str:
    return "null" if part is None else _dumps(encode_bytes(part))


def _value_line(value: Any) -> str:
    if isinstance(value, (bytes, str)):
        try:
            return _dumps(json.loads(value))
        except ValueError:
            pass
    return _dumps(encode_bytes(value))


class JsonCodec(Codec):
    spec = CodecSpec("JSON", "json", False, True, TEXT_COMPRESSIONS, "none")

    def writer(self, context: CodecContext) -> ObjectWriter:
        return _JsonWriter(context, self.compression(context))

    def reader(self, data: bytes | BinaryIO, context: CodecContext) -> Iterator[Record]:
        for index, line in enumerate(text_lines(data, context, complete=True)):
            try:
                row = json.loads(line)
                yield _record(row, context, index)
            except CorruptObjectError:
                raise
            except Exception as exc:  # noqa: BLE001
                raise undecodable_record(context, index, exc) from exc


def _record(row: Any, context: CodecContext, index: int) -> Record:
    if isinstance(row, dict) and "metadata" in row and "value" in row:
        metadata = row.get("metadata") or {}
        if isinstance(row.get("headers"), dict) or (metadata and "timestamp_type" not in metadata):
            return stream_reactor_record(row, context)
        return envelope_record(
            decode_bytes(row["key"]),
            decode_bytes(row["value"]),
            tuple((h["key"], decode_bytes(h["value"])) for h in row["headers"]),
            metadata,
            context,
            index,
        )
    if isinstance(row, str):
        return value_only_record(row.encode(), context, index)
    if isinstance(row, dict) and set(row) == {"$base64"}:
        return value_only_record(decode_bytes(row), context, index)
    return value_only_record(None if row is None else compact_json(row), context, index)
