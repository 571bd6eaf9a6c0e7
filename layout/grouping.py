"""PARTITIONBY grouping: a consumed batch split by its records' partition values.

The values come from the statement's PARTITIONBY fields (layout.partition_values), with the
headers the connector config's SMTs compute (layout.transforms) visible to `_header.` fields.
Without PARTITIONBY a batch is one group whose values are ().
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa

from formats.columns import to_records
from kcql import BackupSpec, Transform
from layout.spec_bridge import partition_values_for
from layout.transforms import compile_transforms


class PartitionGrouping:
    """PARTITIONBY: a batch split by its records' partition values (one group, (), without)."""

    def __init__(
        self,
        spec: BackupSpec,
        topic: str,
        partition: int,
        transforms: tuple[Transform, ...],
        avro_schemas: Callable[[int], Any] | None = None,
    ) -> None:
        self.values = partition_values_for(spec, avro_schemas)
        self.header_transforms = compile_transforms(transforms)
        self.topic, self.partition = topic, partition

    def groups(
        self, batch: pa.RecordBatch, inputs: pa.Array
    ) -> Iterator[tuple[tuple[str | None, ...], pa.RecordBatch, pa.Array]]:
        """(partition values, the rows holding them, their digest inputs), in first-seen order."""
        if batch.num_rows == 0:
            return
        if self.values is None:
            yield (), batch, inputs
            return
        rows: dict[tuple[str | None, ...], list[int]] = {}
        for index, record in enumerate(to_records(batch, self.topic, self.partition)):
            extra = [header for transform in self.header_transforms for header in transform(record)]
            rows.setdefault(self.values.of(record, extra), []).append(index)
        if len(rows) == 1:
            yield next(iter(rows)), batch, inputs
            return
        for values, indices in rows.items():
            taken = pa.array(indices, pa.int64())
            yield values, batch.take(taken), inputs.take(taken)
