"""The one interface every format implements: a declarative spec, a writer and a reader."""

from __future__ import annotations

import gzip
import io
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

import pyarrow as pa

from formats.columns import decoded_batches, to_records
from formats.envelope import Record, TimestampType
from formats.errors import CorruptObjectError, FormatError


@dataclass(frozen=True)
class CodecSpec:
    name: str
    extension: str
    binary: bool
    supports_envelope: bool
    compressions: tuple[str, ...]
    default_compression: str


@dataclass(frozen=True)
class CodecContext:
    """What a codec needs to know about the object it writes or reads."""

    topic: str
    partition: int
    envelope: bool = False
    envelope_key: bool = True
    envelope_value: bool = True
    envelope_headers: bool = True
    envelope_metadata: bool = True
    key_converter: str = "bytes"
    value_converter: str = "bytes"
    compression: str | None = None
    compression_level: int | None = None
    object_key: str | None = None
    avro_schemas: Callable[[int], Any] | None = None
    """With `value.converter=avro`: a schema id → its fastavro-parsed writer schema (KeyError
    for an unknown id), which value-only objects' typed columns are written and read with
    (formats/avro_columns.py)."""


class ObjectWriter(ABC):
    """Records go in by batches; finish() returns the whole object."""

    def __init__(self, context: CodecContext) -> None:
        self.context = context
        self.record_count = 0

    @property
    @abstractmethod
    def size_estimate(self) -> int: ...

    @abstractmethod
    def write(self, records: Sequence[Record]) -> None: ...

    def write_columns(self, batch: pa.RecordBatch) -> None:
        """Write a batch in formats.columns.COLUMNS (the export's path). This default goes record
        by record; the binary formats override it to encode the columns directly."""
        if batch.num_rows:
            self.write(list(to_records(batch, self.context.topic, self.context.partition)))

    @abstractmethod
    def finish(self) -> bytes: ...

    def kept(self, record: Record) -> tuple[Any, Any, tuple, bool]:
        """(key, value, headers, metadata?) after the envelope-part switches."""
        ctx = self.context
        return (
            record.key if ctx.envelope_key else None,
            record.value if ctx.envelope_value else None,
            record.headers if ctx.envelope_headers else (),
            ctx.envelope_metadata,
        )


class Codec(ABC):
    spec: CodecSpec

    def compression(self, context: CodecContext) -> str:
        chosen = (context.compression or self.spec.default_compression).lower()
        if chosen not in self.spec.compressions:
            raise FormatError(
                f"{self.spec.name} does not support compression {chosen!r}; valid: {', '.join(self.spec.compressions)}"
            )
        return chosen

    @abstractmethod
    def writer(self, context: CodecContext) -> ObjectWriter: ...

    @abstractmethod
    def reader(self, data: bytes | BinaryIO, context: CodecContext) -> Iterator[Record]: ...

    def read_columns(self, data: bytes | BinaryIO, context: CodecContext) -> Iterator[pa.RecordBatch]:
        """The object's records as formats.columns.DECODED batches, in order (the restore's path).
        This default decodes record by record; a codec may override it to decode columns directly."""
        return decoded_batches(self.reader(data, context))


# --- helpers shared by the codecs -------------------------------------------------------------

TEXT_COMPRESSIONS = ("none", "gzip", "zstd")


def _zstd() -> Any:
    """Python 3.14's compression.zstd, or before it its backport (which fastavro's `zstandard`
    extra installs for Avro's zstd codec): one zstd library for every format."""
    try:
        from compression import zstd  # type: ignore[import-not-found]
    except ImportError:
        from backports import zstd
    return zstd


def compress(data: bytes, compression: str, level: int | None) -> bytes:
    if compression == "gzip":
        return gzip.compress(data, compresslevel=level if level is not None else 6)
    if compression == "zstd":
        return _zstd().compress(data, level=level if level is not None else 1)
    return data


def decompress(data: bytes | BinaryIO, context: CodecContext) -> bytes:
    """Whole-object decompression for the text formats, recognised by magic bytes."""
    data = as_bytes(data)
    try:
        if data[:2] == b"\x1f\x8b":
            return gzip.decompress(data)
        if data[:4] == b"\x28\xb5\x2f\xfd":
            return _zstd().decompress(data)
    except Exception as exc:  # noqa: BLE001
        raise CorruptObjectError(context.object_key, 0, f"cannot decompress: {exc}") from exc
    return data


def as_bytes(data: bytes | BinaryIO) -> bytes:
    return data if isinstance(data, (bytes, bytearray)) else data.read()


def text_lines(data: bytes | BinaryIO, context: CodecContext, complete: bool = False) -> list[bytes]:
    """The lines of a line-per-record object (decompressed whole), without the newline after the
    last one. With `complete`, a last line that has no newline is a truncated object."""
    text = decompress(data, context)
    lines = text.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    elif complete:
        raise CorruptObjectError(
            context.object_key, len(lines) - 1, "the last line is incomplete (truncated object)"
        )
    return lines


def undecodable_record(context: CodecContext, index: int, exc: Exception) -> CorruptObjectError:
    """A codec's error for the record at `index` that it could not decode because of `exc`."""
    return CorruptObjectError(context.object_key, index, f"{type(exc).__name__}: {exc}")


def compact_json(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def value_only_record(value: bytes | None, context: CodecContext, index: int) -> Record:
    return Record(
        None, value, (), context.topic, context.partition, index, None, TimestampType.NO_TIMESTAMP_TYPE
    )


def envelope_record(
    key: bytes | None,
    value: bytes | None,
    headers: tuple[tuple[str, bytes | None], ...],
    metadata: dict[str, Any] | None,
    context: CodecContext,
    index: int,
) -> Record:
    """A record from our envelope's parts. Without metadata (a backup that left it out) it has
    the context's topic and partition, its index in the object as offset and no timestamp."""
    metadata = metadata or {}
    return Record(
        key,
        value,
        headers,
        metadata.get("topic", context.topic),
        metadata.get("partition", context.partition),
        metadata.get("offset", index),
        metadata.get("timestamp"),
        TimestampType.from_label(metadata["timestamp_type"]) if metadata else TimestampType.NO_TIMESTAMP_TYPE,
    )


def header_text(value: Any) -> bytes | None:
    """A Stream Reactor header value (typed) as the bytes a StringConverter would give."""
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, (dict, list)):
        return compact_json(value)
    return str(value).encode()


def stream_reactor_record(row: dict[str, Any], context: CodecContext) -> Record:
    """An envelope in Stream Reactor's shape: headers a struct keyed by name, no timestamp type."""

    def part(value: Any) -> Any:
        if value is None or isinstance(value, bytes):
            return value
        if isinstance(value, str):
            return value.encode()
        return compact_json(value)

    headers = row.get("headers") or {}
    metadata = row.get("metadata") or {}
    timestamp = metadata.get("timestamp")
    return Record(
        part(row.get("key")),
        part(row.get("value")),
        tuple((name, header_text(value)) for name, value in headers.items()),
        metadata.get("topic") or context.topic,
        int(metadata.get("partition", context.partition)),
        int(metadata.get("offset", 0)),
        timestamp,
        TimestampType.CREATE_TIME if timestamp is not None else TimestampType.NO_TIMESTAMP_TYPE,
    )


class BufferWriter(ObjectWriter):
    """A writer that appends encoded bytes to a buffer (text formats)."""

    def __init__(self, context: CodecContext, compression: str) -> None:
        super().__init__(context)
        self.buffer = io.BytesIO()
        self.compression = compression

    @property
    def size_estimate(self) -> int:
        return self.buffer.tell()

    def write_lines(self, lines: list[str]) -> None:
        """One record a line, each line ended by a newline."""
        self.buffer.write(("\n".join(lines) + "\n").encode())
        self.record_count += len(lines)

    def finish(self) -> bytes:
        return compress(self.buffer.getvalue(), self.compression, self.context.compression_level)
