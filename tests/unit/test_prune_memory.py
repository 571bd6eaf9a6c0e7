"""Prune in memory (tasks/lifecycle/prune.py on a MemoryStore, the backups made by the real export):
which manifests and objects go — the dropped chain's, and what killed backups left — and what
stays: the kept chains, other files, a nested prefix's backup, and whatever the store retains."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from layout.chains import referenced_keys
from layout.drills import DrillEvidence, drill_key, scratch_prefix
from layout.manifest import Manifest, manifest_key
from tasks.lifecycle.prune import prune, summary
from tasks.services.drill_store import list_drill_ids, write_drill
from tasks.services.manifest_store import list_backup_ids
from tasks.services.object_store import MemoryStore
from tests.support.memory_backup import Partitions, backup, messages

BUCKET = "bkt"
NOW = datetime.now(UTC).replace(microsecond=0)


def _kcql(prefix: str = "p", properties: str = "") -> str:
    return (
        f"INSERT INTO {BUCKET}:{prefix} SELECT * FROM orders STOREAS AVRO "
        f"PROPERTIES('store.envelope'=true, 'flush.count'=6{properties})"
    )


def _two_chains(store: MemoryStore, properties: str = "") -> list[Manifest]:
    """Chain A (a full backup and an incremental one), then chain B (the same)."""
    kcql = _kcql(properties=properties)
    a0 = backup(store, kcql, Partitions("orders", {0: messages(range(10))}), at=NOW - timedelta(hours=4))
    a1 = backup(store, kcql, Partitions("orders", {0: messages(range(16))}), a0, at=NOW - timedelta(hours=3))
    source = Partitions("orders", {0: messages(range(20))})
    b0 = backup(store, kcql, source, at=NOW - timedelta(hours=2), full_after=a1)
    b1 = backup(store, kcql, Partitions("orders", {0: messages(range(25))}), b0, at=NOW - timedelta(hours=1))
    return [a0, a1, b0, b1]


def _keys(store: MemoryStore, prefix: str = "") -> set[str]:
    return {o.key for o in store.list_objects(BUCKET, prefix)}


def _store(object_lock: bool = False, clock: list[datetime] | None = None) -> MemoryStore:
    """A store with the bucket; its clock reads `clock[0]` when given (else this host's)."""
    store = MemoryStore(clock=(lambda: clock[0]) if clock else None)
    store.create_bucket(BUCKET, object_lock=object_lock)
    return store


def test_prune_deletes_the_dropped_chain_and_the_leftovers_and_nothing_else() -> None:
    store = _store()
    a0, a1, b0, b1 = _two_chains(store)
    nested = backup(store, _kcql("p/nested"), Partitions("orders", {0: messages(range(3))}))
    leftover = "p/orders/0/000000000099.avro"  # a killed backup's upload, named as the first chain names
    chain_leftover = f"p/orders/0/000000000098-c{b0.backup_id}.avro"  # and as a later chain names
    store.put(BUCKET, leftover, b"uploaded by a killed backup")
    store.put(BUCKET, chain_leftover, b"uploaded by a killed full backup")
    store.put(BUCKET, "p/orders/0/notes.txt", b"someone else's file")
    before = _keys(store)

    report = prune(store, BUCKET, "p", keep_last=1)

    assert (report.kept, report.needed, report.dropped) == (
        [b1.backup_id],
        [b0.backup_id],
        [a0.backup_id, a1.backup_id],
    )
    assert report.deleted_manifests == [a1.backup_id, a0.backup_id]  # newest first
    gone = referenced_keys([a0, a1]) | {leftover, chain_leftover}
    assert report.deleted_objects == len(gone) and report.orphans == 2
    assert report.deleted_bytes == 27 + 32 + sum(
        o.size for m in (a0, a1) for p in m.partitions for o in p.objects
    )
    assert _keys(store) == before - gone - {manifest_key("p", a0.backup_id), manifest_key("p", a1.backup_id)}
    assert list_backup_ids(store, BUCKET, "p") == [b0.backup_id, b1.backup_id]
    assert list_backup_ids(store, BUCKET, "p/nested") == [nested.backup_id]
    assert referenced_keys([b0, b1, nested]) <= _keys(store)
    assert report.not_deleted == []


def test_a_dry_run_says_what_would_go_and_deletes_nothing() -> None:
    store = _store()
    a0, a1, _, _ = _two_chains(store)
    before = _keys(store)
    report = prune(store, BUCKET, "p", keep_last=2, dry_run=True)
    assert report.deleted_manifests == [a0.backup_id, a1.backup_id]
    assert report.deleted_objects == len(referenced_keys([a0, a1]))
    assert _keys(store) == before
    assert "would delete: 2 manifests" in summary(report)


def test_what_the_store_retains_stays_a_restore_point_until_its_retention_passes() -> None:
    lock = ", 'object.lock.mode'='GOVERNANCE', 'object.lock.retention'='1d'"
    clock = [NOW]
    store = _store(object_lock=True, clock=clock)
    a0, a1, b0, b1 = _two_chains(store, lock)
    assert a1.protection is not None and a1.protection.retain_until is not None
    before = _keys(store)

    report = prune(store, BUCKET, "p", keep_last=1)

    until = f"{a1.protection.retain_until:%Y-%m-%d %H:%M:%S} UTC, governance"
    assert report.deleted_manifests == [] and report.deleted_objects == 0
    assert report.not_deleted == [
        f"{manifest_key('p', a1.backup_id)} AccessDenied: Access Denied. (retained until {until})"
    ]
    assert _keys(store) == before  # the refused point keeps its chain, and the chain its objects

    clock[0] = NOW + timedelta(days=2)  # the store's clock, past the retention
    report = prune(store, BUCKET, "p", keep_last=1)
    assert report.deleted_manifests == [a1.backup_id, a0.backup_id] and report.not_deleted == []
    assert list_backup_ids(store, BUCKET, "p") == [b0.backup_id, b1.backup_id]
    # every version of each: nothing of chain A is left, not even behind a delete marker
    for key in referenced_keys([a0, a1]):
        assert store.versions(BUCKET, key) == []


def _drill(store: MemoryStore, point: Manifest, drill_id: str) -> str:
    """A drill's evidence of `point` under the prefix; returns its key."""
    evidence = DrillEvidence(
        drill_id=drill_id,
        bucket=BUCKET,
        prefix="p",
        backup_id=point.backup_id,
        manifest_key=manifest_key("p", point.backup_id),
        manifest_sha256="0" * 64,
        started_at=NOW,
        finished_at=NOW,
        seconds=1.0,
        records=0,
        records_per_second=0.0,
        cluster="localhost:9092",
        scratch_prefix=scratch_prefix(drill_id),
        sample="all",
        result="passed",
    )
    return write_drill(store, BUCKET, "p", evidence)


def test_prune_keeps_the_drill_evidence_of_kept_points_and_deletes_the_dropped_points() -> None:
    store = _store()
    a0, a1, b0, b1 = _two_chains(store)
    keys = {
        drill_id: _drill(store, point, drill_id)
        for drill_id, point in (("d-a0", a0), ("d-a1", a1), ("d-b0", b0), ("d-b1", b1), ("d-b1-again", b1))
    }
    store.put(BUCKET, drill_key("p", "d-unreadable"), b"not evidence")  # left alone, never guessed at

    dry = prune(store, BUCKET, "p", keep_last=1, dry_run=True)
    assert dry.deleted_drills == ["d-a0", "d-a1"]
    assert set(keys.values()) <= _keys(store)
    assert "## Drill evidence to remove (with its restore point)\n- d-a0\n- d-a1" in summary(dry)

    report = prune(store, BUCKET, "p", keep_last=1)
    assert report.deleted_drills == ["d-a0", "d-a1"] and report.not_deleted == []
    assert list_drill_ids(store, BUCKET, "p") == ["d-b0", "d-b1", "d-b1-again", "d-unreadable"]
    assert "## Drill evidence removed (with its restore point)" in summary(report)

    # evidence whose point went earlier (another tool, a prune from before drills) goes too
    _drill(store, a0, "d-late")
    assert prune(store, BUCKET, "p", keep_last=1).deleted_drills == ["d-late"]
