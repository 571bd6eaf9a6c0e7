"""The manifest's segment digests, recomputed from a restore's decoded records: each segment's
record count and sha256 over the records' digest inputs (formats.columns). Pure.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pyarrow as pa

from formats.columns import records_digest_inputs, update_digest
from layout.restore.plan import RestoreUnit


def hash_rows(hasher: Any, inputs: pa.LargeBinaryArray, rows: np.ndarray) -> None:
    """Feed the digest inputs of `rows` (increasing indexes) to a hashlib object: one update for
    a contiguous run, else over the rows gathered back to back."""
    if not len(rows):
        return
    first, last = int(rows[0]), int(rows[-1])
    if last - first + 1 == len(rows):
        update_digest(hasher, inputs, first, last + 1)
    else:
        update_digest(hasher, inputs.take(pa.array(rows)))


class SegmentDigests:
    """Recomputes each manifest segment's records digest from the decoded records."""

    def __init__(self, unit: RestoreUnit) -> None:
        self.segments = list(unit.segments) if unit.compare_segments else []
        self.hashers = [hashlib.sha256() for _ in self.segments]
        self.counts = [0] * len(self.segments)

    def add(self, batch: pa.RecordBatch, offsets: np.ndarray) -> pa.LargeBinaryArray | None:
        """Count and hash each record into the first segment holding its offset; returns the
        batch's digest inputs (None when no segment is compared), which the caller may reuse."""
        if not self.segments or not batch.num_rows:
            return None
        inputs = records_digest_inputs(batch)
        owner = np.full(len(offsets), -1, dtype=np.int64)
        for index, segment in enumerate(self.segments):
            owner[(owner < 0) & (offsets >= segment.start_offset) & (offsets < segment.end_offset)] = index
        for index in np.unique(owner):
            if index < 0:
                continue
            rows = np.flatnonzero(owner == index)
            self.counts[index] += len(rows)
            hash_rows(self.hashers[index], inputs, rows)
        return inputs

    def mismatches(self) -> list[str]:
        problems = []
        for segment, hasher, count in zip(self.segments, self.hashers, self.counts, strict=True):
            digest = "sha256:" + hasher.hexdigest()
            if count != segment.record_count:
                problems.append(
                    f"backup {segment.backup_id}: decoded {count} records, the manifest says {segment.record_count}"
                )
            elif digest != segment.records_digest:
                problems.append(
                    f"backup {segment.backup_id}: records digest {digest} of the decoded objects differs "
                    f"from the manifest's {segment.records_digest}"
                )
        return problems
