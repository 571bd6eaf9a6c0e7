"""A run's progress at a glance (tasks/runtime/overview.py): totals and a fixed number of partitions
worth a look, whatever the partition count; a report's long table condensed the same way."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tasks.runtime.overview import MANY_ROWS, TOP_ROWS, condensed, overview
from tasks.runtime.progress import PartitionProgress

Key = tuple[str, int]


@st.composite
def _snapshots(draw: st.DrawFn) -> tuple[dict[Key, PartitionProgress], dict[Key, PartitionProgress]]:
    """A snapshot and an earlier one (each partition's records then at most now)."""
    keys = draw(st.sets(st.tuples(st.sampled_from(["a", "b", "c.d"]), st.integers(0, 3000)), max_size=60))
    now, before = {}, {}
    for key in keys:
        total = draw(st.integers(0, 10_000))
        records = draw(st.integers(0, total))
        now[key] = PartitionProgress(records, total, draw(st.integers(0, 10**9)))
        if draw(st.booleans()):
            before[key] = PartitionProgress(draw(st.integers(0, records)), total, 0)
    return now, before


@given(_snapshots(), st.integers(1, 12), st.floats(0.1, 100))
def test_the_totals_add_up_and_the_partitions_named_are_few(
    snapshots: tuple[dict[Key, PartitionProgress], dict[Key, PartitionProgress]], rows: int, seconds: float
) -> None:
    parts, before = snapshots
    glance = overview(parts, before, seconds, rows=rows)
    assert glance.partitions == len(parts) == glance.done + glance.running + glance.waiting
    assert glance.records == sum(p.records for p in parts.values())
    assert glance.total == sum(p.total for p in parts.values())
    assert glance.bytes == sum(p.bytes for p in parts.values())
    assert len(glance.slowest) <= rows and len(glance.largest) <= rows
    assert len(set(glance.slowest)) == len(glance.slowest)
    running = {k for k, p in parts.items() if 0 < p.records < p.total}
    assert set(glance.slowest) <= running
    assert len(glance.slowest) == min(rows, len(running))
    largest = sorted((p.total for p in parts.values()), reverse=True)[:rows]
    assert [parts[k].total for k in glance.largest] == largest
    assert glance.rate is not None and glance.rate >= 0
    moved = sum(p.records - before.get(k, PartitionProgress()).records for k, p in parts.items())
    assert abs(glance.rate * seconds - moved) <= 1e-6 * max(1, moved)
    assert glance.describe().count("\n") == 0


def test_the_slowest_are_the_longest_remaining_at_their_rate_or_without_one_the_least_done() -> None:
    before = {("t", 0): PartitionProgress(0, 100), ("t", 1): PartitionProgress(0, 1000)}
    parts = {
        ("t", 0): PartitionProgress(10, 100),  # 10 %: 90 left at 1 a second
        ("t", 1): PartitionProgress(500, 1000),  # 50 %: 500 left at 50 a second
        ("t", 2): PartitionProgress(0, 1000),  # waiting: not running, not named
        ("t", 3): PartitionProgress(7, 7),  # done
    }
    glance = overview(parts, before, 10.0)
    assert glance.slowest == (("t", 0), ("t", 1))  # 90 s before 10 s
    assert (glance.done, glance.running, glance.waiting) == (1, 2, 1)
    assert glance.rate == (10 + 500 + 7) / 10
    assert glance.largest[:2] == (("t", 1), ("t", 2))
    assert overview(parts, {**before, ("t", 1): PartitionProgress(500, 1000)}, 10.0).slowest[0] == ("t", 1)
    assert overview(parts).slowest == (("t", 0), ("t", 1))  # the least done first
    assert overview(parts).rate is None
    assert overview(parts).describe() == (
        "1/4 partitions done, 2 running, 1 waiting; 517/2107 records (25 %), 0 B"
    )
    assert overview({}).describe() == "0/0 partitions done, 0 running, 0 waiting; 0/0 records, 0 B"


def test_3000_partitions_name_a_fixed_number_of_partitions() -> None:
    parts = {("t", p): PartitionProgress(p % 100, 100, p) for p in range(3000)}
    glance = overview(parts, rows=5)
    assert len(glance.slowest) == len(glance.largest) == 5
    assert all(parts[k].records == 1 for k in glance.slowest)


def _rows(count: int) -> list[dict[str, object]]:
    return [
        {
            "topic": f"t{p % 3}",
            "partition": p,
            "records": 10 * p,
            "seconds": float(count - p),
            "status": "failed" if p == count // 2 else "done",
        }
        for p in range(count)
    ]


def test_a_short_table_is_not_condensed() -> None:
    rows = _rows(MANY_ROWS)
    assert condensed(rows, topic=lambda r: str(r["topic"]), sums=["records"], largest="records") is None


def test_a_long_table_keeps_totals_per_topic_and_the_rows_worth_a_look() -> None:
    rows = _rows(3000)
    short = condensed(
        rows,
        topic=lambda r: str(r["topic"]),
        sums=["records", "seconds"],
        largest="records",
        slowest="seconds",
        first=lambda r: r["status"] == "failed",
    )
    assert short is not None
    assert (short.of, short.left_out, len(short.rows)) == (3000, 3000 - TOP_ROWS, TOP_ROWS)
    assert short.topics == [
        {
            "topic": f"t{t}",
            "partitions": 1000,
            "records": sum(10 * p for p in range(t, 3000, 3)),
            "seconds": float(sum(3000 - p for p in range(t, 3000, 3))),
        }
        for t in range(3)
    ]
    kept = [r["partition"] for r in short.rows]
    assert kept == sorted(kept)  # in the table's order
    assert 1500 in kept  # the failure first
    assert {0, 1, 2, 3} <= set(kept)  # the slowest
    assert {2999, 2998, 2997, 2996} <= set(kept)  # the largest


def test_the_progress_artifacts_description_stays_a_few_lines_at_3000_partitions() -> None:
    from tasks.runtime.task_runners import progress_description

    parts = {("orders", p): PartitionProgress(p % 3 * 400, 1000, p) for p in range(3000)}
    text = progress_description("Backup b1: records exported", overview(parts))
    assert text.splitlines() == [
        "Backup b1: records exported",
        "",
        "0/3000 partitions done, 2000 running, 1000 waiting; 1200000/3000000 records (40 %), 4.5 MB",
        "",
        "Slowest running: orders/1 (40 %), orders/4 (40 %), orders/7 (40 %), orders/10 (40 %), orders/13 (40 %)",
    ]
    few = {("orders", p): PartitionProgress(5, 10, 0) for p in range(3)}
    assert progress_description("Restore r1", overview(few)).count("\n") == 2  # no partition named
