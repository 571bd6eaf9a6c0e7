"""Packing partitions into work units (layout/work_units.py): every partition in exactly one
unit, in order, units of about equal cost, big partitions alone, readable names."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from layout.work_units import Part, pack, partition_ranges, unit_name


def parts_of(sizes: list[tuple[str, int]]) -> list[Part]:
    return [Part(topic, partition, records) for partition, (topic, records) in enumerate(sizes)]


def same(part: Part) -> Part:
    return part


@given(
    st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 10_000)), max_size=300),
    st.integers(1, 16),
    st.integers(1_000, 5_000_000),
)
def test_every_part_in_exactly_one_unit_in_order(sizes, workers, budget) -> None:
    parts = parts_of(sizes)
    units = pack(parts, same, workers=workers, budget=budget)
    flat = [p for u in units for p in u.items]
    assert flat == sorted(parts, key=lambda p: (p.topic, p.partition))
    assert all(u.items for u in units)
    if parts:
        # as many units as workers (when there are parts enough), never one past the budget
        # unless a part alone is over it
        assert len(units) >= min(workers, len(parts))
        for unit in units:
            assert unit.cost <= budget or len(unit.items) == 1 or max(p.cost for p in unit.items) > budget / 2


def test_many_small_partitions_make_few_units() -> None:
    parts = [Part("orders", p, 50, 50 * 1024) for p in range(600)]
    units = pack(parts, same, workers=2)
    assert len(units) == 2
    assert [u.name for u in units] == ["orders[0-299]", "orders[300-599]"]


def test_a_partition_over_the_budget_is_a_unit_of_its_own() -> None:
    parts = [Part("t", 0, 10), Part("t", 1, 10), Part("t", 2, 1_000_000, 10**9), Part("t", 3, 10)]
    units = pack(parts, same, workers=1, budget=8 * 10**8)
    assert [[p.partition for p in u.items] for u in units] == [[0, 1], [2], [3]]


def test_the_data_decides_past_the_workers() -> None:
    parts = [Part("t", p, 1000, 10**8) for p in range(10)]
    units = pack(parts, same, workers=2, budget=31 * 10**7)
    assert len(units) == 4 and all(len(u.items) <= 3 for u in units)


def test_names() -> None:
    assert partition_ranges([0, 1, 2, 3, 7, 9, 10]) == "0-3,7,9-10"
    assert partition_ranges([5]) == "5"
    parts = [Part("orders", p, 1) for p in (0, 1, 2, 3, 7)] + [Part("payments", p, 1) for p in range(3)]
    assert unit_name(parts) == "orders[0-3,7] payments[0-2]"
    many = [Part(f"t{n}", 0, 1) for n in range(5)]
    assert unit_name(many) == "t0[0] t1[0] t2[0] +2 topics"
    assert pack([], same, workers=4) == []
