"""Confluent's wire format for schema-registry values (what `value.converter=avro` declares): byte
0 is the magic byte 0, bytes 1..4 the schema id (big-endian, signed as Java's `getInt` reads it),
then the serialized body (for Avro the schemaless binary encoding under that registry schema).

`schema_ids` and `rewrite_schema_ids` work on whole Arrow arrays at once (numpy over the data
buffer, no Python object per record): a restore to another registry rewrites each value's id to
the id its schema has there. A value shorter than 5 bytes, or whose first byte is not 0, is not in
the wire format and is left alone.

Pure: no Prefect, boto3 or confluent-kafka here.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa

MAGIC = 0
PREFIX = 5
"""Bytes before the body: the magic byte and the 4-byte schema id."""

_OFFSETS = {
    pa.binary(): np.int32,
    pa.string(): np.int32,
    pa.large_binary(): np.int64,
    pa.large_string(): np.int64,
}


def wire_id(value: bytes | None) -> int | None:
    """The schema id of one value in the wire format, None for a null or another value."""
    if value is None or len(value) < PREFIX or value[0] != MAGIC:
        return None
    return int.from_bytes(value[1:PREFIX], "big", signed=True)


def with_schema_id(body: bytes, schema_id: int) -> bytes:
    """`body` (the serialized value) in the wire format with `schema_id`."""
    return bytes([MAGIC]) + schema_id.to_bytes(4, "big", signed=True) + body


def _parts(values: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(data, starts, wire, ids) of a binary array: its data buffer as uint8, each value's start in
    it, which values are in the wire format, and the id of each (0 where not wire)."""
    kind = _OFFSETS.get(values.type)
    if kind is None:
        raise TypeError(f"wire-format values are binary or string, not {values.type}")
    count = len(values)
    _, offsets_buffer, data_buffer = values.buffers()
    if count == 0 or offsets_buffer is None:
        nothing = np.zeros(count, np.int64)
        return np.zeros(0, np.uint8), nothing, np.zeros(count, bool), nothing
    offsets = np.frombuffer(offsets_buffer, kind)[values.offset : values.offset + count + 1].astype(np.int64)
    data = np.zeros(0, np.uint8) if data_buffer is None else np.frombuffer(data_buffer, np.uint8)
    starts = offsets[:-1]
    wire = (offsets[1:] - starts) >= PREFIX
    if values.null_count:
        wire &= values.is_valid().to_numpy(zero_copy_only=False)
    if not wire.any():
        return data, starts, wire, np.zeros(count, np.int64)
    wire &= data[np.where(wire, starts, 0)] == MAGIC
    at = np.where(wire, starts, 0)
    ids = np.zeros(count, np.int64)
    if wire.any():
        raw = np.zeros(count, np.uint32)
        for i in range(1, PREFIX):
            raw = (raw << np.uint32(8)) | data[at + i].astype(np.uint32)
        ids = np.where(wire, raw.view(np.int32).astype(np.int64), 0)
    return data, starts, wire, ids


def _chunks(values: pa.Array | pa.ChunkedArray) -> list[pa.Array]:
    return list(values.chunks) if isinstance(values, pa.ChunkedArray) else [values]


def schema_ids(values: pa.Array | pa.ChunkedArray) -> tuple[set[int], int]:
    """The distinct schema ids of the non-null values in the wire format, and how many non-null
    values are not in it."""
    found: set[int] = set()
    others = 0
    for chunk in _chunks(values):
        _, _, wire, ids = _parts(chunk)
        found.update(int(i) for i in np.unique(ids[wire]))
        others += len(chunk) - chunk.null_count - int(wire.sum())
    return found, others


def rewrite_schema_ids(
    values: pa.Array | pa.ChunkedArray, mapping: Mapping[int, int]
) -> pa.Array | pa.ChunkedArray:
    """The values with each wire-format id that is a key of `mapping` replaced by its mapped id;
    nulls, other values and ids not in `mapping` unchanged. The input object itself when nothing
    changes; a ChunkedArray gives a ChunkedArray of the rewritten chunks."""
    if all(k == v for k, v in mapping.items()):
        return values
    if isinstance(values, pa.ChunkedArray):
        chunks = [_rewritten(chunk, mapping) for chunk in values.chunks]
        if all(new is old for new, old in zip(chunks, values.chunks, strict=True)):
            return values
        return pa.chunked_array(chunks, values.type)
    return _rewritten(values, mapping)


def _rewritten(values: pa.Array, mapping: Mapping[int, int]) -> pa.Array:
    data, starts, wire, ids = _parts(values)
    keys = np.array(sorted(k for k, v in mapping.items() if k != v), np.int64)
    chosen = wire & np.isin(ids, keys)
    if not chosen.any():
        return values
    targets = np.array([mapping[int(k)] for k in keys], np.int64)
    if ((targets < -(1 << 31)) | (targets >= 1 << 31)).any():
        raise ValueError(f"a schema id is 4 bytes: cannot write {targets.min()}..{targets.max()}")
    new_ids = targets[np.searchsorted(keys, ids[chosen])]
    prefix = (new_ids.astype(np.int32).astype(">i4")).view(np.uint8).reshape(-1, 4)
    out = data.copy()
    at = starts[chosen]
    for i in range(4):
        out[at + 1 + i] = prefix[:, i]
    validity, offsets, _ = values.buffers()
    return pa.Array.from_buffers(
        values.type,
        len(values),
        [validity, offsets, pa.py_buffer(out)],
        null_count=values.null_count,
        offset=values.offset,
    )
