"""The records digest: the proof that nothing was lost or changed.

sha256 over, per record in offset order:
  key and value as nullable bytes: b"\\x00" for None, else b"\\x01" + 4-byte big-endian length + bytes
  (a str is UTF-8 encoded first); the header count as 4-byte big-endian; each header's name as
  4-byte big-endian length + UTF-8 and its value as nullable bytes; the timestamp as b"\\x00" or
  b"\\x01" + 8-byte signed big-endian; the timestamp type as one byte.
Rendered as "sha256:<hex>".
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Sequence
from typing import Any

from formats.envelope import Record

_NULL = b"\x00"
_LEN = struct.Struct(">I")
_TS = struct.Struct(">q")


def _nullable(part: Any) -> bytes:
    if part is None:
        return _NULL
    if isinstance(part, str):
        part = part.encode()
    elif not isinstance(part, (bytes, bytearray, memoryview)):
        part = str(part).encode()
    return b"\x01" + _LEN.pack(len(part)) + bytes(part)


class RecordsDigest:
    def __init__(self) -> None:
        self._hash = hashlib.sha256()

    def update(
        self,
        key: Any,
        value: Any,
        headers: Sequence[tuple[str, bytes | None]] | None,
        timestamp: int | None,
        timestamp_type: int,
    ) -> None:
        headers = headers or ()
        parts = [_nullable(key), _nullable(value), _LEN.pack(len(headers))]
        for name, header_value in headers:
            encoded = name.encode()
            parts.append(_LEN.pack(len(encoded)) + encoded)
            parts.append(_nullable(header_value))
        parts.append(_NULL if timestamp is None else b"\x01" + _TS.pack(timestamp))
        parts.append(bytes((int(timestamp_type),)))
        self._hash.update(b"".join(parts))

    def update_record(self, record: Record) -> None:
        self.update(record.key, record.value, record.headers, record.timestamp, int(record.timestamp_type))

    def hexdigest(self) -> str:
        return "sha256:" + self._hash.hexdigest()


def records_digest(records: Iterable[Record]) -> str:
    digest = RecordsDigest()
    for record in records:
        digest.update_record(record)
    return digest.hexdigest()
