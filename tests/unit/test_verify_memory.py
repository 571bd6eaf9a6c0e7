"""Verification in memory (tasks/backup/verify.py `verify_backup` on a MemoryStore): a backup made by
the real export passes at every depth; a missing, resized or silently changed object is named by
bucket and key, and the depth that can see it."""

from __future__ import annotations

import pytest

from layout.manifest import Manifest
from tasks.backup.verify import list_prefix, verify_backup
from tasks.services.object_store import MemoryStore
from tests.support.memory_backup import Partitions, backup, messages

BUCKET = "bkt"
KCQL = f"INSERT INTO {BUCKET}:nightly SELECT * FROM orders STOREAS AVRO PROPERTIES('store.envelope'=true, 'flush.count'=8)"


@pytest.fixture
def store() -> MemoryStore:
    store = MemoryStore()
    store.create_bucket(BUCKET)
    return store


@pytest.fixture
def manifest(store: MemoryStore) -> Manifest:
    return backup(store, KCQL, Partitions("orders", {0: messages(range(20)), 1: messages(range(5, 30))}))


@pytest.mark.parametrize("depth", ["quick", "sampled", "full"])
def test_a_good_backup_passes(store: MemoryStore, manifest: Manifest, depth: str) -> None:
    report = verify_backup(store, BUCKET, manifest, depth)  # type: ignore[arg-type]
    assert report.ok, report.problems
    assert report.objects_checked == 3 + 4
    if depth == "full":
        assert report.objects_decoded == 7 and report.records_decoded == 20 + 25


def test_a_missing_object_is_named(store: MemoryStore, manifest: Manifest) -> None:
    gone = manifest.partitions[1].objects[2].key
    store.delete(BUCKET, gone)
    report = verify_backup(store, BUCKET, manifest, "full")
    assert (
        report.problems[0]
        == f"s3://{BUCKET}/{gone} is listed in manifest {manifest.backup_id} but missing from the bucket"
    )
    # the partition's digest cannot be recomputed; its other objects are still decoded and checked
    assert report.objects_decoded == 3 + 3 and len(report.problems) == 1


def test_an_object_of_another_size_is_named(store: MemoryStore, manifest: Manifest) -> None:
    entry = manifest.partitions[0].objects[1]
    head = store.head(BUCKET, entry.key)
    assert head is not None
    store.put(BUCKET, entry.key, store.get(BUCKET, entry.key) + b"!", metadata=head.metadata)
    report = verify_backup(store, BUCKET, manifest, "quick")
    assert report.problems == [
        f"s3://{BUCKET}/{entry.key} is corrupt: {entry.size + 1} bytes, the manifest says {entry.size}"
    ]


def test_a_silent_change_is_seen_by_the_full_depth(store: MemoryStore, manifest: Manifest) -> None:
    """Same size, same stored sha256 metadata, other bytes: only decoding the object shows it."""
    entry = manifest.partitions[0].objects[0]
    head = store.head(BUCKET, entry.key)
    assert head is not None
    data = bytearray(store.get(BUCKET, entry.key))
    data[-20] ^= 0xFF
    store.put(BUCKET, entry.key, bytes(data), metadata=head.metadata)
    assert verify_backup(store, BUCKET, manifest, "quick").ok
    problems = verify_backup(store, BUCKET, manifest, "full").problems
    assert problems and all(entry.key in p or p.startswith("orders/0:") for p in problems)
    assert any(f"s3://{BUCKET}/{entry.key} is corrupt: sha256 " in p for p in problems)


def test_a_key_the_listing_does_not_show_is_named(store: MemoryStore, manifest: Manifest) -> None:
    listing = list_prefix(store, BUCKET, "nightly")
    key = manifest.partitions[0].objects[0].key
    hidden = listing.__class__(listing.bucket, listing.folder, listing.keys - {key})
    [problem] = verify_backup(store, BUCKET, manifest, "quick", listing=hidden).problems
    assert problem.startswith(
        f"s3://{BUCKET}/{key} is listed in manifest {manifest.backup_id} but not in a listing"
    )
