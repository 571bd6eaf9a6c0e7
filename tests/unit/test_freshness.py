"""Freshness per topic (layout/freshness.py, tasks/backup/freshness.py): the lag a backup leaves
behind from given log-end offsets, its bytes estimated, the newest record; a log end that cannot
be read records an unknown lag and never fails; the manifest's checks of the entries
(layout/manifest_checks.py), in tests/unit/test_manifest_checks.py's style."""

from __future__ import annotations

import functools
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from layout.freshness import estimated_lag_bytes, lag_records, newest_record_ms, topic_freshness
from layout.manifest import Manifest, PartitionEntry, TopicFreshness
from layout.manifest_checks import manifest_problems
from tasks.backup import freshness as measuring
from tasks.services.errors import BrokerUnavailableError
from tasks.services.object_store import MemoryStore
from tests.support.memory_backup import T0, Partitions, backup, messages, plan_of, spec_of

BUCKET = "bkt"
KCQL = f"INSERT INTO {BUCKET}:nightly SELECT * FROM orders STOREAS AVRO PROPERTIES('store.envelope'=true, 'flush.count'=8)"
SNAPSHOT = datetime(2026, 12, 7, 19, 0, tzinfo=UTC)
MEASURED = SNAPSHOT + timedelta(seconds=30)


def _partition(topic: str, partition: int, end: int, records: int, size: int) -> PartitionEntry:
    return PartitionEntry(
        topic=topic,
        partition=partition,
        start_offset=0,
        end_offset=end,
        record_count=records,
        byte_count=size,
        records_digest="sha256:" + "0" * 64,
    )


def test_lag_is_the_records_between_each_end_offset_and_its_log_end() -> None:
    parts = [_partition("t", 0, 10, 10, 1000), _partition("t", 1, 5, 5, 500)]
    assert lag_records(parts, {("t", 0): 10, ("t", 1): 5}) == 0
    assert lag_records(parts, {("t", 0): 13, ("t", 1): 9}) == 7
    # a log end read below the end offset (another isolation level, a truncated log) is no lag
    assert lag_records(parts, {("t", 0): 8, ("t", 1): 9}) == 4
    assert lag_records(parts, {("t", 0): 13}) is None  # one partition's log end missing: unknown
    assert lag_records(parts, None) is None
    # bytes: the lag times this backup's 100 bytes a record
    assert estimated_lag_bytes(parts, 7) == 700
    assert estimated_lag_bytes(parts, 0) == 0
    assert estimated_lag_bytes(parts, None) is None
    assert estimated_lag_bytes([_partition("t", 0, 10, 0, 0)], 3) is None  # nothing to estimate from


@given(
    st.lists(
        st.tuples(st.integers(0, 10**9), st.integers(0, 10**6), st.integers(-(10**6), 10**6)),
        min_size=1,
        max_size=20,
    )
)
def test_lag_records_given_log_ends_at_or_past_the_end_offsets(cases: list[tuple[int, int, int]]) -> None:
    parts = [_partition("t", n, end, min(end, 5), 50 * min(end, 5)) for n, (end, _, _) in enumerate(cases)]
    ends = {("t", n): end + ahead for n, (end, ahead, _) in enumerate(cases)}
    lag = lag_records(parts, ends)
    assert lag == sum(ahead for _, ahead, _ in cases)
    anywhere = {("t", n): max(0, end + moved) for n, (end, _, moved) in enumerate(cases)}
    some = lag_records(parts, anywhere)
    assert some is not None and some >= 0
    estimate = estimated_lag_bytes(parts, lag)
    assert estimate is None or estimate == 50 * lag


@functools.cache
def _backed_up() -> tuple[Manifest, Partitions]:
    store = MemoryStore()
    store.create_bucket(BUCKET)
    source = Partitions("orders", {0: messages(range(20)), 1: messages(range(3)), 2: []})
    return backup(store, KCQL, source), source


def test_entries_name_each_topic_with_its_newest_record() -> None:
    manifest, _ = _backed_up()
    ends = {(p.topic, p.partition): p.end_offset + 2 for p in manifest.partitions}
    [entry] = topic_freshness(["orders"], manifest.partitions, SNAPSHOT, MEASURED, ends)
    assert entry.topic == "orders" and entry.newest_record_ms == T0 + 19
    assert entry.lag_records == 2 * len(manifest.partitions)
    per_record = manifest.byte_count / manifest.record_count
    assert entry.lag_bytes == round(entry.lag_records * per_record)
    assert (entry.snapshot_at, entry.measured_at) == (SNAPSHOT, MEASURED)
    # a topic of the backup with no record in it: no newest record, and no bytes to estimate from
    empty = _partition("quiet", 0, 4, 0, 0)
    [_, quiet] = topic_freshness(["orders", "quiet"], [*manifest.partitions, empty], SNAPSHOT, MEASURED, None)
    assert (quiet.newest_record_ms, quiet.lag_records, quiet.lag_bytes) == (None, None, None)
    assert newest_record_ms([empty]) is None


def test_the_log_ends_are_read_once_for_all_partitions(monkeypatch: pytest.MonkeyPatch) -> None:
    manifest, source = _backed_up()
    plan = plan_of(spec_of(KCQL), source).model_copy(update={"started_at": SNAPSHOT})
    calls: list[tuple[list[tuple[str, int]], str]] = []

    def read(config: Any, partitions: list[tuple[str, int]], isolation: str) -> dict[tuple[str, int], int]:
        calls.append((partitions, isolation))
        return {where: 25 for where in partitions}

    monkeypatch.setattr(measuring, "log_end_offsets", read)
    [entry] = measuring.measure_freshness(plan, list(manifest.partitions), {}, logging.getLogger("t"))
    assert calls == [([("orders", 0), ("orders", 1), ("orders", 2)], "read_committed")]
    assert entry.lag_records == (25 - 20) + (25 - 3) + (25 - 0)
    assert entry.snapshot_at == SNAPSHOT and entry.measured_at >= SNAPSHOT


def test_log_ends_that_cannot_be_read_leave_the_lag_unknown_and_warn(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    manifest, source = _backed_up()
    plan = plan_of(spec_of(KCQL), source)

    def unreachable(*_: Any) -> dict[tuple[str, int], int]:
        raise BrokerUnavailableError("127.0.0.1:1", "metadata request: timed out")

    monkeypatch.setattr(measuring, "log_end_offsets", unreachable)
    with caplog.at_level(logging.WARNING):
        [entry] = measuring.measure_freshness(plan, list(manifest.partitions), {}, logging.getLogger("t"))
    assert (entry.lag_records, entry.lag_bytes) == (None, None)
    assert entry.newest_record_ms == T0 + 19  # what the backup holds is known all the same
    assert "could not read the log-end offsets of its 3 partitions" in caplog.text
    assert "127.0.0.1:1" in caplog.text


# The manifest's checks of the entries.


def _fresh(**changes: Any) -> Manifest:
    manifest, _ = _backed_up()
    entry = TopicFreshness(
        topic="orders",
        snapshot_at=SNAPSHOT,
        newest_record_ms=T0 + 19,
        measured_at=MEASURED,
        lag_records=0,
        lag_bytes=0,
    )
    return manifest.model_copy(update={"freshness": (entry.model_copy(update=changes),)})


def _fields(manifest: Manifest) -> set[str]:
    return {p.field for p in manifest_problems(manifest, "nightly")}


def test_a_sound_entry_passes_and_manifests_without_freshness_still_read() -> None:
    assert manifest_problems(_fresh(), "nightly") == []
    older = json.loads(_fresh().model_dump_json())
    del older["freshness"]  # a manifest written before freshness existed
    assert Manifest.model_validate(older).freshness == ()
    assert Manifest.model_validate_json(_fresh().model_dump_json()) == _fresh()


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"topic": "payments"}, "freshness[0].topic", "not a topic of the backup"),
        ({"lag_records": -1}, "freshness[0].lag_records", "-1, it cannot be less than 0"),
        ({"lag_bytes": -5}, "freshness[0].lag_bytes", "-5, it cannot be less than 0"),
        (
            {"measured_at": SNAPSHOT - timedelta(seconds=1)},
            "freshness[0].measured_at",
            "before its snapshot_at",
        ),
        (
            {"newest_record_ms": T0 + 99},
            "freshness[0].newest_record_ms",
            f"newest timestamp its objects hold is {T0 + 19}",
        ),
        ({"newest_record_ms": None}, "freshness[0].newest_record_ms", "None, but"),
    ],
)
def test_an_impossible_entry_is_named(changes: dict[str, Any], field: str, reason: str) -> None:
    problems = manifest_problems(_fresh(**changes), "nightly")
    assert [p.field for p in problems] == [field]
    assert reason in problems[0].reason


def test_a_topic_listed_twice_is_named() -> None:
    manifest = _fresh()
    twice = manifest.model_copy(update={"freshness": manifest.freshness * 2})
    problems = manifest_problems(twice, "nightly")
    assert [(p.field, p.reason) for p in problems] == [("freshness[1].topic", "listed twice")]
