"""The restore's check split (digest where one unit wrote a partition, count where several did)
and the failed restore's report, without services."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kcql.selection import Window
from kcql.specs import CodecOptions
from layout.restore.plan import RestoreObject, RestorePlan, RestoreUnit
from tasks.restore.check import compare, split_by_writers
from tasks.restore.committed import CommittedProgress
from tasks.restore.produce import PartitionOutcome, UnitResult
from tasks.restore.report import restore_report, summary, target_progress, unit_reports, unit_rows
from tasks.restore.target import TargetInfo


def _result(unit_id: str, topic: str, partitions: dict[int, int], start: int = 0) -> UnitResult:
    records = sum(partitions.values())
    return UnitResult(
        unit_id=unit_id,
        source_topic="src",
        source_partition=0,
        target_topic=topic,
        routing="murmur2",
        selected=records,
        produced=records,
        resumed_after=0,
        decoded=records,
        bytes=100 * records,
        objects=1,
        seconds=1.0,
        partitions={p: PartitionOutcome(start_offset=start, records=n) for p, n in partitions.items()},
        timestamps_kept=True,
    )


def test_units_sharing_a_target_partition_are_checked_by_count():
    a = _result("src.0", "t", {0: 5, 1: 3})
    b = _result("src.1", "t", {1: 4, 2: 6}, start=2)
    c = _result("src.2", "t", {3: 7})
    d = _result("other.0", "u", {1: 2})
    alone, shared = split_by_writers([a, b, c, d])
    assert [r.unit_id for r in alone] == ["src.2", "other.0"]
    assert {where: [u.unit_id for u in units] for where, units in shared.items()} == {
        ("t", 1): ["src.0", "src.1"]
    }


def _unit(unit_id: str, partition: int, counts: list[int | None]) -> RestoreUnit:
    return RestoreUnit(
        unit_id=unit_id,
        source_topic="src",
        source_partition=partition,
        target_topic="dst",
        target_partition=partition,
        routing="preserve",
        objects=tuple(RestoreObject(key=f"k{partition}/{i}", record_count=n) for i, n in enumerate(counts)),
        offsets_known=True,
        check_gaps=True,
        compare_segments=True,
    )


def _plan(units: list[RestoreUnit], window: Window | None = None) -> RestorePlan:
    return RestorePlan(
        restore_id="r1",
        bucket="b",
        prefix="p",
        format="AVRO",
        envelope=True,
        lossless=True,
        manifest_format=True,
        backup_ids=("b1",),
        codec=CodecOptions(),
        batch=500,
        window=window or Window(),
        partitioner="preserve",
        targets=(),
        units=tuple(units),
        notes=("a note",),
    )


def test_a_failed_restore_reports_per_target_partition_and_renders_once():
    units = [
        _unit("src.0", 0, [10, 10]),
        _unit("src.1", 1, [10, 10]),
        _unit("src.2", 2, [5]),
        _unit("src.3", 3, [None]),
    ]
    plan = _plan(units)
    outcomes = [
        _result("src.0", "dst", {0: 20}),
        RuntimeError("boom"),
        RuntimeError("boom"),
        RuntimeError("x"),
    ]
    committed = {"src.1": CommittedProgress(records=12, starts={1: 0}), "src.2": CommittedProgress(0, {})}
    rows, resume = target_progress(plan, outcomes, committed)
    assert [r.describe() for r in rows] == [
        "dst/0: complete (20 of 20 records committed)",
        "dst/1: partial (12 of 20 records committed)",
        "dst/2: not started (0 records committed)",
        "dst/3: unknown (the committed progress could not be read)",
    ]
    assert resume.startswith("1 complete, 1 partial, 1 not started, 1 unknown (of 4)")
    assert "exactly once" in resume
    unread, _ = target_progress(plan, outcomes, None)  # the progress could not be read at all
    assert [r.status for r in unread] == ["complete", "unknown", "unknown", "unknown"]

    report = restore_report(
        plan,
        [TargetInfo(name="dst", partitions=4, created=True, warnings=["retention"])],
        unit_reports(plan, outcomes),
        dry_run=False,
        started_at=datetime.now(UTC),
        seconds=1.23456,
        notes=["last"],
        progress=rows,
        resume=resume,
    )
    assert not report.ok and report.records == 20 and report.seconds == 1.235
    assert report.notes == ["a note", "retention", "last"]
    assert [u.error for u in report.units] == [
        None,
        "RuntimeError: boom",
        "RuntimeError: boom",
        "RuntimeError: x",
    ]
    text = summary(report)
    assert text.startswith("# Restore r1\n- from: `s3://b/p` backups b1")
    assert "- dst/1: partial (12 of 20 records committed)" in text and "## Resume\n1 complete" in text
    assert [row["status"] for row in unit_rows(report)] == ["done", "failed", "failed", "failed"]


def test_with_a_window_the_expected_count_is_unknown():
    plan = _plan([_unit("src.0", 0, [10])], window=Window(from_offset=3))
    [row], _ = target_progress(plan, [RuntimeError("x")], {"src.0": CommittedProgress(4, {0: 0})})
    assert row.describe() == "dst/0: partial (4 records committed)"


def test_a_failed_unit_is_never_complete_even_with_every_record_committed():
    """Issue 24: a unit that committed all it expected and then failed (its own check, a later step)
    did not finish: the report says so, and the resume summary counts it apart from complete ones."""
    plan = _plan([_unit("src.0", 0, [10, 10]), _unit("src.1", 1, [5])])
    outcomes = [RuntimeError("records digest differs"), _result("src.1", "dst", {1: 5})]
    rows, resume = target_progress(plan, outcomes, {"src.0": CommittedProgress(20, {0: 0})})
    assert [(r.status, r.committed, r.expected) for r in rows] == [
        ("not finished", 20, 20),
        ("complete", 5, 5),
    ]
    assert rows[0].describe() == "dst/0: not finished (20 of 20 records committed, then the unit failed)"
    assert resume.startswith("1 complete, 1 not finished (of 2)")


def test_a_partition_matches_when_count_and_digest_do():
    outcome = PartitionOutcome(start_offset=4, records=3, digest="sha256:aa")
    check = compare("t", 1, outcome, 3, "sha256:aa", True, {0: 4}, 7)
    assert check.ok and check.digest_compared and check.problem is None
    assert (check.target_offsets, check.end_offset) == ({0: 4}, 7)


def test_a_short_partition_is_named_by_its_counts_before_its_digest():
    check = compare("t", 1, PartitionOutcome(start_offset=0, records=3, digest="sha256:aa"), 2, "sha256:bb")
    assert not check.ok and check.problem == "2 records restored, 3 expected"


def test_a_different_digest_names_both():
    check = compare("t", 1, PartitionOutcome(start_offset=0, records=3, digest="sha256:aa"), 3, "sha256:bb")
    assert (
        not check.ok
        and check.problem == "records digest sha256:bb differs from the backup's selection sha256:aa"
    )


def test_records_with_new_timestamps_are_compared_by_count_only():
    check = compare(
        "t", 1, PartitionOutcome(start_offset=0, records=3, digest="sha256:aa"), 3, "sha256:bb", False
    )
    assert check.ok and not check.digest_compared


def test_a_failed_restore_of_3000_partitions_reads_in_a_fixed_number_of_lines(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from kbackup.commands.restore import _print_report

    units = [_unit(f"src.{p}", p, [10, 10]) for p in range(3000)]
    plan = _plan(units)
    outcomes = [
        RuntimeError("boom") if p % 1000 == 7 else _result(f"src.{p}", "dst", {p: 20}) for p in range(3000)
    ]
    committed = {f"src.{p}": CommittedProgress(records=5, starts={p: 0}) for p in (7, 1007, 2007)}
    rows, resume = target_progress(plan, outcomes, committed)
    report = restore_report(
        plan,
        [TargetInfo(name="dst", partitions=3000, created=True)],
        unit_reports(plan, outcomes),
        dry_run=False,
        started_at=datetime.now(UTC),
        seconds=12.0,
        progress=rows,
        resume=resume,
    )
    text = summary(report)
    assert len(text.splitlines()) < 40
    committed_lines = text.split("## What is committed\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert committed_lines[:3] == [f"- dst/{p}: partial (5 of 20 records committed)" for p in (7, 1007, 2007)]
    assert committed_lines[3:] == ["- 2997 units complete (the counts: Resume)"]
    assert len(summary(report, full=True).splitlines()) > 3000

    _print_report(report, full_table=False)
    out = capsys.readouterr().out
    assert len(out.splitlines()) < 70
    assert out.splitlines()[2].split()[:3] == ["dst", "3000", str(report.records)]
    assert (
        "The units most worth a look, 10 of 3000 (failed, slowest, largest; --full-table prints all):" in out
    )
    shown = [line.split()[0] for line in out.split("most worth a look", 1)[1].splitlines()[3:13]]
    assert {"src.7", "src.1007", "src.2007"} <= set(shown)  # the failed units, whatever else
