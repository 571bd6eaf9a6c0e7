"""Export batches (formats.columns.COLUMNS) for codec tests: values only, the other parts empty."""

from __future__ import annotations

import pyarrow as pa

from formats.columns import COLUMNS


def value_batch(values: list[bytes | None], first: int = 0) -> pa.RecordBatch:
    """One record a value, offsets from `first`, no key, timestamp or headers."""
    return pa.RecordBatch.from_pylist(
        [
            {
                "offset": first + i,
                "timestamp": None,
                "timestamp_type": 0,
                "key": None,
                "value": v,
                "headers": [],
            }
            for i, v in enumerate(values)
        ],
        schema=COLUMNS,
    )
