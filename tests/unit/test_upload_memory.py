"""The export's uploads in memory (tasks/backup/upload.py, tasks/backup/export.py on a MemoryStore):
every object put once, a retried export resuming after the objects its earlier attempt wrote, and
what counts as that attempt's objects."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from layout.keys import KeyNaming
from layout.manifest import PartitionEntry
from tasks.backup.upload import written_objects
from tasks.services.errors import ObjectConflictError, TransientStorageError
from tasks.services.kafka.admin import PartitionWindow
from tasks.services.object_store import MemoryStore, PutResult
from tasks.services.object_store.base import ObjectInfo
from tests.support.memory_backup import Partitions, export, messages, plan_of, spec_of

BUCKET = "bkt"
KCQL = f"INSERT INTO {BUCKET}:p SELECT * FROM orders STOREAS AVRO PROPERTIES('store.envelope'=true, 'flush.count'=10)"


class Flaky(MemoryStore):
    """A MemoryStore whose puts fail (as throttling would) once `fail_after` of them succeeded."""

    def __init__(self, fail_after: int | None = None) -> None:
        super().__init__()
        self.fail_after = fail_after
        self.puts: list[str] = []
        self.listings: list[str] = []

    def list_objects(self, bucket: str, prefix: str, *, start_after: str = "") -> Iterator[ObjectInfo]:
        self.listings.append(prefix)
        return super().list_objects(bucket, prefix, start_after=start_after)

    def put(self, bucket: str, key: str, data: bytes, **options: Any) -> PutResult | None:
        if self.fail_after is not None and len(self.puts) >= self.fail_after:
            raise TransientStorageError("PutObject", bucket, key, self.endpoint, "SlowDown")
        self.puts.append(key)
        return super().put(bucket, key, data, **options)


def _store(fail_after: int | None = None) -> Flaky:
    store = Flaky(fail_after)
    store.create_bucket(BUCKET)
    return store


def test_a_retried_export_resumes_after_the_objects_its_first_attempt_wrote() -> None:
    source = Partitions("orders", {0: messages(range(45))})
    plan = plan_of(spec_of(KCQL), source)
    clean = _store()
    [expected] = export(clean, plan, source)
    assert [o.last_offset for o in expected.objects] == [9, 19, 29, 39, 44]

    store = _store(fail_after=2)
    with pytest.raises(TransientStorageError):
        export(store, plan, source)
    assert store.puts == [o.key for o in expected.objects[:2]]
    store.fail_after, store.puts = None, []
    [entry] = export(store, plan, source)  # the retry
    assert store.puts == [o.key for o in expected.objects[2:]]  # the first two are not sent again
    assert entry.model_dump(exclude={"seconds"}) == expected.model_dump(exclude={"seconds"})
    for obj in expected.objects:
        assert store.get(BUCKET, obj.key) == clean.get(BUCKET, obj.key)
    # every entry keeps its object's ETag (the PUT's; a resumed one's the HEAD's) for the run's
    # verification, outside the manifest's JSON
    etags = [o.etag for o in entry.objects]
    assert etags == [o.etag for o in expected.objects]
    assert etags == [o.etag for o in store.list_objects(BUCKET, "p/")] and None not in etags
    assert "etag" not in entry.model_dump_json()
    read_back = PartitionEntry.model_validate_json(entry.model_dump_json())
    assert read_back == entry and {o.etag for o in read_back.objects} == {None}


def test_an_export_writing_the_same_objects_again_is_accepted_and_other_bytes_are_refused() -> None:
    source = Partitions("orders", {0: messages(range(20))})
    plan = plan_of(spec_of(KCQL), source)
    store = _store()
    [first] = export(store, plan, source)
    for obj in first.objects:  # objects without the resume metadata: every one is put again
        store.put(BUCKET, obj.key, store.get(BUCKET, obj.key), metadata={"sha256": obj.sha256})
    store.puts = []
    [again] = export(store, plan, source)
    assert store.puts == [o.key for o in first.objects]  # put once more: the same bytes, accepted
    assert [o.sha256 for o in again.objects] == [o.sha256 for o in first.objects]
    changed = Partitions("orders", {0: messages(range(20), tag="-changed")})  # other records, same offsets
    with pytest.raises(ObjectConflictError) as conflict:
        export(store, plan_of(spec_of(KCQL), changed), changed)
    assert (conflict.value.bucket, conflict.value.key, conflict.value.existing_sha256) == (
        BUCKET,
        first.objects[0].key,
        first.objects[0].sha256,
    )


def test_only_this_exports_own_chain_of_objects_counts_as_written() -> None:
    source = Partitions("orders", {0: messages(range(30))})
    spec = spec_of(KCQL)
    plan = plan_of(spec, source)
    store = _store()
    [entry] = export(store, plan, source)
    naming = KeyNaming(prefix="p", extension="avro")
    window = PartitionWindow(topic="orders", partition=0, start=0, end=30)
    assert written_objects(store, BUCKET, naming, window) == list(entry.objects)
    # another chain's objects (named with its suffix) are never this one's
    assert (
        written_objects(store, BUCKET, KeyNaming(prefix="p", extension="avro", key_suffix="-cX"), window)
        == []
    )
    # the chain stops before an object without the export's metadata, and at one that overlaps
    second = entry.objects[1]
    store.put(BUCKET, second.key, store.get(BUCKET, second.key), metadata={"sha256": second.sha256})
    assert written_objects(store, BUCKET, naming, window) == [entry.objects[0]]
    later = PartitionWindow(topic="orders", partition=0, start=5, end=30)
    assert written_objects(store, BUCKET, naming, later) == []  # 0-9 overlaps a window from 5
    partitioned = KeyNaming(prefix="p", extension="avro", partition_names=("region",))
    assert written_objects(store, BUCKET, partitioned, window) == []


@pytest.mark.parametrize("listed_once", [True, False])
def test_a_run_after_a_killed_one_resumes_every_partition_from_one_listing_per_topic(
    listed_once: bool,
) -> None:
    """What a killed run left is found by one listing of the topic's folder (the flow's
    earlier_keys), not one per partition (a retried task's way), and every partition resumes
    after it: the same entries, nothing put twice."""
    source = Partitions("orders", {p: messages(range(25 + p)) for p in range(6)})
    plan = plan_of(spec_of(KCQL), source)
    clean = _store()
    expected = export(clean, plan, source)
    store = _store(fail_after=7)
    with pytest.raises(TransientStorageError):
        export(store, plan, source, workers=1)  # killed after 7 objects
    left = list(store.puts)
    store.fail_after, store.puts, store.listings = None, [], []
    entries = export(store, plan, source, listed_once=listed_once)
    assert not set(store.puts) & set(left)  # nothing sent again
    assert len(store.listings) == (1 if listed_once else len(source.by_partition))
    strip = {"seconds"}
    assert [e.model_dump(exclude=strip) for e in entries] == [e.model_dump(exclude=strip) for e in expected]
