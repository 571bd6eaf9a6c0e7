"""The value-only formats: CSV, CSV_WITHHEADERS, TEXT and BYTES (they keep the value alone)."""

from __future__ import annotations

import csv
import io
import json
import struct
from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO

from formats.codec import (
    TEXT_COMPRESSIONS,
    BufferWriter,
    Codec,
    CodecContext,
    CodecSpec,
    ObjectWriter,
    compact_json,
    decompress,
    text_lines,
    value_only_record,
)
from formats.envelope import Record
from formats.errors import CorruptObjectError, UnsupportedValueError

_LENGTH = struct.Struct(">Q")


def _text(record: Record) -> str:
    value = record.value
    if value is None:
        raise UnsupportedValueError(
            record.offset, "a null value cannot be stored in a value-only text format"
        )
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise UnsupportedValueError(record.offset, "the value is not UTF-8 text") from None
    return str(value)


class _CsvWriter(BufferWriter):
    def __init__(self, context: CodecContext, compression: str, headers: bool) -> None:
        super().__init__(context, compression)
        self.headers = headers
        self.columns: list[str] | None = None
        self.text = io.TextIOWrapper(self.buffer, encoding="utf-8", newline="", write_through=True)
        self.csv = csv.writer(self.text, quoting=csv.QUOTE_NONNUMERIC)

    def write(self, records: Sequence[Record]) -> None:
        for record in records:
            try:
                document = json.loads(_text(record))
            except ValueError:
                document = None
            if not isinstance(document, dict):
                raise UnsupportedValueError(
                    record.offset, "CSV needs a JSON-object value; its fields become the columns"
                )
            if self.columns is None:
                self.columns = list(document)
                if self.headers:
                    self.csv.writerow(self.columns)
            extra = [name for name in document if name not in self.columns]
            if extra:
                raise UnsupportedValueError(
                    record.offset,
                    f"field {extra[0]!r} is not a column of this object ({', '.join(self.columns)})",
                )
            self.csv.writerow(
                [
                    ""
                    if document.get(c) is None
                    else document[c]
                    if not isinstance(document.get(c), (dict, list))
                    else json.dumps(document[c])
                    for c in self.columns
                ]
            )
        self.record_count += len(records)


class CsvCodec(Codec):
    def __init__(self, headers: bool) -> None:
        self.headers = headers
        self.spec = CodecSpec(
            "CSV_WITHHEADERS" if headers else "CSV", "csv", False, False, TEXT_COMPRESSIONS, "none"
        )

    def writer(self, context: CodecContext) -> ObjectWriter:
        return _CsvWriter(context, self.compression(context), self.headers)

    def reader(self, data: bytes | BinaryIO, context: CodecContext) -> Iterator[Record]:
        text = decompress(data, context).decode("utf-8", errors="strict")
        rows = csv.reader(io.StringIO(text, newline=""))
        columns: list[str] | None = next(rows, None) if self.headers else None
        for index, row in enumerate(rows):
            names = columns or [str(i) for i in range(len(row))]
            if len(row) != len(names):
                raise CorruptObjectError(
                    context.object_key, index, f"{len(row)} cells, expected {len(names)}"
                )
            yield value_only_record(
                compact_json({n: (v if v != "" else None) for n, v in zip(names, row, strict=True)}),
                context,
                index,
            )


class _TextWriter(BufferWriter):
    def write(self, records: Sequence[Record]) -> None:
        if not records:
            return
        lines = []
        for record in records:
            text = _text(record)
            if "\n" in text or "\r" in text:
                raise UnsupportedValueError(
                    record.offset,
                    "a TEXT value cannot contain a line break (it would split into two records)",
                )
            lines.append(text)
        self.write_lines(lines)


class TextCodec(Codec):
    spec = CodecSpec("TEXT", "text", False, False, TEXT_COMPRESSIONS, "none")

    def writer(self, context: CodecContext) -> ObjectWriter:
        return _TextWriter(context, self.compression(context))

    def reader(self, data: bytes | BinaryIO, context: CodecContext) -> Iterator[Record]:
        for index, line in enumerate(text_lines(data, context)):
            yield value_only_record(line, context, index)


class _BytesWriter(BufferWriter):
    def write(self, records: Sequence[Record]) -> None:
        for record in records:
            value: Any = record.value
            if value is None:
                raise UnsupportedValueError(record.offset, "BYTES cannot hold a null value")
            value = value.encode() if isinstance(value, str) else value
            self.buffer.write(_LENGTH.pack(len(value)) + value)
        self.record_count += len(records)


class BytesCodec(Codec):
    spec = CodecSpec("BYTES", "bytes", True, False, TEXT_COMPRESSIONS, "none")

    def writer(self, context: CodecContext) -> ObjectWriter:
        return _BytesWriter(context, self.compression(context))

    def reader(self, data: bytes | BinaryIO, context: CodecContext) -> Iterator[Record]:
        blob = decompress(data, context)
        position = index = 0
        while position < len(blob):
            if position + _LENGTH.size > len(blob):
                raise CorruptObjectError(context.object_key, index, "truncated length prefix")
            (length,) = _LENGTH.unpack_from(blob, position)
            position += _LENGTH.size
            if position + length > len(blob):
                raise CorruptObjectError(
                    context.object_key, index, f"value of {length} bytes runs past the end"
                )
            yield value_only_record(blob[position : position + length], context, index)
            position += length
            index += 1
