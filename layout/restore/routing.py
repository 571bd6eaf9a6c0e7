"""Routing: which target partition each restored record goes to.

Three ways, chosen by the plan for each unit (`RestoreUnit.routing`):
- `preserve`: every record of the unit into one target partition, the source's (or the one
  named by the restore);
- `metadata`: the partition each record's envelope names (the target may have to grow first:
  `TransactionalWriter.grow_topic`);
- `murmur2`: Kafka's default partitioner, the partition Java's producer picks for the record's
  key; records without a key go round robin, like `round-robin` for every record.

Pure functions over a decoded batch's columns; nothing here talks to Kafka.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (Java `Utils.murmur2`), as a signed 32-bit int."""
    length = len(data)
    seed = 0x9747B28C
    m = 0x5BD1E995
    h = (seed ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    rest = length % 4
    tail = length - rest
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def murmur2_partition(key: bytes, partitions: int) -> int:
    """The partition Java's default partitioner picks for a non-null key."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def target_partitions_of(
    routing: str,
    batch: pa.RecordBatch,
    first: int,
    target_partitions: int,
    target_partition: int | None = None,
) -> np.ndarray:
    """The target partition of every record of `batch` (int64), the batch's first record being
    the unit's `first`-th selected record (round robin counts from there). `metadata` routing
    returns the partitions the records name, which may lie beyond `target_partitions`: the caller
    grows the topic or refuses."""
    rows = batch.num_rows
    if routing == "preserve":
        assert target_partition is not None
        return np.full(rows, target_partition, dtype=np.int64)
    if routing == "metadata":
        return batch.column("partition").to_numpy(zero_copy_only=False).astype(np.int64)
    targets = (first + np.arange(rows, dtype=np.int64)) % target_partitions
    keys = batch.column("key")
    if routing == "murmur2" and keys.null_count < rows:
        for index, key in enumerate(keys.to_pylist()):
            if key is not None:
                targets[index] = murmur2_partition(key, target_partitions)
    return targets
