"""The Avro binary encoding of one envelope record, written out for our one fixed schema.

fastavro still writes the container (header, blocks, compression, sync markers) through
`Writer.write_block`; only the body of each block is built here, because building one dict
per record for fastavro's generic writer costs more than the whole backup's other work.
A unit test checks these bytes against `fastavro.schemaless_writer` for arbitrary records.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from formats.envelope import Record

_NULL = b"\x00"
_PRESENT = b"\x02"  # union branch 1 of ["null", X]
_END_OF_ARRAY = b"\x00"


def _plain_varint(number: int) -> bytes:
    out = bytearray()
    while number > 0x7F:
        out.append((number & 0x7F) | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


_UNSIGNED = [_plain_varint(n) for n in range(1 << 14)]
"""The varint bytes of every number below 2**14 (one or two bytes)."""
_LOW_14_BITS = [bytes(((n & 0x7F) | 0x80, ((n >> 7) & 0x7F) | 0x80)) for n in range(1 << 14)]
"""Two varint bytes, both with the continuation bit, for 14 low bits of a larger number."""


def _unsigned(number: int) -> bytes:
    if number < 16384:
        return _UNSIGNED[number]
    head = b""
    while number >= 16384:
        head += _LOW_14_BITS[number & 0x3FFF]
        number >>= 14
    return head + _UNSIGNED[number]


def long_bytes(number: int) -> bytes:
    """A long in Avro's zig-zag variable-length encoding."""
    return _unsigned((number << 1) ^ (number >> 63))


def _append_nullable(append: Callable[[bytes], None], part: bytes | str | None) -> None:
    """A ["null", "bytes"] union: the branch, then the length and the bytes (not copied)."""
    if part is None:
        append(_NULL)
        return
    data = part.encode() if isinstance(part, str) else part
    append(_PRESENT + _unsigned(len(data) << 1))
    append(data)


def _string(text: str) -> bytes:
    data = text.encode()
    return long_bytes(len(data)) + data


def encode_envelopes(
    records: Sequence[Record],
    keep_key: bool = True,
    keep_value: bool = True,
    keep_headers: bool = True,
    keep_metadata: bool = True,
) -> bytes:
    """The concatenated bodies of `records` in io.kbackup.KafkaRecord's schema.

    Key and value are bytes, str (a string converter) or None; header values bytes or None."""
    parts: list[bytes] = []
    append = parts.append
    names: dict[str, bytes] = {}
    topics: dict[str, bytes] = {}
    labels: dict[object, bytes] = {}
    for record in records:
        _append_nullable(append, record.key if keep_key else None)
        _append_nullable(append, record.value if keep_value else None)
        headers = record.headers if keep_headers else ()
        if headers:
            append(long_bytes(len(headers)))
            for name, value in headers:
                encoded = names.get(name)
                if encoded is None:
                    encoded = names[name] = _string(name)
                append(encoded)
                _append_nullable(append, value)
        append(_END_OF_ARRAY)
        if keep_metadata:
            topic = topics.get(record.topic)
            if topic is None:
                topic = topics[record.topic] = _PRESENT + _string(record.topic)
            label = labels.get(record.timestamp_type)
            if label is None:
                label = labels[record.timestamp_type] = _string(record.timestamp_type.label)
            append(topic)
            append(long_bytes(record.partition))
            append(long_bytes(record.offset))
            append(_NULL if record.timestamp is None else _PRESENT + long_bytes(record.timestamp))
            append(label)
        else:
            append(_NULL)
    return b"".join(parts)
