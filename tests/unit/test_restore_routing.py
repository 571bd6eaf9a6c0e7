"""Routing of restored records (layout.restore.routing): pure, over a decoded batch's columns."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from layout.restore.routing import murmur2_partition, target_partitions_of


def _batch(keys: list[bytes | None], partitions: list[int] | None = None) -> pa.RecordBatch:
    columns = {"key": pa.array(keys, pa.large_binary())}
    if partitions is not None:
        columns["partition"] = pa.array(partitions, pa.int32())
    return pa.RecordBatch.from_pydict(columns)


def test_preserve_sends_every_record_to_the_units_partition():
    targets = target_partitions_of("preserve", _batch([b"a", None, b"c"]), 7, 12, target_partition=5)
    assert targets.tolist() == [5, 5, 5] and targets.dtype == np.int64


def test_metadata_routing_returns_the_partitions_the_records_name_even_beyond_the_target():
    batch = _batch([b"a", b"b", None], partitions=[0, 9, 2])
    assert target_partitions_of("metadata", batch, 0, 3).tolist() == [0, 9, 2]


def test_round_robin_counts_from_the_units_selected_records_so_far():
    batch = _batch([b"a", b"b", b"c", b"d"])
    assert target_partitions_of("round-robin", batch, 5, 3).tolist() == [2, 0, 1, 2]


@given(
    keys=st.lists(st.one_of(st.none(), st.binary(max_size=24)), min_size=1, max_size=40),
    first=st.integers(min_value=0, max_value=10_000),
    partitions=st.integers(min_value=1, max_value=64),
)
def test_murmur2_routes_keys_like_javas_partitioner_and_keyless_records_round_robin(keys, first, partitions):
    targets = target_partitions_of("murmur2", _batch(keys), first, partitions).tolist()
    for index, (key, target) in enumerate(zip(keys, targets, strict=True)):
        if key is None:
            assert target == (first + index) % partitions
        else:
            assert target == murmur2_partition(key, partitions)
