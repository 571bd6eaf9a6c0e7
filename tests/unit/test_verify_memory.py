"""Verification in memory (tasks/backup/verify.py `verify_backup` on a MemoryStore): a backup made by
the real export passes at every depth; a missing, resized or silently changed object is named by
bucket and key, and the depth that can see it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from layout.manifest import Manifest
from tasks.backup import verify
from tasks.backup.verify import (
    SAMPLE_BYTES,
    SAMPLE_FRACTION,
    SAMPLE_MIN,
    Listing,
    list_prefix,
    sample,
    verify_backup,
)
from tasks.services.object_store import MemoryStore, ObjectInfo
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


def _read_back(manifest: Manifest) -> Manifest:
    """The manifest as `kbackup verify` reads it from the bucket: without the uploads' ETags."""
    return Manifest.model_validate_json(manifest.model_dump_json())


def _change_silently(store: MemoryStore, key: str) -> None:
    """Same size, same stored sha256 metadata, other bytes."""
    head = store.head(BUCKET, key)
    assert head is not None
    data = bytearray(store.get(BUCKET, key))
    data[-20] ^= 0xFF
    store.put(BUCKET, key, bytes(data), metadata=head.metadata)


def test_a_silent_change_is_seen_by_the_full_depth(store: MemoryStore, manifest: Manifest) -> None:
    """A manifest read back carries no ETags: the HEAD's size and sha256 metadata cannot show a
    silent change; only decoding the object does."""
    entry = manifest.partitions[0].objects[0]
    _change_silently(store, entry.key)
    read_back = _read_back(manifest)
    assert verify_backup(store, BUCKET, read_back, "quick").ok
    problems = verify_backup(store, BUCKET, read_back, "full").problems
    assert problems and all(entry.key in p or p.startswith("orders/0:") for p in problems)
    assert any(f"s3://{BUCKET}/{entry.key} is corrupt: sha256 " in p for p in problems)


class Counting(MemoryStore):
    """A MemoryStore that counts the requests a verification makes."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        self.calls["head"] += 1
        return super().head(bucket, key)

    def get(self, bucket: str, key: str) -> bytes:
        self.calls["get"] += 1
        return super().get(bucket, key)

    def list_objects(self, bucket: str, prefix: str, *, start_after: str = "") -> Iterator[ObjectInfo]:
        self.calls["list"] += 1
        return super().list_objects(bucket, prefix, start_after=start_after)


def test_the_backups_own_verification_sees_a_silent_change_without_a_head() -> None:
    """The manifest the backup built carries each upload's ETag: the listing's, another after the
    change, names the object at every depth, and no object is HEADed."""
    store = Counting()
    store.create_bucket(BUCKET)
    manifest = backup(store, KCQL, Partitions("orders", {0: messages(range(20)), 1: messages(range(5, 30))}))
    entry = manifest.partitions[1].objects[1]
    _change_silently(store, entry.key)
    store.calls.clear()
    report = verify_backup(store, BUCKET, manifest, "quick")
    assert report.objects_checked == 7 and store.calls == {"list": 1}
    [problem] = report.problems
    assert problem.startswith(f"s3://{BUCKET}/{entry.key} is corrupt: its ETag ")
    assert problem.endswith(f"is not the one its upload got ({entry.etag}): it was replaced since")
    for depth in ("sampled", "full"):
        assert problem in verify_backup(store, BUCKET, manifest, depth).problems  # type: ignore[arg-type]
    assert verify_backup(store, BUCKET, _read_back(manifest), "quick").ok  # a HEAD cannot see it


def test_a_sampled_verification_asks_for_a_sample_of_the_backup_not_for_each_partition() -> None:
    """N one-object partitions: one listing and the sample's GETs (SAMPLE_FRACTION of the objects,
    SAMPLE_MIN at least), where it took a HEAD and a GET for each partition."""
    requests = {}
    for partitions in (10, 60):
        store = Counting()
        store.create_bucket(BUCKET)
        source = Partitions("orders", {p: messages(range(3)) for p in range(partitions)})
        manifest = backup(store, KCQL, source)
        store.calls.clear()
        report = verify_backup(store, BUCKET, manifest, "sampled", seed=partitions)
        assert report.ok and report.objects_checked == partitions
        assert report.objects_decoded == max(SAMPLE_MIN, round(partitions * SAMPLE_FRACTION))
        assert store.calls == {"list": 1, "get": report.objects_decoded}
        requests[partitions] = store.calls.total()
        store.calls.clear()
        assert verify_backup(store, BUCKET, _read_back(manifest), "sampled", seed=partitions).ok
        assert store.calls == {"list": 1, "head": partitions, "get": report.objects_decoded}
    assert requests == {10: 1 + 3, 60: 1 + 6}


def test_a_sample_is_the_seeds_and_bounded() -> None:
    objects = [("orders", 10)] * 95 + [("audit", 10)] * 5
    chosen = sample(objects, seed=1)
    assert chosen == sample(objects, seed=1) != sample(objects, seed=2)
    assert chosen == sorted(chosen) and len(chosen) == 10
    assert {objects[i][0] for i in chosen} == {"orders", "audit"}
    assert len(sample(objects[:4], seed=1)) == 3  # SAMPLE_MIN
    assert sample(objects[:2], seed=1) == [0, 1]
    # one object of each topic whatever its size, then no more than SAMPLE_BYTES
    huge = [("orders", SAMPLE_BYTES)] * 50 + [("audit", SAMPLE_BYTES // 2)] * 50
    chosen = sample(huge, seed=1)
    assert {huge[i][0] for i in chosen} == {"orders", "audit"} and len(chosen) == 2
    small = [("orders", SAMPLE_BYTES // 4)] * 100
    assert len(sample(small, seed=1)) == 4


def test_a_key_the_listing_does_not_show_is_named(store: MemoryStore, manifest: Manifest) -> None:
    listing = list_prefix(store, BUCKET, "nightly")
    key = manifest.partitions[0].objects[0].key
    hidden = Listing(listing.bucket, listing.folder, {k: o for k, o in listing.objects.items() if k != key})
    [problem] = verify_backup(store, BUCKET, manifest, "quick", listing=hidden).problems
    assert problem.startswith(
        f"s3://{BUCKET}/{key} is listed in manifest {manifest.backup_id} but not in a listing"
    )


def test_a_sampled_report_is_the_seeds_and_in_the_manifests_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """Objects are asked for on threads; the report is the same on one, its problems in the
    manifest's order: a missing object, a replaced one, and a changed one the sample decodes."""
    store = MemoryStore()
    store.create_bucket(BUCKET)
    manifest = backup(store, KCQL, Partitions("orders", {p: messages(range(3)) for p in range(40)}))
    keys = [o.key for p in manifest.partitions for o in p.objects]
    present = [i for i in range(40) if i != 3]  # partition 3's object goes missing
    sampled = [present[i] for i in sample([("orders", 1)] * len(present), seed=5)]
    decoded = next(i for i in sampled if i != 30)
    gone, changed, replaced = keys[3], keys[decoded], keys[30]
    store.delete(BUCKET, gone)
    store.put(BUCKET, replaced, b"not an avro object")
    _change_silently(store, changed)
    read_back = _read_back(manifest)
    reports = [verify_backup(store, BUCKET, m, "sampled", seed=5) for m in (manifest, read_back) * 2]
    monkeypatch.setattr(verify, "VERIFY_THREADS", 1)
    assert reports[:2] == [verify_backup(store, BUCKET, m, "sampled", seed=5) for m in (manifest, read_back)]
    assert reports[:2] == reports[2:]
    for report in reports[:2]:
        named = [next(k for k in (gone, changed, replaced) if k in p) for p in report.problems]
        assert named == sorted(named, key=keys.index) and set(named) == {gone, changed, replaced}
    assert any(f"s3://{BUCKET}/{changed} is corrupt: its ETag " in p for p in reports[0].problems)
    assert any(f"s3://{BUCKET}/{changed} is corrupt: sha256 " in p for p in reports[1].problems)
