"""What the commands print about a run: a backup's report as its artifacts have it (rendered once,
in tasks/backup/report.py), and a run that did not complete (kbackup.cli.failed_run)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from kbackup.cli import failed_run
from kbackup.commands.backup import print_results
from kbackup.console import LocationError, table
from layout.manifest import Manifest, ObjectEntry, OffsetGap, PartitionEntry, TopicEntry
from tasks.backup.report import BackupResult, partition_rows, summary
from tasks.backup.verify import VerifyReport
from tasks.services.errors import BucketNotFoundError


def _partition(
    partition: int, records: int, seconds: float, gaps: tuple[OffsetGap, ...] = ()
) -> PartitionEntry:
    objects = tuple(
        ObjectEntry(
            key=f"nightly/orders/{partition}/{last:020d}.avro",
            first_offset=last - 9,
            last_offset=last,
            record_count=10,
            min_timestamp=0,
            max_timestamp=0,
            size=1000,
            sha256="sha",
            records_digest="digest",
        )
        for last in range(9, records, 10)
    )
    return PartitionEntry(
        topic="orders",
        partition=partition,
        start_offset=0,
        end_offset=records + sum(g.last - g.first + 1 for g in gaps),
        record_count=records,
        byte_count=1000 * len(objects),
        records_digest="digest",
        gaps=gaps,
        objects=objects,
        seconds=seconds,
    )


def _result(backup_id: str, *partitions: PartitionEntry) -> BackupResult:
    manifest = Manifest(
        backup_id=backup_id,
        previous_backup_id=None,
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        finished_at=datetime(2026, 1, 1, tzinfo=UTC),
        kcql="INSERT INTO bkt:nightly SELECT * FROM orders STOREAS AVRO",
        spec={"format": "AVRO"},
        format="AVRO",
        extension="avro",
        lossless=True,
        cluster_id="c1",
        topics=(TopicEntry(name="orders", partition_count=2, replication_factor=1),),
        partitions=partitions,
    )
    verification = VerifyReport(
        backup_id=backup_id,
        depth="sampled",
        objects_checked=5,
        objects_decoded=1,
        records_decoded=10,
        problems=[],
    )
    return BackupResult(
        manifest_key=f"nightly/_manifests/{backup_id}.json", manifest=manifest, verification=verification
    )


def test_the_command_line_prints_the_backup_report_as_the_artifacts_have_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    first = _result(
        "b1",
        _partition(0, 30, 0.5),
        _partition(1, 20, 0.0, (OffsetGap(first=3, last=4, cause="compaction"),)),
    )
    second = _result("b2", _partition(0, 10, 1.0))
    print_results([first, second])
    out = capsys.readouterr().out
    assert out == "\n".join(
        [table(partition_rows(first)), summary(first), "", table(partition_rows(second)), summary(second), ""]
    )
    rows = partition_rows(first)
    assert [(r["partition"], r["records"], r["objects"], r["gaps"], r["MB/s"]) for r in rows] == [
        (0, 30, 3, 0, 0.01),
        (1, 20, 2, 1, ""),  # no export time: no rate (not None in a table)
    ]
    text = summary(first)
    assert "- 50 records, 5000 bytes, 5 objects" in text  # the line `kbackup backup`'s users read
    assert "- manifest: `nightly/_manifests/b1.json` (previous: none)" in text
    assert "- verification (sampled): 5 objects checked, 1 decoded" in text
    assert text.endswith("## Offset gaps\n- orders/1: offsets 3–4 (compaction)")


class _State:
    """A flow run's final state as the commands see it."""

    def __init__(self, name: str, error: BaseException | None) -> None:
        self.name = name
        self.error = error

    def result(self) -> Any:
        if self.error is not None:
            raise self.error
        return None


def test_a_run_that_failed_with_an_expected_error_is_said_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    state: Any = _State("Failed", BucketNotFoundError("bkt", "http://s3"))
    assert failed_run("backup", state, "the backup", "the backup failed: ") == 1
    assert (
        capsys.readouterr().err
        == "kbackup backup: the backup failed: bucket 'bkt' does not exist at http://s3\n"
    )
    bad_input: Any = _State("Failed", LocationError("s3://"))  # an InputError: exit 2
    assert failed_run("restore", bad_input, "the restore", "the restore failed: ") == 2
    assert (
        capsys.readouterr().err
        == "kbackup restore: the restore failed: expected s3://bucket[/prefix], got 's3://'\n"
    )


def test_a_run_that_ended_without_an_error_says_its_state_and_a_bug_keeps_its_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    cancelled: Any = _State("Cancelled", None)
    assert failed_run("verify", cancelled, "the verification") == 1
    assert capsys.readouterr().err == "kbackup verify: the verification ended Cancelled\n"
    bug: Any = _State("Failed", KeyError("a bug"))
    with pytest.raises(KeyError):
        failed_run("verify", bug, "the verification")


def test_a_backup_of_3000_partitions_prints_totals_and_the_slowest_and_largest(
    capsys: pytest.CaptureFixture[str],
) -> None:
    compacted = (OffsetGap(first=3, last=4, cause="compaction"),)
    result = _result(
        "b1", *(_partition(p, 10 + p % 7 * 10, p % 11 / 10, compacted if p % 2 else ()) for p in range(3000))
    )
    print_results([result])
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert len(lines) < 45, out
    assert lines[0].split() == ["topic", "partitions", "records", "bytes", "objects", "gaps", "seconds"]
    manifest = result.manifest
    assert lines[2].split() == ["orders", "3000", str(manifest.record_count), str(manifest.byte_count)] + [
        "11994",
        "1500",
        "1498.8",
    ]
    assert lines[4] == (
        "The partitions most worth a look, 10 of 3000 "
        "(slowest, largest; all in the manifest nightly/_manifests/b1.json, --full-table prints them):"
    )
    partitions = [line.split() for line in lines[7:17]]
    assert all(row[0] == "orders" for row in partitions) and lines[17] == "# Backup b1"
    assert {row[3] for row in partitions} <= {"70", "60", "50", "40", "20", "10"}
    assert "- … 1490 more gaps, 1500 in 1500 partitions (all in the manifest)" in out
    print_results([result], full_table=True)
    assert len(capsys.readouterr().out.splitlines()) > 3000


def test_ls_names_at_most_four_topics_and_four_partitions_of_each() -> None:
    from kbackup.commands.ls import restore_points

    result = _result("b1", *(_partition(p, 10, 0.1) for p in range(3000)))
    partitions = tuple(
        p.model_copy(update={"topic": f"t{p.partition % 6}"}) for p in result.manifest.partitions
    )
    manifest = result.manifest.model_copy(update={"partitions": partitions})
    [row] = restore_points([manifest])
    assert row["offsets"] == (
        "t0 0:0-10 6:0-10 12:0-10 18:0-10 … (500 partitions); t1 1:0-10 7:0-10 13:0-10 19:0-10 … (500 partitions); "
        "t2 2:0-10 8:0-10 14:0-10 20:0-10 … (500 partitions); t3 3:0-10 9:0-10 15:0-10 21:0-10 … (500 partitions); "
        "… (6 topics)"
    )
