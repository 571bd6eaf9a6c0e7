"""The object-store contract (tasks/services/object_store/base.py): what the backups rely on of a
store, checked here on MemoryStore and, by tests/integration/test_object_store.py, which runs
these very tests on S3Store against SeaweedFS — so the unit tests that use MemoryStore test what
S3 does. Errors are asserted by class and attributes, never by the store's own wording."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from layout.manifest import Protection
from tasks.services.errors import (
    BucketNotFoundError,
    ObjectConflictError,
    ObjectNotFoundError,
    StorageAccessError,
)
from tasks.services.object_store import MemoryStore, ObjectStore, ObjectVersion, Retention

MakeBucket = Callable[..., str]


@pytest.fixture
def store() -> ObjectStore:
    return MemoryStore(endpoint="http://memory.test")


@pytest.fixture
def make_bucket(store: MemoryStore) -> MakeBucket:
    """make_bucket(object_lock=False) -> a new bucket's name."""
    names = iter(range(1000))

    def make(object_lock: bool = False) -> str:
        name = f"contract-{next(names)}"
        store.create_bucket(name, object_lock=object_lock)
        return name

    return make


def _locked_for(minutes: int) -> Protection:
    until = (datetime.now(UTC) + timedelta(minutes=minutes)).replace(microsecond=0)
    return Protection(lock_mode="GOVERNANCE", retain_until=until)


# --- put once ------------------------------------------------------------------------------------


def test_put_once_writes_then_accepts_the_same_bytes_and_refuses_others(
    store: ObjectStore, make_bucket: MakeBucket
) -> None:
    bucket = make_bucket()
    assert store.put_once(bucket, "p/a", b"first", {"backup-id": "b1"})
    head = store.head(bucket, "p/a")
    assert head is not None and head.size == 5
    assert head.metadata == {"backup-id": "b1", "sha256": hashlib.sha256(b"first").hexdigest()}
    assert not store.put_once(bucket, "p/a", b"first", {"backup-id": "b2"})  # a retry: already there
    with pytest.raises(ObjectConflictError) as conflict:
        store.put_once(bucket, "p/a", b"other", {})
    assert (conflict.value.bucket, conflict.value.key) == (bucket, "p/a")
    assert conflict.value.existing_sha256 == hashlib.sha256(b"first").hexdigest()
    assert conflict.value.new_sha256 == hashlib.sha256(b"other").hexdigest()
    assert store.get(bucket, "p/a") == b"first"


def test_if_none_match_writes_only_where_nothing_is(store: ObjectStore, make_bucket: MakeBucket) -> None:
    bucket = make_bucket()
    assert store.put(bucket, "k", b"one", if_none_match=True)
    assert not store.put(bucket, "k", b"two", if_none_match=True)
    assert store.get(bucket, "k") == b"one"
    assert store.put(bucket, "k", b"three")  # unconditional: replaces
    assert store.get(bucket, "k") == b"three"
    store.delete(bucket, "k")
    assert store.put(bucket, "k", b"four", if_none_match=True)


# --- reads and errors ------------------------------------------------------------------------------


def test_a_missing_object_and_a_missing_bucket_are_told_apart(
    store: ObjectStore, make_bucket: MakeBucket
) -> None:
    bucket = make_bucket()
    assert store.head(bucket, "nothing") is None
    with pytest.raises(ObjectNotFoundError) as missing:
        store.get(bucket, "nothing")
    assert (missing.value.bucket, missing.value.key, missing.value.endpoint) == (
        bucket,
        "nothing",
        store.endpoint,
    )
    store.delete(bucket, "nothing")  # deleting what is not there succeeds
    gone = bucket + "-never-made"
    for call in (
        lambda: store.check_bucket(gone),
        lambda: store.get(gone, "k"),
        lambda: list(store.list_objects(gone, "")),
        lambda: store.put(gone, "k", b"x"),
        lambda: store.put_once(gone, "k", b"x", {}),
        lambda: store.object_lock_enabled(gone),
    ):
        with pytest.raises(BucketNotFoundError) as error:
            call()
        assert (error.value.bucket, error.value.endpoint) == (gone, store.endpoint)
    assert store.head(gone, "k") is None  # a HEAD cannot tell (S3 answers 404 without a body)
    assert not store.versioned(gone)


def test_chunks_stream_the_object(store: ObjectStore, make_bucket: MakeBucket) -> None:
    bucket = make_bucket()
    data = random.Random(7).randbytes(10_000)
    store.put(bucket, "blob", data)
    chunks = list(store.read_chunks(bucket, "blob", 4096))
    assert b"".join(chunks) == data and all(len(c) <= 4096 for c in chunks)
    with pytest.raises(ObjectNotFoundError):
        list(store.read_chunks(bucket, "no-blob", 4096))


# --- listing ------------------------------------------------------------------------------------


def test_a_listing_is_in_key_order_under_the_prefix(store: ObjectStore, make_bucket: MakeBucket) -> None:
    bucket = make_bucket()
    keys = [
        "p/t/0/000000000009.avro",
        "p/t/0/000000000010.avro",
        "p/t/1/000000000002.avro",
        "p/t/10/000000000001.avro",
        "p/t/2/000000000001.avro",
        "p/_manifests/20261128T000000000Z-abcdef.json",
        "p/A/0/000000000001.avro",
        "pq/t/0/000000000001.avro",
        "other/t/0/000000000001.avro",
    ]
    shuffled = keys[:]
    random.Random(3).shuffle(shuffled)
    for n, key in enumerate(shuffled):
        store.put(bucket, key, b"x" * n)
    listed = list(store.list_objects(bucket, "p/"))
    assert [o.key for o in listed] == sorted(k for k in keys if k.startswith("p/"))
    assert {o.key: o.size for o in listed} == {k: shuffled.index(k) for k in keys if k.startswith("p/")}
    assert all(o.last_modified is not None and o.listed_at is not None for o in listed)
    after = list(store.list_objects(bucket, "p/t/", start_after="p/t/1/000000000002.avro"))
    assert [o.key for o in after] == ["p/t/10/000000000001.avro", "p/t/2/000000000001.avro"]
    assert [o.key for o in store.list_objects(bucket, "")] == sorted(keys)
    assert list(store.list_objects(bucket, "nothing/")) == []


def test_a_listing_shows_no_deleted_object(store: ObjectStore, make_bucket: MakeBucket) -> None:
    bucket = make_bucket()
    for key in ("a", "b", "c"):
        store.put(bucket, key, b"x")
    store.delete(bucket, "b")
    assert [o.key for o in store.list_objects(bucket, "")] == ["a", "c"]
    assert store.delete_many(bucket, [ObjectVersion("a"), ObjectVersion("c"), ObjectVersion("zz")]) == []
    assert list(store.list_objects(bucket, "")) == []


# --- versions and Object Lock ----------------------------------------------------------------------


def test_a_plain_bucket_has_one_version_and_no_lock(store: ObjectStore, make_bucket: MakeBucket) -> None:
    bucket = make_bucket()
    store.put(bucket, "k", b"1")
    store.put(bucket, "k", b"2")
    assert not store.versioned(bucket)
    assert store.versions(bucket, "k") == ["null"]
    assert not store.object_lock_enabled(bucket)
    assert store.retention(bucket, "k") is None
    with pytest.raises(StorageAccessError) as refused:
        store.check_object_lock(bucket, "'object.lock.mode'='GOVERNANCE'")
    assert refused.value.operation == "GetObjectLockConfiguration" and refused.value.key is None
    assert f"Object Lock is not enabled on bucket {bucket!r}" in str(refused.value)


def test_a_delete_in_a_versioned_bucket_leaves_a_marker(store: ObjectStore, make_bucket: MakeBucket) -> None:
    bucket = make_bucket(object_lock=True)
    assert store.versioned(bucket) and store.object_lock_enabled(bucket)
    store.check_object_lock(bucket, "a test")
    store.put(bucket, "k", b"old")
    store.put(bucket, "k", b"new")
    store.put(bucket, "k-longer", b"another key")
    versions = store.versions(bucket, "k")
    head = store.head(bucket, "k")
    assert head is not None and head.version_id in versions and len(versions) == 2
    newest, oldest = head.version_id, *(set(versions) - {head.version_id})
    store.delete(bucket, "k")
    assert store.head(bucket, "k") is None
    with pytest.raises(ObjectNotFoundError):
        store.get(bucket, "k")
    assert [o.key for o in store.list_objects(bucket, "k")] == ["k-longer"]
    [marker] = set(store.versions(bucket, "k")) - {newest, oldest}
    store.delete(bucket, "k", marker)  # deleting the marker brings the object back
    assert store.get(bucket, "k") == b"new"
    store.delete(bucket, "k", newest)
    assert store.get(bucket, "k") == b"old"
    refused = store.delete_many(bucket, [ObjectVersion("k", oldest), ObjectVersion("k-longer")])
    assert refused == [] and store.versions(bucket, "k") == []


def test_a_retained_version_cannot_be_deleted_and_its_retention_only_grows(
    store: ObjectStore, make_bucket: MakeBucket
) -> None:
    bucket = make_bucket(object_lock=True)
    protection = _locked_for(10)
    assert protection.retain_until is not None
    assert store.put_once(bucket, "k", b"kept", {}, protection=protection)
    head = store.head(bucket, "k")
    assert head is not None and head.retention == Retention("GOVERNANCE", protection.retain_until)
    [version] = store.versions(bucket, "k")
    assert store.retention(bucket, "k", version) == Retention("GOVERNANCE", protection.retain_until)
    with pytest.raises(StorageAccessError):
        store.delete(bucket, "k", version)
    [refusal] = store.delete_many(bucket, [ObjectVersion("k", version)])
    assert (refusal.key, refusal.version_id, refusal.code) == ("k", version, "AccessDenied")
    # a retried upload with a later date retains the object that long; an earlier one changes nothing
    later = protection.model_copy(update={"retain_until": protection.retain_until + timedelta(minutes=5)})
    assert not store.put_once(bucket, "k", b"kept", {}, protection=later)
    assert store.retention(bucket, "k") == Retention(
        "GOVERNANCE", protection.retain_until + timedelta(minutes=5)
    )
    assert not store.put_once(bucket, "k", b"kept", {}, protection=protection)
    assert store.retention(bucket, "k") == Retention(
        "GOVERNANCE", protection.retain_until + timedelta(minutes=5)
    )
    with pytest.raises(StorageAccessError):
        store.put_retention(bucket, "k", Retention("GOVERNANCE", protection.retain_until), version)
    assert store.get(bucket, "k") == b"kept"
