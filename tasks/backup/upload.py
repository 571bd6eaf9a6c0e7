"""Uploading a partition's finished objects, and finding what an earlier attempt uploaded.

Each object is put once (`ObjectStore.put_once`, tasks.services.object_store: a conditional put
that accepts the same bytes already there) with metadata saying which records it holds, so that a
retried export of the default layout can resume after the chain of objects it already wrote.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from layout.keys import KeyNaming, parse_object_key
from layout.manifest import ObjectEntry, Protection, join_key
from layout.objects import FinishedObject
from tasks.services.kafka.admin import PartitionWindow
from tasks.services.object_store import SHA256_METADATA

if TYPE_CHECKING:
    from tasks.services.object_store import ObjectStore

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
    """Upload one finished object; `protection`: the backup's encryption and retention."""
    store.put_once(bucket, obj.key, obj.data, _object_metadata(obj, backup_id), obj.sha256, protection)
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
    )


def _optional_int(text: str | None) -> int | None:
    return int(text) if text else None


def written_objects(
    store: ObjectStore, bucket: str, naming: KeyNaming, window: PartitionWindow
) -> list[ObjectEntry]:
    """Objects a previous attempt of this export already wrote (default layout only): the chain of
    non-overlapping objects from the window's start, read back from their keys and metadata. Only
    keys named exactly as this export names them count: another chain's objects (another suffix)
    are never taken for this one's."""
    if naming.partitioned:
        return []
    folder = join_key(naming.prefix, window.topic, naming.padding.pad("partition", window.partition)) + "/"
    candidates = []
    for listed in store.list_objects(bucket, folder):
        parsed = parse_object_key(listed.key, naming.prefix)
        if (
            parsed.last_offset is not None
            and window.start <= parsed.last_offset < window.end
            and listed.key == naming.object_key(window.topic, window.partition, parsed.last_offset)
        ):
            candidates.append((parsed.last_offset, listed.key))
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
            )
        )
        next_free = last_offset + 1
    return chain
