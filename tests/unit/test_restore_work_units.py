"""A restore's work units without services: the packing and naming of units, a work unit's
attempts over a fake transactional writer (transactions spanning units, each unit's progress
committed where layout.restore.progress keeps it with its records, a unit whose data fails
failing alone, a broker outage ridden out, a resume after committed progress), the offsets of a
transaction sent once per group, the work unit's failure surviving a process boundary, and the
consumer-group metadata made from a template."""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from formats.columns import from_records
from formats.envelope import Record, TimestampType
from formats.errors import CorruptObjectError
from kcql.selection import Window
from kcql.specs import CodecOptions
from layout.restore.order import SourceBatch
from layout.restore.plan import ProgressLayout, RestoreObject, RestorePlan, RestoreUnit
from layout.restore.progress import ProgressKey, progress_group, progress_keys
from tasks.restore import committed, work, writer
from tasks.restore.committed import GroupCommit, by_group
from tasks.restore.errors import TransactionFatalError
from tasks.restore.produce import UnitResult
from tasks.restore.work import WorkUnitFailed, fails_unit_alone, pack_units, restore_work_unit
from tasks.restore.writer import UnitProgress, unit_names
from tasks.runtime.shutdown import RunInterrupted
from tasks.services.errors import BrokerUnavailableError, KafkaAuthorizationError, KafkaOperationError
from tasks.services.kafka.calls import CallStalledError

RECORDS = 7  # per unit


def _unit(partition: int, records: int = RECORDS) -> RestoreUnit:
    return RestoreUnit(
        unit_id=f"src.{partition}",
        source_topic="src",
        source_partition=partition,
        target_topic="dst",
        target_partition=partition,
        routing="preserve",
        objects=(RestoreObject(key=f"src/{partition}/0", record_count=records, size=100 * records),),
        offsets_known=True,
        check_gaps=False,
        compare_segments=False,
    )


def _plan(units: list[RestoreUnit], batch: int = 5, progress: ProgressLayout = "shared") -> RestorePlan:
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
        batch=batch,
        window=Window(),
        partitioner="preserve",
        targets=(),
        units=tuple(units),
        progress=progress,
    )


def _key(plan: RestorePlan, unit: RestoreUnit) -> ProgressKey:
    return progress_keys(plan)[(unit.target_topic, unit.unit_id)]


class Cluster:
    """What the fake writers commit: the (count, metadata) at each progress key, each partition's
    records, and which keys each transaction committed."""

    def __init__(self) -> None:
        self.groups: dict[ProgressKey, tuple[int, dict[str, Any]]] = {}
        self.log: dict[int, list[bytes]] = {}
        self.transactions: list[list[tuple[ProgressKey, int]]] = []
        self.sends: list[int] = []  # send_offsets_to_transaction calls of each transaction
        self.ids: list[str] = []
        self.fail_commits = 0  # the next commits fail (retryably), as during a broker outage
        self.wedge_at: set[int] = set()  # the commits (counted from 1, failed ones too) that stall
        self.fatal = False
        self.corrupt: set[str] = set()  # object keys whose second batch fails to decode
        self.commits = 0

    def committed(self, _config: Any, reads: Any, _admin: Any = None) -> list[tuple[int, dict[str, Any]]]:
        return [self.groups.get(key, (0, {})) for key in reads]


class FakeProducer:
    def __init__(self, owner: FakeWriter) -> None:
        self.owner = owner

    def produce(self, topic: str, value: bytes, key: bytes, partition: int, **_: Any) -> None:
        self.owner.pending.append((partition, value))


class FakeWriter:
    def __init__(self, cluster: Cluster, transactional_id: str, progress: UnitProgress) -> None:
        self.cluster, self.progress = cluster, progress
        self.producer = FakeProducer(self)
        self.pending: list[tuple[int, bytes]] = []
        self.in_transaction = False
        cluster.ids.append(transactional_id)

    def init(self) -> None:
        pass

    def begin(self) -> None:
        self.in_transaction = True

    def produced(self, _count: int) -> None:
        pass

    def commit(self, offsets: list[GroupCommit]) -> None:
        self.cluster.commits += 1
        if self.cluster.commits in self.cluster.wedge_at:  # the call stalled: the producer is replaced
            raise CallStalledError("commit transaction", 70)
        if self.cluster.fatal:
            raise TransactionFatalError("dst", self.progress.unit_id, 0, "fenced")
        if self.cluster.fail_commits:
            self.cluster.fail_commits -= 1
            raise BrokerUnavailableError("broker:9092", "down")
        for partition, value in self.pending:
            self.cluster.log.setdefault(partition, []).append(value)
        for offset in offsets:
            self.cluster.groups[offset.key] = (offset.count, json.loads(offset.metadata))
        self.cluster.transactions.append([(o.key, o.count) for o in offsets])
        self.cluster.sends.append(len(by_group(offsets)))
        self.pending, self.in_transaction = [], False
        self.progress.moved()

    def abort(self) -> None:
        self.pending, self.in_transaction = [], False

    def close(self) -> None:
        pass


def _records(partition: int, count: int) -> list[Record]:
    return [
        Record(
            f"k{i}".encode(),
            f"p{partition}-v{i}".encode(),
            (),
            "src",
            partition,
            i,
            1_000 + i,
            TimestampType.CREATE_TIME,
        )
        for i in range(count)
    ]


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> Cluster:
    state = Cluster()

    def unit_records(_s3: Any, _plan: Any, unit: RestoreUnit) -> Iterator[SourceBatch]:
        rows = _records(unit.source_partition or 0, sum(o.record_count or 0 for o in unit.objects))
        key = unit.objects[0].key
        for n, start in enumerate(range(0, len(rows), 4)):  # batches of 4 records
            if n == 1 and key in state.corrupt:
                raise CorruptObjectError("b", key, "damaged")
            chunk = rows[start : start + 4]
            yield SourceBatch(from_records(chunk, decoded=True), np.array([r.offset for r in chunk]), (key,))

    monkeypatch.setattr(work, "unit_records", unit_records)
    monkeypatch.setattr(work, "committed", state.committed)
    # its records and progress always commit together: nothing to reconcile (tasks.restore.reconcile)
    monkeypatch.setattr(work, "reconciled_progress", lambda _c, _a, _p, _u, found: list(found))
    monkeypatch.setattr(work, "high_watermarks", lambda _c, partitions, _a=None: dict.fromkeys(partitions, 0))
    monkeypatch.setattr(work, "admin_client", lambda _config: None)
    monkeypatch.setattr(
        work, "TransactionalWriter", lambda _c, tid, progress: FakeWriter(state, tid, progress)
    )
    monkeypatch.setattr(work.shutdown, "sleep", lambda _s: None)
    return state


def _restore(units: list[RestoreUnit], plan: RestorePlan | None = None) -> list[UnitResult]:
    return restore_work_unit(plan or _plan(units), units, 3, {}, None, {"dst": 8}, name="src[0-2]")  # type: ignore[arg-type]


def test_units_are_packed_into_work_units_named_by_their_partitions():
    plan = _plan([_unit(p) for p in range(6)])
    works = pack_units(plan, workers=2)
    assert [w.name for w in works] == ["src[0-2]", "src[3-5]"]
    assert [[u.unit_id for u in w.items] for w in works] == [
        ["src.0", "src.1", "src.2"],
        ["src.3", "src.4", "src.5"],
    ]


def test_a_transaction_spans_units_and_commits_each_ones_progress_with_its_records(cluster):
    units = [_unit(p) for p in range(3)]
    plan = _plan(units)
    results = _restore(units, plan)
    assert [r.unit_id for r in results] == ["src.0", "src.1", "src.2"]
    assert all(
        r.selected == r.produced == RECORDS and r.partitions[r.source_partition or 0].records == RECORDS
        for r in results
    )
    # 21 records in transactions of 5: each commits the count of every unit that moved in it, in
    # the progress group on the unit's own partition, in one send_offsets_to_transaction
    progress = [ProgressKey(progress_group(plan), "dst", p) for p in range(3)]
    assert cluster.transactions == [
        [(progress[0], 5)],
        [(progress[0], 7), (progress[1], 3)],
        [(progress[1], 7), (progress[2], 1)],
        [(progress[2], 6)],
        [(progress[2], 7)],
    ]
    assert cluster.sends == [1, 1, 1, 1, 1]
    assert cluster.ids == [writer.slot_id(plan, 3)]
    for unit in units:
        count, metadata = cluster.groups[_key(plan, unit)]
        # the unit's first commit (with its first records) already said where it began
        assert count == RECORDS and metadata["starts"] == {str(unit.target_partition): 0}
        assert cluster.log[unit.target_partition or 0] == [
            f"p{unit.target_partition}-v{i}".encode() for i in range(RECORDS)
        ]


def test_a_unit_whose_data_fails_fails_alone_and_the_others_are_restored_once(cluster):
    units = [_unit(p) for p in range(3)]
    cluster.corrupt.add("src/1/0")  # src.1 fails after its first batch (4 records)
    with pytest.raises(WorkUnitFailed) as caught:
        _restore(units)
    outcomes = caught.value.outcomes
    assert isinstance(outcomes[1], CorruptObjectError) and outcomes[1].key == "src/1/0"
    assert [o.unit_id for o in (outcomes[0], outcomes[2])] == ["src.0", "src.2"]  # type: ignore[union-attr]
    # this run produced all of src.0: 5 records committed before src.1 failed, its last 2 after
    assert (outcomes[0].resumed_after, outcomes[0].produced) == (0, RECORDS)  # type: ignore[union-attr]
    assert cluster.log[0] == [f"p0-v{i}".encode() for i in range(RECORDS)]  # no duplicate, no hole
    assert cluster.log[2] == [f"p2-v{i}".encode() for i in range(RECORDS)]
    # what src.1 committed (with src.0's tail) stays, exactly once; the rest was aborted
    assert cluster.log[1] == [b"p1-v0", b"p1-v1", b"p1-v2"]
    assert cluster.groups[_key(_plan(units), units[1])][0] == 3
    assert "1 of 3 partitions failed" in str(caught.value)


def test_a_broker_outage_is_ridden_out_from_the_committed_counts(cluster):
    units = [_unit(p) for p in range(2)]
    cluster.fail_commits = 2
    results = _restore(units)
    assert [r.selected for r in results] == [RECORDS, RECORDS]
    assert cluster.log[0] == [f"p0-v{i}".encode() for i in range(RECORDS)]
    assert cluster.log[1] == [f"p1-v{i}".encode() for i in range(RECORDS)]
    assert len(cluster.ids) == 3  # a fresh producer for each attempt


def test_after_a_wedged_producer_is_replaced_each_unit_reports_where_it_resumed(cluster):
    units = [_unit(p) for p in range(3)]
    cluster.wedge_at = {3}  # after src.0's 5 and 7 (with src.1's 3): src.1 resumes after 3
    results = _restore(units)
    assert len(cluster.ids) == 2  # a fresh producer
    # src.0 was done before the wedge; src.1 resumed after its 3 committed records, src.2 began
    # with the fresh producer; this run produced every record of each, exactly once
    assert [(r.resumed_after, r.produced) for r in results] == [(0, RECORDS), (3, RECORDS), (0, RECORDS)]
    for partition in range(3):
        assert cluster.log[partition] == [f"p{partition}-v{i}".encode() for i in range(RECORDS)]


def test_a_rerun_resumes_each_unit_after_its_committed_count(cluster):
    units = [_unit(p) for p in range(2)]
    plan = _plan(units)
    cluster.groups[_key(plan, units[0])] = (RECORDS, {"starts": {"0": 0}})
    cluster.groups[_key(plan, units[1])] = (2, {"starts": {"1": 40}})
    results = _restore(units, plan)
    assert [(r.resumed_after, r.produced) for r in results] == [(RECORDS, 0), (2, RECORDS - 2)]
    assert results[1].partitions[1].start_offset == 40  # where it began, from its first commit
    assert 0 not in cluster.log and len(cluster.log[1]) == RECORDS - 2


def test_a_restore_begun_with_each_units_own_group_resumes_and_keeps_committing_there(cluster):
    """A restore an earlier version began (layout `units`): each unit's progress is read from, and
    committed to, its own group on partition 0, one send per unit."""
    units = [_unit(p) for p in range(2)]
    plan = _plan(units, progress="units")
    own = [ProgressKey(unit_names(plan, unit)[1], "dst", 0) for unit in units]
    cluster.groups[own[1]] = (2, {"starts": {"1": 40}})
    results = _restore(units, plan)
    assert [(r.resumed_after, r.produced) for r in results] == [(0, RECORDS), (2, RECORDS - 2)]
    assert set(cluster.groups) == set(own) and all(c == RECORDS for c, _ in cluster.groups.values())
    assert cluster.transactions[1] == [(own[0], 7), (own[1], 5)] and cluster.sends[1] == 2
    assert len(cluster.log[1]) == RECORDS - 2


def test_units_sharing_a_target_partition_keep_their_own_groups_beside_the_progress_group(cluster):
    """src.0 alone writes dst[0]: the progress group; src.1 and other.1 both write dst[1]: each its
    own group. A transaction holding all three sends twice: once per group."""
    units = [_unit(0), _unit(1), _unit(1).model_copy(update={"unit_id": "other.1", "source_topic": "other"})]
    plan = _plan(units, batch=100)
    results = _restore(units, plan)
    assert [r.selected for r in results] == [RECORDS] * 3
    keys = [_key(plan, unit) for unit in units]
    assert keys == [
        ProgressKey(progress_group(plan), "dst", 0),
        ProgressKey(unit_names(plan, units[1])[1], "dst", 0),
        ProgressKey(unit_names(plan, units[2])[1], "dst", 0),
    ]
    assert cluster.transactions == [[(key, RECORDS) for key in keys]] and cluster.sends == [3]
    assert len(cluster.log[1]) == 2 * RECORDS


def test_a_transactions_offsets_are_sent_once_per_group_with_all_its_partitions():
    commits = [
        GroupCommit(ProgressKey("progress", "dst", 3), 5, "{}"),
        GroupCommit(ProgressKey("own-a", "dst", 0), 2, "{}"),
        GroupCommit(ProgressKey("progress", "dst", 4), 7, '{"src":6}'),
    ]
    sent = by_group(commits)
    assert list(sent) == ["progress", "own-a"]
    assert [(tp.topic, tp.partition, tp.offset, tp.metadata) for tp in sent["progress"]] == [
        ("dst", 3, 5, "{}"),
        ("dst", 4, 7, '{"src":6}'),
    ]
    assert [(tp.partition, tp.offset) for tp in sent["own-a"]] == [(0, 2)]


def test_a_fatal_producer_error_fails_every_unit_not_done(cluster):
    cluster.fatal = True
    with pytest.raises(WorkUnitFailed) as caught:
        _restore([_unit(p) for p in range(2)])
    assert all(isinstance(o, TransactionFatalError) for o in caught.value.outcomes)


def test_which_errors_fail_a_unit_alone():
    assert fails_unit_alone(CorruptObjectError("b", "k", "damaged"))
    assert not fails_unit_alone(
        KafkaAuthorizationError("send offsets", "User:x", "GROUP_AUTHORIZATION_FAILED", "no")
    )
    assert not fails_unit_alone(KafkaOperationError("commit", "timed out", retryable=True))
    assert not fails_unit_alone(RunInterrupted("SIGINT"))
    assert not fails_unit_alone(TransactionFatalError("dst", "src[0-1]", 0, "fenced"))
    assert not fails_unit_alone(ValueError("a bug"))


def test_a_work_unit_failure_crosses_a_process_boundary_with_its_units_errors():
    result = UnitResult(
        unit_id="src.0",
        source_topic="src",
        source_partition=0,
        target_topic="dst",
        routing="preserve",
        selected=1,
        produced=1,
        resumed_after=0,
        decoded=1,
        bytes=1,
        objects=1,
        seconds=0.1,
        partitions={},
        timestamps_kept=True,
    )
    failed = WorkUnitFailed("src[0-1]", [result, CorruptObjectError("b", "src/1/0", "damaged")])
    again = pickle.loads(pickle.dumps(failed))
    assert again.name == "src[0-1]" and again.outcomes[0] == result
    error = again.outcomes[1]
    assert isinstance(error, CorruptObjectError) and (error.bucket, error.key) == ("b", "src/1/0")
    assert str(error) == str(failed.outcomes[1]) and str(again) == str(failed)


def test_group_metadata_is_the_template_with_the_group_spliced_in(monkeypatch: pytest.MonkeyPatch):
    probe = committed._PROBE_GROUP.encode()
    monkeypatch.setattr(committed, "_template", [b"CGMDv2:\xff\xff\xff\xff" + probe + b"\x00\x00\x01"])
    assert committed.group_metadata({}, "kbackup-restore-r1-dst-src.0") == (
        b"CGMDv2:\xff\xff\xff\xffkbackup-restore-r1-dst-src.0\x00\x00\x01"
    )
