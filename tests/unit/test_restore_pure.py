"""Pure parts of the restore: Kafka's murmur2, window bounds, gap coverage, object clusters."""

from __future__ import annotations

import pytest

from kcql.selection import Window
from layout.manifest import OffsetGap
from layout.restore.order import clusters, in_gaps
from layout.restore.plan import RestoreObject
from layout.restore.routing import murmur2, murmur2_partition


@pytest.mark.parametrize(
    ("text", "expected"),
    [  # Apache Kafka's UtilsTest.testMurmur2
        ("21", -973932308),
        ("foobar", -790332482),
        ("a-little-bit-long-string", -985981536),
        ("a-little-bit-longer-string", -1486304829),
        ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        ("abc", 479470107),
    ],
)
def test_murmur2_matches_java(text, expected):
    assert murmur2(text.encode()) == expected


def test_murmur2_partition_is_positive():
    assert all(0 <= murmur2_partition(f"k{i}".encode(), 7) < 7 for i in range(1000))


def test_window_bounds_are_half_open():
    window = Window(from_timestamp=10, to_timestamp=20, from_offset=5, to_offset=8)
    assert window.admits(5, 10) and window.admits(7, 19)
    assert not window.admits(8, 15) and not window.admits(6, 20) and not window.admits(4, 15)
    assert not window.admits(6, None)
    assert not window.may_hold(0, 4, 0, 100) and not window.may_hold(5, 9, 20, 30)


def test_gaps_must_cover_every_missing_offset():
    gaps = (
        OffsetGap(first=3, last=4, cause="transaction-markers"),
        OffsetGap(first=5, last=9, cause="compaction"),
    )
    assert in_gaps(3, 9, gaps) and in_gaps(6, 7, gaps)
    assert not in_gaps(2, 4, gaps) and not in_gaps(9, 10, gaps)


def test_interleaved_objects_cluster_and_chains_do_not():
    a, b = (
        RestoreObject(key="a", first_offset=0, last_offset=9),
        RestoreObject(key="b", first_offset=2, last_offset=12),
    )
    c = RestoreObject(key="c", first_offset=13, last_offset=20)
    assert [[o.key for o in group] for group in clusters([a, b, c])] == [["a", "b"], ["c"]]


def test_bounded_call_returns_raises_and_gives_up_on_a_call_that_never_returns():
    import threading
    import time

    from tasks.services.kafka.calls import CallStalledError, bounded_call

    assert bounded_call("answer", lambda: 42, 5) == 42
    with pytest.raises(ZeroDivisionError):
        bounded_call("divide", lambda: 1 / 0, 5)
    release = threading.Event()
    began = time.monotonic()
    with pytest.raises(CallStalledError) as caught:
        bounded_call("wedged", release.wait, 0.5)  # like send_offsets_to_transaction after a restart
    release.set()
    assert caught.value.retryable and caught.value.operation == "wedged"
    assert 0.5 <= time.monotonic() - began < 2


def test_a_stop_request_cuts_a_bounded_call_short(monkeypatch):
    import threading
    import time

    from tasks.runtime import shutdown
    from tasks.services.kafka import calls as kafka_calls

    monkeypatch.setattr(kafka_calls, "STOP_GRACE_S", 0.3)
    release = threading.Event()
    shutdown.request_stop("test")
    try:
        began = time.monotonic()
        with pytest.raises(kafka_calls.CallStalledError):
            kafka_calls.bounded_call("long", release.wait, 60)
        assert time.monotonic() - began < 2
    finally:
        release.set()
        shutdown.clear()


def test_restore_properties_reach_the_selection_but_not_the_restore_id():
    from flows.restore import RestoreParameters, selection_of
    from kcql import KcqlError, parse_restore
    from layout.restore.plan import restore_id

    plain = selection_of(RestoreParameters(kcql="INSERT INTO t SELECT * FROM bkt:p"))
    assert (plain.preflight, plain.target_nonempty) == ("quick", "refuse")
    chosen = selection_of(
        RestoreParameters(
            kcql="INSERT INTO t SELECT * FROM bkt:p "
            "PROPERTIES('restore.preflight'='full', 'restore.target.nonempty'='append', "
            "'restore.timestamp.zero'='substitute')"
        )
    )
    assert plain.timestamp_zero == "refuse"
    assert (chosen.preflight, chosen.target_nonempty, chosen.timestamp_zero) == (
        "full",
        "append",
        "substitute",
    )
    # a rerun with another pre-flight (or append, or substitute) is the same restore: it resumes
    assert restore_id(plain, ["b1"]) == restore_id(chosen, ["b1"])
    with pytest.raises(KcqlError) as error:
        parse_restore("INSERT INTO t SELECT * FROM bkt PROPERTIES('restore.preflight'='deep')")
    assert "'quick' or 'full' or 'none'" in error.value.expected
