"""The restore drill's evidence (tasks/lifecycle/drill.py) from a restore point read off a MemoryStore
(backups made by the real export) and the restore's report: what passes, what fails and how the
problem is named; and the restore the drill asks for (flows/drill.py restore_parameters)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from flows.drill import DrillParameters
from flows.parameters import drill_restore_parameters, selection_of
from formats.errors import CorruptObjectError
from layout.drills import DrillCleanup, DrillEvidence, scratch_prefix
from layout.manifest import Manifest, manifest_key
from tasks.lifecycle.drill import DrillFailed, DrillPoint, evidence_of, markdown, problem_of, read_point
from tasks.restore.check import PartitionCheck
from tasks.restore.errors import PreflightError, RestoreCheckError
from tasks.restore.report import RestoreFailed, RestoreReport, UnitReport
from tasks.services.object_store import MemoryStore
from tests.support.memory_backup import Partitions, backup, messages

BUCKET = "bkt"
NOW = datetime.now(UTC).replace(microsecond=0)
KCQL = f"INSERT INTO {BUCKET}:p SELECT * FROM orders STOREAS AVRO PROPERTIES('store.envelope'=true, 'flush.count'=4)"
DRILL = "20261207T190000Z-abcdef"
SCRATCH = scratch_prefix(DRILL)


def _chain(store: MemoryStore) -> tuple[Manifest, Manifest]:
    """A full backup of orders 0..1 (10 and 6 records), then an incremental one adding 5 to 0."""
    full = backup(
        store,
        KCQL,
        Partitions("orders", {0: messages(range(10)), 1: messages(range(6))}),
        at=NOW - timedelta(hours=2),
    )
    later = Partitions("orders", {0: messages(range(15)), 1: messages(range(6))})
    return full, backup(store, KCQL, later, full, at=NOW - timedelta(hours=1))


def _store() -> MemoryStore:
    store = MemoryStore()
    store.create_bucket(BUCKET)
    return store


def test_the_newest_restore_point_its_manifests_hash_and_its_chains_expectations() -> None:
    store = _store()
    full, incremental = _chain(store)
    point = read_point(store, BUCKET, "p", None, None)
    key = manifest_key("p", incremental.backup_id)
    assert (point.backup_id, point.manifest_key) == (incremental.backup_id, key)
    assert point.manifest_sha256 == hashlib.sha256(store.get(BUCKET, key)).hexdigest()
    assert point.chain == [full.backup_id, incremental.backup_id]
    zero, one = point.partitions
    assert (zero.topic, zero.partition, zero.records, len(zero.digests)) == ("orders", 0, 15, 2)
    assert zero.digest is None  # two backups hold its records: compared part by part while restoring
    assert (one.records, one.digest) == (6, full.partition("orders", 1).records_digest)  # type: ignore[union-attr]

    named = read_point(store, BUCKET, "p", full.backup_id, [0])
    assert named.backup_id == full.backup_id and named.chain == [full.backup_id]
    [only] = named.partitions
    assert (only.partition, only.records, only.digest) == (0, 10, full.partition("orders", 0).records_digest)  # type: ignore[union-attr]


def _report(point: DrillPoint, checks: list[PartitionCheck]) -> RestoreReport:
    return RestoreReport(
        restore_id="r1",
        bucket=BUCKET,
        prefix="p",
        backup_ids=point.chain,
        format="AVRO",
        lossless=True,
        dry_run=False,
        started_at=NOW,
        seconds=2.0,
        targets=[],
        units=[
            UnitReport(
                unit=f"orders.{e.partition}",
                source=f"orders/{e.partition}",
                target=f"{SCRATCH}orders/{e.partition}",
                status="done",
                records=e.records,
                bytes=e.bytes,
                seconds=0.5 + e.partition,
            )
            for e in point.partitions
        ],
        checks=checks,
    )


def _check(
    partition: int, records: int, digest: str | None, ok: bool = True, problem: str | None = None
) -> PartitionCheck:
    return PartitionCheck(
        topic=f"{SCRATCH}orders",
        partition=partition,
        expected_records=records,
        records=records,
        digest_compared=True,
        ok=ok,
        digest=digest,
        problem=problem,
    )


def _evidence(
    point: DrillPoint, report: RestoreReport | None, failure: BaseException | None = None
) -> DrillEvidence:
    return evidence_of(
        drill_id=DRILL,
        point=point,
        scratch=SCRATCH,
        sample=None,
        report=report,
        failure=failure,
        started_at=NOW,
        finished_at=NOW + timedelta(seconds=3),
        seconds=3.0,
        cluster="localhost:9092",
        cluster_id="c1",
        cleanup=DrillCleanup(deleted_topics=(f"{SCRATCH}orders",)),
    )


def test_a_drill_whose_check_matches_the_manifests_passes() -> None:
    store = _store()
    full, _ = _chain(store)
    point = read_point(store, BUCKET, "p", full.backup_id, None)
    digests = [e.digest for e in point.partitions]
    evidence = evidence_of(
        drill_id=DRILL,
        point=point,
        scratch=SCRATCH,
        sample=[0, 1],
        report=_report(point, [_check(0, 10, digests[0]), _check(1, 6, digests[1])]),
        failure=None,
        started_at=NOW,
        finished_at=NOW + timedelta(seconds=4),
        seconds=4.0,
        cluster="localhost:9092",
        cluster_id="c1",
        cleanup=DrillCleanup(deleted_topics=(f"{SCRATCH}orders",)),
    )
    assert (evidence.result, evidence.problem, evidence.records, evidence.sample) == (
        "passed",
        None,
        16,
        "partitions 0,1",
    )
    assert evidence.records_per_second == 4.0
    [topic] = evidence.topics
    assert (topic.scratch_topic, topic.records, topic.seconds, topic.records_per_second) == (
        f"{SCRATCH}orders",
        16,
        1.5,  # its slowest unit: the units of a topic restore in parallel
        round(16 / 1.5, 1),
    )
    assert [
        (p.partition, p.restored_records, p.expected_digest == p.restored_digest, p.ok)
        for p in topic.partitions
    ] == [
        (0, 10, True, True),
        (1, 6, True, True),
    ]
    text = markdown(evidence)
    assert f"# Restore drill {DRILL}: PASSED" in text
    assert "| orders | 16 | 1.50 | 11 | ok |" in text
    assert f"s3://{BUCKET}/p/_drills/{DRILL}.json" in text and "scratch topics deleted: 1" in text


def test_a_digest_that_differs_from_the_manifests_fails_the_drill_naming_the_partition() -> None:
    store = _store()
    full, _ = _chain(store)
    point = read_point(store, BUCKET, "p", full.backup_id, None)
    other = "sha256:" + "1" * 64
    evidence = _evidence(
        point, _report(point, [_check(0, 10, point.partitions[0].digest), _check(1, 6, other)])
    )
    assert evidence.result == "failed"
    assert (
        evidence.problem
        == f"orders/1: records digest {other} differs from the manifest's {point.partitions[1].digest}"
    )
    error = DrillFailed(evidence, f"p/_drills/{DRILL}.json")
    assert str(error) == (
        f"restore drill {DRILL} of s3://{BUCKET}/p (restore point {full.backup_id}) failed: {evidence.problem} "
        f"(evidence: s3://{BUCKET}/p/_drills/{DRILL}.json)"
    )


def test_a_damaged_object_found_by_the_preflight_is_named_and_nothing_was_read_back() -> None:
    store = _store()
    _chain(store)
    point = read_point(store, BUCKET, "p", None, None)
    damaged = CorruptObjectError(
        BUCKET, "p/orders/0/000000000003.avro", "sha256 aa differs from the manifest's bb"
    )
    failure = PreflightError(BUCKET, "p", "full", 7, (damaged,))
    evidence = _evidence(point, None, failure)
    assert evidence.result == "failed"
    assert evidence.problem == f"pre-flight (full): {damaged}"
    assert "p/orders/0/000000000003.avro" in evidence.problem
    assert all(p.restored_records is None and not p.ok for t in evidence.topics for p in t.partitions)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            RestoreCheckError("drill-x-orders", 1, "3 records restored, 4 expected"),
            "check of restored drill-x-orders/1",
        ),
        (KeyError("bug"), "KeyError: 'bug'"),
    ],
)
def test_the_problem_is_one_line(error: BaseException, expected: str) -> None:
    assert problem_of(error).startswith(expected) and "\n" not in problem_of(error)


def test_a_restore_that_failed_is_named_by_its_cause() -> None:
    store = _store()
    full, _ = _chain(store)
    point = read_point(store, BUCKET, "p", full.backup_id, None)
    report = _report(point, [])
    cause = RestoreCheckError(f"{SCRATCH}orders", 1, "3 records restored, 6 expected")
    assert problem_of(RestoreFailed(report, cause)) == str(cause)


def test_the_drills_restore_restores_every_topic_into_scratch_topics_after_the_full_preflight() -> None:
    params = DrillParameters(bucket="bkt", prefix="a/b", partitions=[0, 2], concurrency=2)
    restore = drill_restore_parameters(params, DRILL, "20261207T180000000Z-aaaaaa")
    selection = selection_of(restore)
    assert (selection.bucket, selection.prefix, selection.target_topic) == ("bkt", "a/b", "*")
    assert (selection.topic_prefix, selection.group_prefix) == (SCRATCH, SCRATCH)
    assert (selection.preflight, selection.schema_ids, selection.point) == (
        "full",
        "keep",
        "20261207T180000000Z-aaaaaa",
    )
    assert selection.partitions == (0, 2) and restore.check and not restore.dry_run
    assert selection_of(drill_restore_parameters(DrillParameters(bucket="bkt"), DRILL, "x")).prefix == ""
