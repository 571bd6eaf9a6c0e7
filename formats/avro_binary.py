"""The Avro binary encoding of one envelope record, written out for our one fixed schema.

fastavro still writes the container (header, blocks, compression, sync markers) through
`Writer.write_block`; only the body of each block is built here, because building one dict
per record for fastavro's generic writer costs more than the whole backup's other work.
A unit test checks these bytes against `fastavro.schemaless_writer` for arbitrary records.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from formats.columns import DECODED, HEADER, SMALL_BATCH, to_records
from formats.envelope import Record, TimestampType

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


# --- the same bodies from columns (formats.columns.COLUMNS), vectorised ---------------------------

_BINARY = pa.large_binary()
_EMPTY = pa.scalar(b"", _BINARY)
_NULL_SCALAR = pa.scalar(_NULL, _BINARY)
_SHIFTS = np.arange(0, 70, 7, dtype=np.uint64)


def _varints(numbers: np.ndarray, lead: bytes = b"") -> pa.Array:
    """Unsigned varints of a uint64 array as a large_binary array, each after `lead`: a (n, 10)
    matrix of 7-bit groups, of which a mask keeps the significant ones."""
    count = len(numbers)
    groups = (numbers[:, None] >> _SHIFTS) & np.uint64(0x7F)
    more = (numbers[:, None] >> (_SHIFTS + np.uint64(7))) != 0
    more[:, -1] = False
    matrix = (groups | (more.astype(np.uint64) << np.uint64(7))).astype(np.uint8)
    keep = np.ones((count, 10), dtype=bool)
    keep[:, 1:] = more[:, :-1]
    if lead:
        matrix = np.hstack([np.tile(np.frombuffer(lead, np.uint8), (count, 1)), matrix])
        keep = np.hstack([np.ones((count, len(lead)), dtype=bool), keep])
    offsets = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(keep.sum(axis=1), out=offsets[1:])
    data = matrix[keep]
    return pa.LargeBinaryArray.from_buffers(_BINARY, count, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _zigzag(numbers: np.ndarray) -> np.ndarray:
    numbers = numbers.astype(np.int64)
    return ((numbers << 1) ^ (numbers >> 63)).view(np.uint64)


def _lengths(array: pa.Array) -> np.ndarray:
    return pc.fill_null(pc.binary_length(array), 0).to_numpy(zero_copy_only=False).astype(np.uint64)


def _nullable_column(array: pa.Array) -> list[pa.Array]:
    """A ["null", "bytes"] union per element: b"\\x00", or b"\\x02" + varint(length) + bytes."""
    array = array.cast(_BINARY)
    prefixes = _varints(_lengths(array) << np.uint64(1), _PRESENT)
    if array.null_count:
        prefixes = pc.if_else(array.is_valid(), prefixes, _NULL_SCALAR)
        array = pc.fill_null(array, _EMPTY)
    return [prefixes, array]


def _headers_column(headers: pa.Array) -> pa.Array:
    """Per record the headers array: b"\\x00" when empty, else varint(count) + items + b"\\x00"."""
    offsets = headers.offsets.to_numpy().astype(np.int64)
    offsets = offsets - offsets[0]
    counts = np.diff(offsets)
    if not counts.any():
        return pa.repeat(_NULL_SCALAR, len(headers))
    items = headers.flatten()
    names = items.field("key").cast(_BINARY)
    per_header = pc.binary_join_element_wise(
        _varints(_lengths(names) << np.uint64(1)), names, *_nullable_column(items.field("value")), _EMPTY
    )
    joined = pc.binary_join(pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), per_header), _EMPTY)
    heads = pc.if_else(pa.array(counts > 0), _varints(_zigzag(counts)), _EMPTY)
    return pc.binary_join_element_wise(heads, joined, _NULL_SCALAR, _EMPTY)


def encode_columns(
    batch: pa.RecordBatch,
    topic: str,
    partition: int,
    keep_key: bool = True,
    keep_value: bool = True,
    keep_headers: bool = True,
    keep_metadata: bool = True,
) -> bytes:
    """`encode_envelopes` of the batch's records (formats.columns.COLUMNS) with `topic` and
    `partition`, built column by column with Arrow kernels and numpy; under SMALL_BATCH records
    (a small partition's object) record by record, which costs less than the kernels' calls."""
    count = batch.num_rows
    if not count:
        return b""
    if count < SMALL_BATCH:
        records = list(to_records(batch, topic, partition))
        return encode_envelopes(records, keep_key, keep_value, keep_headers, keep_metadata)
    null = pa.repeat(_NULL_SCALAR, count)
    parts = [
        *(_nullable_column(batch.column("key")) if keep_key else [null]),
        *(_nullable_column(batch.column("value")) if keep_value else [null]),
        _headers_column(batch.column("headers")) if keep_headers else null,
    ]
    if keep_metadata:
        timestamps = batch.column("timestamp")
        stamps = _varints(_zigzag(pc.fill_null(timestamps, 0).to_numpy(zero_copy_only=False)), _PRESENT)
        if timestamps.null_count:
            stamps = pc.if_else(timestamps.is_valid(), stamps, _NULL_SCALAR)
        labels = pa.array([_string(TimestampType(t).label) for t in range(3)], _BINARY)
        parts += [
            pa.repeat(pa.scalar(_PRESENT + _string(topic) + long_bytes(partition), _BINARY), count),
            _varints(_zigzag(batch.column("offset").to_numpy(zero_copy_only=False))),
            stamps,
            labels.take(batch.column("timestamp_type")),
        ]
    else:
        parts.append(null)
    return _joined(pc.binary_join_element_wise(*parts, _EMPTY))


def encode_value_columns(values: pa.Array) -> bytes:
    """The bodies of io.kbackup.KafkaValue records (one nullable bytes field) from a column."""
    if not len(values):
        return b""
    return _joined(pc.binary_join_element_wise(*_nullable_column(values), _EMPTY))


def _joined(bodies: pa.Array) -> bytes:
    """The values of a large_binary array back to back (they already lie so in its buffer)."""
    bounds = np.frombuffer(bodies.buffers()[1], dtype=np.int64, count=len(bodies) + 1 + bodies.offset)
    start, stop = int(bounds[bodies.offset]), int(bounds[-1])
    return bytes(memoryview(bodies.buffers()[2])[start:stop]) if stop > start else b""


# --- block bodies back into columns -------------------------------------------------------------

_LABEL_TEXT = pa.array([TimestampType(t).label for t in range(3)], pa.large_string())


def _gather(body: bytes, starts: list[int], lengths: list[int], kind: pa.DataType) -> pa.Array:
    """Slices of a block body (start, length; length -1 for null) as one large binary or string
    array: their bytes joined once, offsets from the lengths."""
    count = len(starts)
    lengths_np = np.asarray(lengths, dtype=np.int64)
    valid = lengths_np >= 0
    sizes = np.where(valid, lengths_np, 0)
    offsets = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    data = b"".join([body[start : start + size] for start, size in zip(starts, sizes.tolist(), strict=True)])
    mask = None if valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(
        kind, count, [mask, pa.py_buffer(offsets), pa.py_buffer(data)], null_count=-1 if mask else 0
    )


class _Positions(NamedTuple):
    """Where each bytes or string part of a block's records lies in its body (`*_s` its start,
    `*_l` its length, -1 for null: keys, values, header names `hn` and values `hv`, topics `t`,
    timestamp type labels `l`), and the numbers; one entry a record (a header, for `hn`/`hv`)."""

    keys_s: list[int]
    keys_l: list[int]
    vals_s: list[int]
    vals_l: list[int]
    hcounts: list[int]
    """headers per record"""
    hn_s: list[int]
    hn_l: list[int]
    hv_s: list[int]
    hv_l: list[int]
    meta: list[bool]
    """whether the record has metadata; without, its entries below are 0 and None"""
    t_s: list[int]
    t_l: list[int]
    parts: list[int]
    offs: list[int]
    stamps: list[int | None]
    l_s: list[int]
    l_l: list[int]


def _positions(buf: bytes, count: int) -> _Positions:
    """Walk `count` io.kbackup.KafkaRecord bodies; where each bytes or string lies, and the numbers.
    Raises IndexError or ValueError for a body that does not hold exactly `count` records."""
    positions = _Positions(*([] for _ in _Positions._fields))
    keys_s, keys_l, vals_s, vals_l, hcounts, hn_s, hn_l, hv_s, hv_l = positions[:9]
    meta, t_s, t_l, parts, offs, stamps, l_s, l_l = positions[9:]
    p = 0

    def varint(p: int) -> tuple[int, int]:
        b = buf[p]
        p += 1
        v = b & 0x7F
        shift = 7
        while b & 0x80:
            b = buf[p]
            p += 1
            v |= (b & 0x7F) << shift
            shift += 7
        return (v >> 1) ^ -(v & 1), p

    for _ in range(count):
        for s_list, l_list in ((keys_s, keys_l), (vals_s, vals_l)):
            b = buf[p]
            p += 1
            if b == 0:
                s_list.append(0)
                l_list.append(-1)
            elif b == 2:
                n = buf[p]
                if n < 0x80:
                    n = (n >> 1) ^ -(n & 1)
                    p += 1
                else:
                    n, p = varint(p)
                if n < 0:
                    raise ValueError(f"negative length {n}")
                s_list.append(p)
                l_list.append(n)
                p += n
            else:
                raise ValueError(f"bad union branch {b}")
        total = 0
        while True:
            n = buf[p]
            if n < 0x80:
                n = (n >> 1) ^ -(n & 1)
                p += 1
            else:
                n, p = varint(p)
            if n == 0:
                break
            if n < 0:
                n = -n
                _, p = varint(p)
            total += n
            for _ in range(n):
                ln = buf[p]
                if ln < 0x80:
                    ln = (ln >> 1) ^ -(ln & 1)
                    p += 1
                else:
                    ln, p = varint(p)
                if ln < 0:
                    raise ValueError(f"negative length {ln}")
                hn_s.append(p)
                hn_l.append(ln)
                p += ln
                b = buf[p]
                p += 1
                if b == 0:
                    hv_s.append(0)
                    hv_l.append(-1)
                elif b == 2:
                    ln, p = varint(p)
                    if ln < 0:
                        raise ValueError(f"negative length {ln}")
                    hv_s.append(p)
                    hv_l.append(ln)
                    p += ln
                else:
                    raise ValueError(f"bad union branch {b}")
        hcounts.append(total)
        b = buf[p]
        p += 1
        if b == 0:
            meta.append(False)
            for column in (t_s, t_l, parts, offs, l_s, l_l):
                column.append(0)
            stamps.append(None)
            continue
        if b != 2:
            raise ValueError(f"bad union branch {b}")
        meta.append(True)
        ln, p = varint(p)
        if ln < 0:
            raise ValueError(f"negative length {ln}")
        t_s.append(p)
        t_l.append(ln)
        p += ln
        v, p = varint(p)
        parts.append(v)
        v, p = varint(p)
        offs.append(v)
        b = buf[p]
        p += 1
        if b == 0:
            stamps.append(None)
        elif b == 2:
            v, p = varint(p)
            stamps.append(v)
        else:
            raise ValueError(f"bad union branch {b}")
        ln, p = varint(p)
        if ln < 0:
            raise ValueError(f"negative length {ln}")
        l_s.append(p)
        l_l.append(ln)
        p += ln
    if p != len(buf):
        raise ValueError("the block body is longer than its records")
    return positions


def decode_envelopes(body: bytes, count: int, topic: str, partition: int, start: int) -> pa.RecordBatch:
    """One block body of io.kbackup.KafkaRecord as formats.columns.DECODED: a Python walk notes
    where each part lies, numpy gathers the bytes. A record without metadata gets `topic`,
    `partition`, offset = start + its index in the block and no timestamp. Raises (IndexError,
    ValueError, pyarrow's errors) for any body that is not exactly `count` valid records; the
    caller then decodes with fastavro to name the record."""
    pos = _positions(body, count)
    names = _gather(body, pos.hn_s, pos.hn_l, pa.large_string())
    topics = _gather(body, pos.t_s, pos.t_l, pa.large_string())
    labels = _gather(body, pos.l_s, pos.l_l, pa.large_string())
    for text in (names, topics, labels):
        text.validate(full=True)
    list_offsets = np.zeros(count + 1, dtype=np.int32)
    np.cumsum(np.asarray(pos.hcounts, dtype=np.int64), out=list_offsets[1:])
    headers = pa.ListArray.from_arrays(
        pa.array(list_offsets),
        pa.StructArray.from_arrays(
            [names.cast(pa.string()), _gather(body, pos.hv_s, pos.hv_l, pa.large_binary()).cast(pa.binary())],
            fields=list(HEADER),
        ),
    )
    types = pc.index_in(labels, value_set=_LABEL_TEXT)
    offsets = pa.array(pos.offs, pa.int64())
    timestamps = pa.array(pos.stamps, pa.int64())
    topics = topics.cast(pa.string())
    partitions = pa.array(pos.parts, pa.int32())
    if not all(pos.meta):
        present = pa.array(pos.meta, pa.bool_())
        indexes = pa.array(np.arange(start, start + count, dtype=np.int64))
        offsets = pc.if_else(present, offsets, indexes)
        types = pc.if_else(present, types, pa.scalar(0, types.type))
        topics = pc.if_else(present, topics, pa.scalar(topic, pa.string()))
        partitions = pc.if_else(present, partitions, pa.scalar(partition, pa.int32()))
    if types.null_count:
        raise ValueError("unknown timestamp type")
    return pa.RecordBatch.from_arrays(
        [
            offsets,
            timestamps,
            types.cast(pa.int8()),
            _gather(body, pos.keys_s, pos.keys_l, pa.large_binary()).cast(pa.binary()),
            _gather(body, pos.vals_s, pos.vals_l, pa.large_binary()).cast(pa.binary()),
            headers,
            topics,
            partitions,
        ],
        schema=DECODED,
    )
