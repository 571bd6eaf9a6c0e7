"""Timestamps the producer cannot write, and the documented substitute ('restore.timestamp.zero').

librdkafka (and so confluent-kafka) reads a produce timestamp of 0 as "now": a record with
timestamp 0 (1970-01-01T00:00:00Z) would get the restore's wall-clock time. Every other value
is written as it is: negative ones too (librdkafka and the broker keep -1 and -5 as CreateTime),
and far-future ones up to the target topic's `message.timestamp.after.max.ms` (the broker's
limit, not the client's). A record without a timestamp (type NO_TIMESTAMP_TYPE, a null in the
columns) gets the restore's time; the restore says so (`timestamps_kept`).

So a selected record with timestamp 0 is refused before anything is written, unless
'restore.timestamp.zero'='substitute' writes it with SUBSTITUTE_MS — 1 ms later, the nearest
value the client writes — which the digests, the read-back check and the report account for.

Pure: columns in, columns out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from layout.restore.plan import RestoreObject

UNWRITABLE_MS = 0
SUBSTITUTE_MS = 1
PROPERTY = "restore.timestamp.zero"


def zero_rows(timestamps: pa.Array) -> np.ndarray:
    """The indexes of the records whose timestamp is 0 (records without one are not)."""
    found = pc.fill_null(pc.equal(timestamps, UNWRITABLE_MS), False)
    return np.flatnonzero(found.to_numpy(zero_copy_only=False))


def substituted(batch: pa.RecordBatch, rows: np.ndarray) -> pa.RecordBatch:
    """The batch with SUBSTITUTE_MS as the timestamp of `rows` (those of `zero_rows`)."""
    if not len(rows):
        return batch
    column = batch.schema.get_field_index("timestamp")
    values = pc.fill_null(batch.column(column), 0).to_numpy(zero_copy_only=False).copy()
    values[rows] = SUBSTITUTE_MS
    stamps = pa.array(
        values, pa.int64(), mask=~batch.column(column).is_valid().to_numpy(zero_copy_only=False)
    )
    return batch.set_column(column, "timestamp", stamps)


def may_hold_zero(obj: RestoreObject) -> bool:
    """Whether an object's manifest timestamps admit a record with timestamp 0 (its records
    without a timestamp left aside, as the manifest leaves them)."""
    return (
        obj.min_timestamp is not None
        and obj.max_timestamp is not None
        and obj.min_timestamp <= UNWRITABLE_MS <= obj.max_timestamp
    )


def suspects(objects: Sequence[RestoreObject]) -> list[RestoreObject]:
    return [obj for obj in objects if may_hold_zero(obj)]
