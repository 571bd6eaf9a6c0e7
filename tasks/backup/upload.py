"""Uploading a partition's finished objects, and finding what an earlier attempt uploaded.

Each object is put once (`ObjectStore.put_once`, tasks.services.object_store: a conditional put
that accepts the same bytes already there) with metadata saying which records it holds, so that a
retried export of the default layout can resume after the chain of objects it already wrote. A work
unit sends its objects on a few threads while it reads on (`Uploads`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from layout.keys import KeyNaming, parse_object_key
from layout.manifest import ObjectEntry, Protection, join_key
from layout.objects import FinishedObject
from tasks.services.kafka.admin import PartitionWindow
from tasks.services.object_store import SHA256_METADATA

if TYPE_CHECKING:
    from tasks.services.object_store import ObjectStore

UPLOAD_THREADS = 8
"""Objects a unit uploads at once."""
UPLOAD_BYTES = 64 * 1024 * 1024
"""What a unit's finished objects waiting for their upload may hold (one object at least)."""
_META_FIRST = "first-offset"
_META_COUNT = "record-count"
_META_MIN_TS = "min-timestamp"
_META_MAX_TS = "max-timestamp"
_META_DIGEST = "records-digest"
_META_BACKUP = "backup-id"


def _object_metadata(obj: FinishedObject, backup_id: str) -> dict[str, str]:
    return {
        _META_FIRST: str(obj.first_offset),
        _META_COUNT: str(obj.record_count),
        _META_MIN_TS: "" if obj.min_timestamp is None else str(obj.min_timestamp),
        _META_MAX_TS: "" if obj.max_timestamp is None else str(obj.max_timestamp),
        _META_DIGEST: obj.records_digest,
        _META_BACKUP: backup_id,
    }


def upload_finished(
    store: ObjectStore,
    bucket: str,
    obj: FinishedObject,
    backup_id: str,
    protection: Protection | None = None,
) -> ObjectEntry:
    """Upload one finished object; `protection`: the backup's encryption and retention. The entry
    keeps the ETag the store gave it (for the run's verification; not in the manifest's JSON)."""
    put = store.put_once(bucket, obj.key, obj.data, _object_metadata(obj, backup_id), obj.sha256, protection)
    return ObjectEntry(
        key=obj.key,
        first_offset=obj.first_offset,
        last_offset=obj.last_offset,
        record_count=obj.record_count,
        min_timestamp=obj.min_timestamp,
        max_timestamp=obj.max_timestamp,
        size=len(obj.data),
        sha256=obj.sha256,
        records_digest=obj.records_digest,
        partition_values=obj.partition_values,
        etag=put.etag,
    )


class Uploads:
    """A unit's uploads, sent on UPLOAD_THREADS threads while the unit reads on. The finished
    objects waiting or being sent hold at most UPLOAD_BYTES (one object at least): past that,
    `send` waits for the oldest, which also raises the first failure."""

    def __init__(
        self,
        upload: Callable[[FinishedObject], ObjectEntry],
        threads: int = UPLOAD_THREADS,
        budget: int = UPLOAD_BYTES,
    ) -> None:
        self.upload, self.budget = upload, budget
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="kbackup-upload")
        self.sent: deque[tuple[Future[ObjectEntry], int]] = deque()
        self.held = 0

    def send(self, obj: FinishedObject) -> Future[ObjectEntry]:
        while self.sent and (self.sent[0][0].done() or self.held + len(obj.data) > self.budget):
            future, size = self.sent.popleft()
            self.held -= size
            future.result()
        future = self.pool.submit(self.upload, obj)
        self.sent.append((future, len(obj.data)))
        self.held += len(obj.data)
        return future

    def __enter__(self) -> Uploads:
        return self

    def __exit__(self, *failure: object) -> None:
        # after a failure the uploads not started yet are dropped (a retry sends them again)
        self.pool.shutdown(wait=True, cancel_futures=failure[0] is not None)


def _optional_int(text: str | None) -> int | None:
    return int(text) if text else None


EarlierKeys = dict[str, dict[int, tuple[str, ...]]]
"""Per topic and partition: keys named as this export names its objects whose last offset lies
in the partition's window — what an earlier attempt or a killed run may have left there."""


def earlier_keys(
    store: ObjectStore, bucket: str, naming: KeyNaming, windows: Sequence[PartitionWindow]
) -> EarlierKeys:
    """The keys in the windows, found by one listing of each topic's folder (a few requests per
    topic, whatever its partition count) instead of one listing per partition. Empty for the
    partitioned layouts, which never resume."""
    found: EarlierKeys = {}
    if naming.partitioned:
        return found
    by_topic: dict[str, dict[int, PartitionWindow]] = {}
    for window in windows:
        if window.end > window.start:
            by_topic.setdefault(window.topic, {})[window.partition] = window
    for topic, open_windows in by_topic.items():
        keys: dict[int, list[str]] = {}
        some_key = naming.object_key(topic, next(iter(open_windows)), 0)  # <folder>/<partition>/<name>
        for listed in store.list_objects(bucket, some_key.rsplit("/", 2)[0] + "/"):
            parsed = parse_object_key(listed.key, naming.prefix)
            found_in = open_windows.get(parsed.partition) if parsed.partition is not None else None
            if found_in is not None and _named_in(listed.key, parsed.last_offset, naming, found_in):
                keys.setdefault(found_in.partition, []).append(listed.key)
        found[topic] = {partition: tuple(names) for partition, names in keys.items()}
    return found


def _named_in(key: str, last_offset: int | None, naming: KeyNaming, window: PartitionWindow) -> bool:
    """Whether `key` is exactly this export's name of an object ending in the window."""
    return (
        last_offset is not None
        and window.start <= last_offset < window.end
        and key == naming.object_key(window.topic, window.partition, last_offset)
    )


def written_objects(
    store: ObjectStore,
    bucket: str,
    naming: KeyNaming,
    window: PartitionWindow,
    listed: Iterable[str] | None = None,
) -> list[ObjectEntry]:
    """Objects a previous attempt of this export already wrote (default layout only): the chain of
    non-overlapping objects from the window's start, read back from their keys and metadata. Only
    keys named exactly as this export names them count: another chain's objects (another suffix)
    are never taken for this one's. `listed`: the keys in the window found by `earlier_keys`;
    without it the partition's folder is listed here."""
    if naming.partitioned:
        return []
    if listed is None:
        folder = (
            join_key(naming.prefix, window.topic, naming.padding.pad("partition", window.partition)) + "/"
        )
        listed = (entry.key for entry in store.list_objects(bucket, folder))
    candidates = []
    for key in listed:
        last = parse_object_key(key, naming.prefix).last_offset
        if last is not None and _named_in(key, last, naming, window):
            candidates.append((last, key))
    chain: list[ObjectEntry] = []
    next_free = window.start
    for last_offset, key in sorted(candidates):
        head = store.head(bucket, key)
        if head is None or _META_FIRST not in head.metadata or SHA256_METADATA not in head.metadata:
            break
        metadata = head.metadata
        first = int(metadata[_META_FIRST])
        if first < next_free:
            break  # overlaps the chain: an orphan of another window; resume before it
        chain.append(
            ObjectEntry(
                key=key,
                first_offset=first,
                last_offset=last_offset,
                record_count=int(metadata[_META_COUNT]),
                min_timestamp=_optional_int(metadata.get(_META_MIN_TS)),
                max_timestamp=_optional_int(metadata.get(_META_MAX_TS)),
                size=head.size,
                sha256=metadata[SHA256_METADATA],
                records_digest=metadata[_META_DIGEST],
                etag=head.etag,
            )
        )
        next_free = last_offset + 1
    return chain
