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
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from formats.envelope import Record

_NULL = b"\x00"
_LEN = struct.Struct(">I")
_TS = struct.Struct(">q")


_PRESENT = b"\x01"
_TIMESTAMP_TYPES = [bytes((n,)) for n in range(256)]


def _as_bytes(part: Any) -> bytes:
    if isinstance(part, str):
        return part.encode()
    if isinstance(part, (bytearray, memoryview)):
        return bytes(part)
    return str(part).encode()


_pack_length = _LEN.pack


def _append_nullable(append: Callable[[bytes], None], part: Any) -> None:
    """Nullable bytes: b"\\x00", or b"\\x01" + length + the bytes (appended, not copied)."""
    if part is None:
        append(_NULL)
        return
    if type(part) is not bytes:
        part = _as_bytes(part)
    append(_PRESENT)
    append(_pack_length(len(part)))
    append(part)


def digest_input(
    key: Any,
    value: Any,
    headers: Sequence[tuple[str, bytes | None]] | None,
    timestamp: int | None,
    timestamp_type: int,
) -> bytes:
    """The bytes one record contributes to a records digest (see the module text)."""
    parts: list[bytes] = []
    append = parts.append
    _append_nullable(append, key)
    _append_nullable(append, value)
    headers = headers or ()
    append(_pack_length(len(headers)))
    for name, header_value in headers:
        encoded = name.encode()
        append(_pack_length(len(encoded)))
        append(encoded)
        _append_nullable(append, header_value)
    append(_NULL if timestamp is None else _PRESENT + _TS.pack(timestamp))
    append(_TIMESTAMP_TYPES[int(timestamp_type)])
    return b"".join(parts)


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
        self._hash.update(digest_input(key, value, headers, timestamp, timestamp_type))

    def update_input(self, data: bytes) -> None:
        """Add one record given as its digest_input bytes (computed once, fed to several digests)."""
        self._hash.update(data)

    def update_record(self, record: Record) -> None:
        self.update(record.key, record.value, record.headers, record.timestamp, int(record.timestamp_type))

    def hexdigest(self) -> str:
        return "sha256:" + self._hash.hexdigest()


def records_digest(records: Iterable[Record]) -> str:
    digest = RecordsDigest()
    for record in records:
        digest.update_record(record)
    return digest.hexdigest()
