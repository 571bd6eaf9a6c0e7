"""The export's uploads in memory (tasks/backup/upload.py, tasks/backup/export.py on a MemoryStore):
every object put once, a retried export resuming after the objects its earlier attempt wrote, and
what counts as that attempt's objects."""

from __future__ import annotations

from typing import Any

import pytest

from layout.keys import KeyNaming
from tasks.backup.upload import written_objects
from tasks.services.errors import ObjectConflictError, TransientStorageError
from tasks.services.kafka.admin import PartitionWindow
from tasks.services.object_store import MemoryStore
from tests.support.memory_backup import Partitions, export, messages, plan_of, spec_of

BUCKET = "bkt"
KCQL = f"INSERT INTO {BUCKET}:p SELECT * FROM orders STOREAS AVRO PROPERTIES('store.envelope'=true, 'flush.count'=10)"


class Flaky(MemoryStore):
    """A MemoryStore whose puts fail (as throttling would) once `fail_after` of them succeeded."""

    def __init__(self, fail_after: int | None = None) -> None:
        super().__init__()
        self.fail_after = fail_after
        self.puts: list[str] = []

    def put(self, bucket: str, key: str, data: bytes, **options: Any) -> bool:
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
