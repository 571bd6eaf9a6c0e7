"""Restore planning and its pre-flight in memory (tasks/restore/discover.py `plan_restore` on a
MemoryStore, the backups made by the real export): what is planned from the chain, and every
missing or altered object named before anything is produced."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from formats.errors import CorruptObjectError
from kcql.selection import Selection
from layout.chains import ChainError
from layout.manifest import Manifest
from layout.restore.errors import BackupIncompleteError, MissingObjectError, NothingToRestoreError
from tasks.restore.decode import unit_records
from tasks.restore.discover import plan_restore
from tasks.restore.errors import PreflightError
from tasks.services.errors import BucketNotFoundError
from tasks.services.object_store import MemoryStore
from tests.support.memory_backup import Partitions, backup, messages

BUCKET, PREFIX = "bkt", "nightly"
KCQL = f"INSERT INTO {BUCKET}:{PREFIX} SELECT * FROM orders STOREAS AVRO PROPERTIES('store.envelope'=true, 'flush.count'=5)"
NOW = datetime.now(UTC)


def selection(**choices: object) -> Selection:
    return Selection(**{"target_topic": "copy", "bucket": BUCKET, "prefix": PREFIX, **choices})  # type: ignore[arg-type]


@pytest.fixture
def store() -> MemoryStore:
    store = MemoryStore()
    store.create_bucket(BUCKET)
    return store


@pytest.fixture
def chain(store: MemoryStore) -> list[Manifest]:
    """A full backup and an incremental one of a two-partition topic."""
    first = backup(
        store,
        KCQL,
        Partitions("orders", {0: messages(range(12)), 1: messages(range(7))}),
        at=NOW - timedelta(hours=2),
    )
    second = backup(
        store,
        KCQL,
        Partitions("orders", {0: messages(range(20)), 1: messages(range(9))}),
        first,
        at=NOW - timedelta(hours=1),
    )
    return [first, second]


def test_the_plan_reads_each_partition_across_the_chain_and_the_records_decode(
    store: MemoryStore, chain: list[Manifest]
) -> None:
    plan = plan_restore(store, selection())
    assert plan.backup_ids == tuple(m.backup_id for m in chain)
    assert plan.preflight == "quick: 8 objects present with the manifest's sizes"
    by_partition = {u.source_partition: u for u in plan.units}
    for partition in (0, 1):
        expected = [o.key for m in chain for p in m.partitions if p.partition == partition for o in p.objects]
        assert [o.key for o in by_partition[partition].objects] == expected
    offsets = [int(o) for source in unit_records(store, plan, by_partition[0]) for o in source.offsets]
    assert offsets == list(range(20))
    earlier = plan_restore(store, selection(point=chain[0].backup_id))
    assert earlier.backup_ids == (chain[0].backup_id,)
    assert sum(len(u.objects) for u in earlier.units) == 3 + 2


def test_the_preflight_names_every_missing_or_altered_object(
    store: MemoryStore, chain: list[Manifest]
) -> None:
    gone = chain[0].partitions[1].objects[0].key
    resized = chain[1].partitions[0].objects[0].key
    store.delete(BUCKET, gone)
    store.put(BUCKET, resized, store.get(BUCKET, resized) + b"\0")
    with pytest.raises(PreflightError) as error:
        plan_restore(store, selection())
    assert error.value.keys == tuple(sorted([gone, resized])) and error.value.checked == 8
    problems = {type(p): p for p in error.value.problems}
    missing = problems[MissingObjectError]
    assert (missing.key, missing.backup_id) == (gone, chain[0].backup_id)  # type: ignore[attr-defined]
    assert "bytes in the bucket, the manifest says" in str(problems[CorruptObjectError])
    assert plan_restore(store, selection(preflight="none")).preflight == "none"


def test_the_full_preflight_sees_other_bytes_of_the_same_size(
    store: MemoryStore, chain: list[Manifest]
) -> None:
    entry = chain[1].partitions[1].objects[0]
    data = bytearray(store.get(BUCKET, entry.key))
    data[-1] ^= 0x01
    store.put(BUCKET, entry.key, bytes(data))
    assert plan_restore(store, selection()).preflight.startswith("quick: 8 objects present")  # sizes only
    with pytest.raises(PreflightError) as error:
        plan_restore(store, selection(preflight="full"))
    [problem] = error.value.problems
    assert isinstance(problem, CorruptObjectError) and problem.key == entry.key
    assert f"differs from the manifest's {entry.sha256}" in str(problem)


def test_objects_without_a_manifest_are_refused_or_nothing(store: MemoryStore) -> None:
    with pytest.raises(NothingToRestoreError):
        plan_restore(store, selection())
    manifest = backup(store, KCQL, Partitions("orders", {0: messages(range(6))}))
    store.delete(BUCKET, f"{PREFIX}/_manifests/{manifest.backup_id}.json")  # a backup that never committed
    with pytest.raises(BackupIncompleteError) as error:
        plan_restore(store, selection())
    assert error.value.reason == "no manifest"
    with pytest.raises(ChainError):
        plan_restore(store, selection(point=manifest.backup_id))
    with pytest.raises(BucketNotFoundError):
        plan_restore(store, selection(bucket="no-such-bucket"))
