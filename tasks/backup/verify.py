"""Verification: the objects in the bucket are the ones the manifest names, bit for bit, and
(deep) decode to the very records that were read from Kafka.

Every key the manifest names must also be in a listing of the prefix: restore discovers objects by
listing, and a store can answer a HEAD for a key it lists under another name (SeaweedFS keeps
`a\\b` as `a/b`). Problems name their object as restore's errors do (`s3://bucket/key …`).
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from formats import Codec, CodecContext, RecordsDigest, get_codec
from formats.columns import records_digest_inputs, update_digest
from formats.envelope import Record
from formats.errors import CorruptObjectError, undecodable
from layout.keys import is_manifest_key
from layout.manifest import Manifest, ObjectEntry, PartitionEntry, join_key
from layout.restore.errors import MissingObjectError
from layout.schemas import cached_avro_lookup
from layout.spec_bridge import codec_context, spec_of
from tasks.runtime.retry import RETRY_OPTIONS
from tasks.services.errors import StorageAccessError, VerificationError
from tasks.services.object_store import SHA256_METADATA

if TYPE_CHECKING:
    from tasks.services.object_store import ObjectStore

Depth = Literal["quick", "sampled", "full"]
T = TypeVar("T")
SAMPLE_FRACTION = 0.1


class VerifyReport(BaseModel):
    backup_id: str
    depth: Depth
    objects_checked: int
    objects_decoded: int
    records_decoded: int
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class Listing:
    """The keys a listing of s3://bucket/folder shows (manifests left out): what restore reads.
    A frozenset, which Prefect does not walk when it inspects a task's parameters."""

    bucket: str
    folder: str
    keys: frozenset[str]


def list_prefix(store: ObjectStore, bucket: str, prefix: str) -> Listing:
    """List the prefix as restore does (tasks.restore.discover.plan_restore)."""
    folder = join_key(prefix) + "/" if join_key(prefix) else ""
    keys = frozenset(o.key for o in store.list_objects(bucket, folder) if not is_manifest_key(o.key))
    return Listing(bucket, folder, keys)


def _missing(bucket: str, manifest: Manifest, key: str) -> str:
    return str(MissingObjectError(bucket, key, manifest.backup_id))


def _corrupt(bucket: str, key: str, reason: str) -> str:
    return str(CorruptObjectError(bucket, key, reason))


def _not_listed(listing: Listing, manifest: Manifest, key: str) -> str:
    return (
        f"s3://{listing.bucket}/{key} is listed in manifest {manifest.backup_id} but not in a listing of "
        f"s3://{listing.bucket}/{listing.folder} (the store answers for the key but keeps the object under "
        "another name; restore would refuse it)"
    )


def _fetch(
    store: ObjectStore, bucket: str, manifest: Manifest, entry: ObjectEntry, problems: list[str]
) -> bytes | None:
    """The object's bytes (None, noted as missing, when it was deleted since it was checked); a
    sha256 other than the manifest's is noted and the bytes are still decoded."""
    try:
        data = store.get(bucket, entry.key)
    except StorageAccessError:
        if store.head(bucket, entry.key) is not None:
            raise
        problems.append(_missing(bucket, manifest, entry.key))  # deleted since it was checked
        return None
    actual = hashlib.sha256(data).hexdigest()
    if actual != entry.sha256:
        problems.append(
            _corrupt(bucket, entry.key, f"sha256 {actual} differs from the manifest's {entry.sha256}")
        )
    return data


@dataclass(frozen=True)
class _Reading(Generic[T]):
    """How an object is decoded: into records one by one, or into column batches."""

    read: Callable[[Codec, bytes, CodecContext], Iterator[T]]
    records_in: Callable[[T], int]


RECORDS: _Reading[Record] = _Reading(lambda codec, data, context: codec.reader(data, context), lambda _: 1)
COLUMNS: _Reading[pa.RecordBatch] = _Reading(
    lambda codec, data, context: codec.read_columns(data, context), lambda batch: batch.num_rows
)


def _decode(
    store: ObjectStore,
    bucket: str,
    manifest: Manifest,
    entry: ObjectEntry,
    partition: PartitionEntry,
    problems: list[str],
    reading: _Reading[T],
) -> Iterator[T]:
    """The object decoded as `reading` says (records for merging interleaved objects by offset,
    column batches otherwise); a decoding failure is noted, naming the object and the first record
    not decoded."""
    data = _fetch(store, bucket, manifest, entry, problems)
    if data is None:
        return
    codec = get_codec(manifest.format)
    spec = spec_of(manifest)
    lookup = cached_avro_lookup(manifest.schemas)
    context = codec_context(
        spec.format.value, spec.codec, partition.topic, partition.partition, entry.key, lookup
    )
    decoded = 0
    try:
        for item in reading.read(codec, data, context):
            yield item
            decoded += reading.records_in(item)
    except Exception as exc:  # noqa: BLE001 - any decoding failure is a verification problem
        problems.append(str(undecodable(bucket, entry.key, exc, decoded)))


def _digest_batches(batches: Iterator[pa.RecordBatch], with_digest: bool) -> tuple[int, str]:
    """(records, records digest) of column batches: one sha256 update per batch."""
    digest = hashlib.sha256()
    count = 0
    for batch in batches:
        count += batch.num_rows
        if with_digest and batch.num_rows:
            update_digest(digest, records_digest_inputs(batch))
    return count, "sha256:" + digest.hexdigest()


def _in_offset_order(objects: Sequence[ObjectEntry]) -> bool:
    """Whether the objects follow each other without overlapping (the default layout's chain)."""
    return all(a.last_offset < b.first_offset for a, b in itertools.pairwise(objects))


def _digest_parts(record: Record) -> tuple[Any, ...]:
    return record.key, record.value, record.headers, record.timestamp, int(record.timestamp_type)


def _check_object(
    store: ObjectStore,
    bucket: str,
    manifest: Manifest,
    partition: PartitionEntry,
    entry: ObjectEntry,
    problems: list[str],
) -> int:
    count, digest = _digest_batches(
        _decode(store, bucket, manifest, entry, partition, problems, COLUMNS), manifest.lossless
    )
    if count != entry.record_count:
        problems.append(
            _corrupt(bucket, entry.key, f"decoded {count} records, the manifest says {entry.record_count}")
        )
    elif manifest.lossless and digest != entry.records_digest:
        problems.append(
            _corrupt(
                bucket,
                entry.key,
                f"records digest {digest} differs from the manifest's {entry.records_digest}",
            )
        )
    return count


def _check_partition_digest(
    store: ObjectStore, bucket: str, manifest: Manifest, partition: PartitionEntry, problems: list[str]
) -> int:
    """Recompute the partition's digest over all its objects' records in offset order: column
    batches object after object for a chain, a merge record by record where objects interleave
    (PARTITIONBY layouts)."""
    objects = sorted(partition.objects, key=lambda o: (o.first_offset, o.last_offset))
    if _in_offset_order(objects):
        batches = (
            batch
            for entry in objects
            for batch in _decode(store, bucket, manifest, entry, partition, problems, COLUMNS)
        )
        count, hexdigest = _digest_batches(batches, manifest.lossless)
    else:
        streams = [_decode(store, bucket, manifest, entry, partition, problems, RECORDS) for entry in objects]
        records_digest = RecordsDigest()
        count = 0
        for record in heapq.merge(*streams, key=lambda r: r.offset):
            count += 1
            records_digest.update(*_digest_parts(record))
        hexdigest = records_digest.hexdigest()
    if count != partition.record_count:
        problems.append(
            f"{partition.topic}/{partition.partition}: decoded {count} records, the manifest says {partition.record_count}"
        )
    elif manifest.lossless and hexdigest != partition.records_digest:
        problems.append(
            f"{partition.topic}/{partition.partition}: records digest {hexdigest} differs from the manifest's "
            f"{partition.records_digest} (read from Kafka)"
        )
    return count


def verify_backup(
    store: ObjectStore,
    bucket: str,
    manifest: Manifest,
    depth: Depth,
    seed: int = 0,
    listing: Listing | None = None,
) -> VerifyReport:
    """Check the manifest's objects: each in `listing` (a listing of the backup's prefix, made here
    when not given), its size and stored sha256; `sampled`/`full` decode and recompute digests."""
    if listing is None:
        listing = list_prefix(store, bucket, spec_of(manifest).prefix)
    problems: list[str] = []
    checked = decoded = records = 0
    rng = random.Random(seed)
    for partition in manifest.partitions:
        if sum(o.record_count for o in partition.objects) != partition.record_count:
            problems.append(
                f"{partition.topic}/{partition.partition}: objects hold fewer records than the partition's count"
            )
        present = []
        for entry in partition.objects:
            head = store.head(bucket, entry.key)
            checked += 1
            if head is None:
                problems.append(_missing(bucket, manifest, entry.key))
                continue
            present.append(entry)
            if entry.key not in listing.keys:
                problems.append(_not_listed(listing, manifest, entry.key))
            if head.size != entry.size:
                problems.append(
                    _corrupt(bucket, entry.key, f"{head.size} bytes, the manifest says {entry.size}")
                )
            elif head.metadata.get(SHA256_METADATA, entry.sha256) != entry.sha256:
                problems.append(_corrupt(bucket, entry.key, "its stored sha256 differs from the manifest's"))
        if depth == "full" and len(present) == len(partition.objects):
            records += _check_partition_digest(store, bucket, manifest, partition, problems)
            decoded += len(partition.objects)
        elif depth == "full":  # the partition's digest cannot be recomputed; check what is there
            for entry in present:
                records += _check_object(store, bucket, manifest, partition, entry, problems)
                decoded += 1
        elif depth == "sampled" and present:
            wanted = max(1, round(len(present) * SAMPLE_FRACTION))
            for entry in rng.sample(present, wanted):
                records += _check_object(store, bucket, manifest, partition, entry, problems)
                decoded += 1
    return VerifyReport(
        backup_id=manifest.backup_id,
        depth=depth,
        objects_checked=checked,
        objects_decoded=decoded,
        records_decoded=records,
        problems=problems,
    )


@task(name="list-objects", cache_policy=NO_CACHE, **RETRY_OPTIONS)
def list_prefix_task(bucket: str, prefix: str) -> Listing:
    from tasks.services.object_store import open_store

    return list_prefix(open_store(), bucket, prefix)


@task(name="verify-backup", cache_policy=NO_CACHE, **RETRY_OPTIONS)
def verify_backup_task(bucket: str, manifest: Manifest, depth: Depth) -> VerifyReport:
    from tasks.services.object_store import open_store

    report = verify_backup(open_store(), bucket, manifest, depth)
    if report.problems:
        raise VerificationError(bucket, manifest.backup_id, report.problems)
    return report
