"""A prefix's status per topic (layout/status.py) from backups made in memory and drill evidence
written by hand: the newest restorable point and its age, the newest record (from older backups
when the newest holds none), the lag, the last drill; `kbackup status` (table, --json, an empty
prefix) and `kbackup ls`'s drills table with its recovery-time trend."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kbackup.cli import EXIT_FAILED, EXIT_OK, main
from layout.freshness import topic_freshness
from layout.manifest import Manifest
from layout.status import PrefixStatus, drill_rows, human_age, prefix_status, recovery_trend, status_rows
from tasks.services.drill_store import write_drill
from tasks.services.manifest_store import write_manifest
from tasks.services.object_store import MemoryStore
from tests.support.drill_evidence import evidence
from tests.support.memory_backup import T0, Partitions, backup, messages

BUCKET = "bkt"
KCQL = f"INSERT INTO {BUCKET}:nightly SELECT * FROM orders STOREAS AVRO PROPERTIES('store.envelope'=true)"
START = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _with_freshness(store: MemoryStore, manifest: Manifest, lag: int) -> Manifest:
    """The manifest as the backup flow commits it: with its freshness, the log ends `lag` records on."""
    ends = {(p.topic, p.partition): p.end_offset + lag for p in manifest.partitions}
    entries = topic_freshness(
        ["orders"], manifest.partitions, manifest.started_at, manifest.finished_at, ends
    )
    fresh = manifest.model_copy(update={"freshness": entries})
    store.delete(BUCKET, f"nightly/_manifests/{manifest.backup_id}.json")
    write_manifest(store, BUCKET, "nightly", fresh)
    return fresh


def _prefix() -> tuple[MemoryStore, Manifest, Manifest]:
    """Two backups an hour apart; the second holds no new record (nothing was produced meanwhile)."""
    store = MemoryStore()
    store.create_bucket(BUCKET)
    source = Partitions("orders", {0: messages(range(10)), 1: messages(range(4))})
    first = _with_freshness(store, backup(store, KCQL, source, at=START), lag=0)
    second = backup(store, KCQL, source, previous=first, at=START + timedelta(hours=1))
    return store, first, _with_freshness(store, second, lag=3)


def test_status_names_the_newest_point_its_record_and_its_lag() -> None:
    store, first, second = _prefix()
    now = START + timedelta(hours=1, minutes=5)
    status = prefix_status(BUCKET, "nightly", [first, second], [], now)
    [row] = status.topics
    assert (row.topic, row.restore_point, row.restore_point_at) == (
        "orders",
        second.backup_id,
        second.started_at,
    )
    assert row.restore_point_age_s == 300.0  # the RPO as it stands: five minutes
    # the newest backup holds no record: the newest record is the first backup's
    assert second.freshness[0].newest_record_ms is None
    assert row.newest_record_at == datetime.fromtimestamp((T0 + 9) / 1000, UTC)
    assert row.newest_record_age_s == pytest.approx((now - row.newest_record_at).total_seconds())
    assert (row.lag_records, row.lag_bytes_estimated) == (6, None)  # 3 a partition; no records to estimate
    assert row.last_drill is None
    assert status_rows(status)[0]["last drill"] == "never"
    assert (status.restore_points, status.drills) == (2, 0)


def test_manifests_without_freshness_show_an_unknown_lag_and_their_objects_newest_record() -> None:
    store = MemoryStore()
    store.create_bucket(BUCKET)
    older = backup(store, KCQL, Partitions("orders", {0: messages(range(5))}), at=START)
    [row] = prefix_status(BUCKET, "nightly", [older], [], START + timedelta(seconds=30)).topics
    assert row.newest_record_at == datetime.fromtimestamp((T0 + 4) / 1000, UTC)
    assert (row.lag_records, row.lag_bytes_estimated, row.lag_measured_at) == (None, None, None)
    assert (
        status_rows(
            PrefixStatus(bucket=BUCKET, prefix="", at=START, restore_points=1, drills=0, topics=(row,))
        )[0]["lag records"]
        == "?"
    )


def test_the_last_drill_of_a_point_holding_the_topic_shows_with_its_recovery_time() -> None:
    _, first, second = _prefix()
    passed = evidence(BUCKET, "nightly", first, START + timedelta(hours=2), seconds=10.0)
    failed = evidence(BUCKET, "nightly", second, START + timedelta(hours=3), seconds=4.0, result="failed")
    now = START + timedelta(hours=4)
    [row] = prefix_status(BUCKET, "nightly", [first, second], [passed, failed], now).topics
    assert row.last_drill is not None
    assert (row.last_drill.drill_id, row.last_drill.result) == (failed.drill_id, "failed")
    assert (row.last_drill.age_s, row.last_drill.recovery_s) == (3600.0, 4.0)
    assert "digest differs" in (row.last_drill.problem or "")
    [only_passed] = prefix_status(BUCKET, "nightly", [first, second], [passed], now).topics
    assert only_passed.last_drill is not None and only_passed.last_drill.backup_id == first.backup_id


def test_a_broken_chain_is_no_restore_point() -> None:
    _, first, second = _prefix()
    [row] = prefix_status(BUCKET, "nightly", [second], [], START).topics  # its full backup is gone
    assert row.restore_point is None and row.restore_point_age_s is None
    assert (
        status_rows(prefix_status(BUCKET, "nightly", [second], [], START))[0]["restore point"]
        == "none restorable"
    )


def test_the_status_is_json_with_stable_names_that_reads_back() -> None:
    _, first, second = _prefix()
    drill = evidence(BUCKET, "nightly", second, START + timedelta(hours=2))
    status = prefix_status(BUCKET, "nightly", [first, second], [drill], START + timedelta(hours=3))
    document = json.loads(status.model_dump_json())
    assert set(document) == {"bucket", "prefix", "at", "restore_points", "drills", "topics"}
    assert set(document["topics"][0]) == {
        "topic",
        "restore_point",
        "restore_point_at",
        "restore_point_age_s",
        "newest_record_at",
        "newest_record_age_s",
        "lag_records",
        "lag_bytes_estimated",
        "lag_measured_at",
        "last_drill",
        "access",
    }
    assert document["topics"][0]["restore_point_at"].startswith("2026-12-07T13:00:00")
    assert PrefixStatus.model_validate_json(status.model_dump_json()) == status


@given(st.floats(min_value=-1e8, max_value=1e8, allow_nan=False))
def test_every_age_reads_in_one_unit_pair(seconds: float) -> None:
    text = human_age(seconds)
    assert text.startswith("in ") == (seconds <= -1)
    assert text.removeprefix("in ").split(" ")[1] in {"s", "min", "h", "d"}


def test_ages_in_words() -> None:
    assert [human_age(s) for s in (None, 5, 59.9, 60, 3599, 3600 + 5 * 60, 86400 * 2 + 3600 * 4)] == [
        "-",
        "5 s",
        "59 s",
        "1 min",
        "59 min",
        "1 h 05 min",
        "2 d 04 h",
    ]


@given(st.floats(min_value=0.001, max_value=1e6), st.floats(min_value=0.001, max_value=1e6))
def test_the_trend_is_the_change_against_the_previous_time(seconds: float, previous: float) -> None:
    trend = recovery_trend(seconds, previous)
    assert trend.endswith(" %") and trend[0] in "+-"
    change = float(trend.removesuffix(" %"))
    assert change == pytest.approx(100 * (seconds - previous) / previous, abs=0.5)
    assert recovery_trend(seconds, None) == "-"


def test_the_drills_table_trends_against_the_previous_passed_drill() -> None:
    _, first, second = _prefix()
    drills = [
        evidence(BUCKET, "nightly", first, START + timedelta(hours=2), seconds=10.0),
        evidence(BUCKET, "nightly", second, START + timedelta(hours=3), seconds=3.0, result="failed"),
        evidence(BUCKET, "nightly", second, START + timedelta(hours=4), seconds=11.2),
    ]
    rows = drill_rows(list(reversed(drills)))
    assert [(r["drill"], r["result"], r["recovery time"], r["trend"]) for r in rows] == [
        (drills[0].drill_id, "passed", "10.0 s", "-"),
        (drills[1].drill_id, "failed", "3.0 s", "-"),
        (drills[2].drill_id, "passed", "11.2 s", "+12 %"),
    ]
    assert rows[2]["restore point"] == second.backup_id


# The commands, on a MemoryStore.


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> MemoryStore:
    store, first, second = _prefix()
    write_drill(
        store, BUCKET, "nightly", evidence(BUCKET, "nightly", first, START + timedelta(hours=2), 10.0)
    )
    write_drill(
        store, BUCKET, "nightly", evidence(BUCKET, "nightly", second, START + timedelta(hours=3), 9.0)
    )
    monkeypatch.setattr("tasks.services.object_store.open_store", lambda: store)
    return store


def test_status_prints_a_row_per_topic_and_json(
    store: MemoryStore, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", f"s3://{BUCKET}/nightly"]) == EXIT_OK
    out = capsys.readouterr().out
    header, rule, row = out.splitlines()
    for column in ("topic", "restore point", "RPO (age)", "newest record", "lag records", "lag bytes (est.)"):
        assert column in header
    assert row.split()[0] == "orders" and " passed " in row and "9.0 s" in row
    assert main(["status", f"s3://{BUCKET}/nightly", "--json"]) == EXIT_OK
    document = json.loads(capsys.readouterr().out)
    assert document["topics"][0]["lag_records"] == 6
    assert document["topics"][0]["last_drill"]["result"] == "passed"


def test_status_of_an_empty_prefix_says_so(store: MemoryStore, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", f"s3://{BUCKET}/elsewhere"]) == EXIT_FAILED
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == f"kbackup status: no backup under s3://{BUCKET}/elsewhere"
    assert main(["status", "s3://no-such-bucket/nightly"]) == EXIT_FAILED
    assert "no-such-bucket" in capsys.readouterr().err


def test_ls_shows_the_drills_and_each_points_last_drill(
    store: MemoryStore, capsys: pytest.CaptureFixture[str]
) -> None:
    from kbackup.commands import ls

    assert ls.run(argparse.Namespace(location=f"s3://{BUCKET}/nightly", objects=False)) == EXIT_OK
    points, drills = capsys.readouterr().out.split("\n\n")[:2]
    assert "last drill" in points.splitlines()[0]
    assert all("passed 2026-12-07" in line for line in points.splitlines()[2:])
    header, _, *rows = drills.splitlines()
    assert header.split()[:2] == ["drill", "restore"] and "trend" in header
    assert len(rows) == 2 and "-10 %" in rows[1]


def test_the_demo_ends_with_the_status_of_its_prefixes(capsys: pytest.CaptureFixture[str]) -> None:
    from kbackup.demo import BUCKET as DEMO_BUCKET
    from kbackup.demo import print_status

    store = MemoryStore()
    store.create_bucket(DEMO_BUCKET)
    for topic in ("payments", "sales"):
        kcql = f"INSERT INTO {DEMO_BUCKET}:{topic} SELECT * FROM {topic} STOREAS AVRO PROPERTIES('store.envelope'=true)"
        backup(store, kcql, Partitions(topic, {0: messages(range(3))}))
    print_status(store, ("payments", "sales"))
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("Status of the demo's backups")
    assert lines[1].split()[:2] == ["prefix", "topic"]
    assert [line.split()[:2] for line in lines[3:]] == [
        [f"s3://{DEMO_BUCKET}/payments", "payments"],
        [f"s3://{DEMO_BUCKET}/sales", "sales"],
    ]
