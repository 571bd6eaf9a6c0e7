"""Reading many windows through one consumer (tasks/services/kafka/reader.py), its pure parts: a
consumed batch split into per-partition runs cut at each window's end, which partitions it
finishes, and how many partitions are assigned at once."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from tasks.services.kafka.reader import assignable, split_runs


@dataclass(frozen=True)
class Fake:
    """What split_runs reads of a confluent-kafka Message."""

    t: str
    p: int
    o: int

    def topic(self) -> str:
        return self.t

    def partition(self) -> int:
        return self.p

    def offset(self) -> int:
        return self.o

    def error(self) -> None:
        return None


def offsets(runs: list) -> list[tuple[str, int, list[int]]]:
    return [(t, p, [m.offset() for m in run]) for t, p, run in runs]


def test_interleaved_partitions_become_one_run_each_in_offset_order() -> None:
    batch = [Fake("a", 0, 0), Fake("a", 1, 5), Fake("a", 0, 1), Fake("b", 0, 7), Fake("a", 1, 6)]
    runs, finished = split_runs(batch, [], {("a", 0): 10, ("a", 1): 10, ("b", 0): 10})  # type: ignore[arg-type]
    assert offsets(runs) == [("a", 0, [0, 1]), ("a", 1, [5, 6]), ("b", 0, [7])]
    assert finished == []


def test_a_window_finishes_at_its_last_offset_and_nothing_past_its_end_is_kept() -> None:
    batch = [Fake("a", 0, o) for o in range(3, 9)] + [Fake("a", 1, o) for o in range(0, 4)]
    runs, finished = split_runs(batch, [], {("a", 0): 6, ("a", 1): 4})  # type: ignore[arg-type]
    assert offsets(runs) == [("a", 0, [3, 4, 5]), ("a", 1, [0, 1, 2, 3])]
    assert finished == [("a", 0), ("a", 1)]


def test_a_hole_over_the_last_offset_finishes_the_window() -> None:
    # end 10: offset 9 is a transaction marker, so 11 comes after 8
    runs, finished = split_runs([Fake("a", 0, 8), Fake("a", 0, 11)], [], {("a", 0): 10})  # type: ignore[arg-type]
    assert offsets(runs) == [("a", 0, [8])]
    assert finished == [("a", 0)]
    # a batch holding only records past the end finishes it with no run
    runs, finished = split_runs([Fake("a", 0, 12)], [], {("a", 0): 10})  # type: ignore[arg-type]
    assert runs == [] and finished == [("a", 0)]


def test_the_end_of_a_partition_finishes_its_window() -> None:
    runs, finished = split_runs(
        [Fake("a", 0, 4)], [Fake("a", 0, 7), Fake("a", 1, 3)], {("a", 0): 9, ("a", 1): 9}
    )  # type: ignore[arg-type]
    assert offsets(runs) == [("a", 0, [4])]
    assert finished == [("a", 0), ("a", 1)]


def test_partitions_not_being_read_are_dropped() -> None:
    batch = [Fake("a", 0, 9), Fake("a", 1, 0)]
    runs, finished = split_runs(batch, [Fake("a", 0, 10)], {("a", 1): 5})  # type: ignore[arg-type]
    assert offsets(runs) == [("a", 1, [0])]
    assert finished == []


@given(
    st.dictionaries(
        st.tuples(st.sampled_from("ab"), st.integers(0, 3)),
        st.tuples(st.integers(0, 20), st.integers(0, 20), st.booleans()),
        max_size=8,
    ),
    st.randoms(use_true_random=False),
)
def test_runs_keep_each_partitions_records_before_its_end_in_order(windows, rng) -> None:
    """Whatever the interleaving: every record before its window's end is in its partition's run,
    in offset order; a partition is finished when a record at or past end - 1, or its
    end-of-partition event, came."""
    streams = {
        tp: [Fake(tp[0], tp[1], o) for o in range(first, first + n)] for tp, (first, n, _) in windows.items()
    }
    ends = {tp: first + n // 2 + 1 for tp, (first, n, _) in windows.items()}
    batch: list[Fake] = []
    cursors = dict.fromkeys(streams, 0)
    while any(cursors[tp] < len(s) for tp, s in streams.items()):
        tp = rng.choice([tp for tp, s in streams.items() if cursors[tp] < len(s)])
        batch.append(streams[tp][cursors[tp]])
        cursors[tp] += 1
    events = [Fake(tp[0], tp[1], -1) for tp, (_, _, eof) in windows.items() if eof]
    runs, finished = split_runs(batch, events, ends)  # type: ignore[arg-type]
    got = {(t, p): [m.offset() for m in run] for t, p, run in runs}
    for tp, stream in streams.items():
        wanted = [m.o for m in stream if m.o < ends[tp]]
        assert got.get(tp, []) == wanted
        reached = bool(stream) and stream[-1].o >= ends[tp] - 1
        assert (tp in finished) == (reached or windows[tp][2])
    assert len(set(finished)) == len(finished)


def test_partitions_are_assigned_within_the_budget_one_at_least() -> None:
    assert assignable([50] * 10, 0, 200) == 4
    assert assignable([50] * 10, 150, 200) == 1
    assert assignable([50] * 10, 200, 200) == 0
    assert assignable([500, 10], 0, 200) == 1  # over the budget alone, when nothing is held
    assert assignable([500], 10, 200) == 0
    assert assignable([], 0, 200) == 0
    assert assignable(iter([1] * 1000), 0, 10**6) == 1000
