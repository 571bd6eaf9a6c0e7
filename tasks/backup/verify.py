"""Verification: the objects in the bucket are the ones the manifest names, bit for bit, and
(deep) decode to the very records that were read from Kafka.

What each depth proves:
- every depth: each key the manifest names is in a listing of the prefix (restore discovers
  objects by listing, and a store can answer a HEAD for a key it lists under another name:
  SeaweedFS keeps `a\\b` as `a/b`), with the manifest's size, and
  - for an object whose ETag the entry carries (the backup flow's own verification: the ETag the
    upload's PUT returned, or the HEAD's of an identical object a retried export found there) the
    listing shows that ETag: the key's current object is the one that PUT wrote. An object put in
    one request (unencrypted, SSE-S3) has the md5 of its bytes as its ETag, so its bytes are this
    run's (but for a deliberate md5 collision); with SSE-KMS the ETag is another value S3 gives
    that object version. No HEAD is made; its sha256 metadata, written by that same PUT, is not
    read again (a copy of the same bytes over it with other metadata would go unseen);
  - for any other (a manifest read back from the bucket — `kbackup verify`, older backups — a
    multipart upload, a store that lists no ETags) a HEAD: its size and its stored sha256
    metadata equal the manifest's. The bytes are not read: a change that keeps the size and the
    metadata goes unseen.
- `quick`: only that.
- `sampled`: also a sample of the backup's objects (`sample`: SAMPLE_FRACTION of them, SAMPLE_MIN
  and one of each topic at least, at most SAMPLE_BYTES past those, chosen with the seed) fetched:
  their bytes' sha256 is the manifest's, and they decode to the manifest's record count and (a
  lossless backup) records digest, i.e. to the records read from Kafka. A damage to an object
  outside the sample is seen only as the checks above see it.
- `full`: every object fetched and its sha256 checked; every partition's records digest recomputed
  over all its objects' records in offset order.

Problems name their object as restore's errors do (`s3://bucket/key …`).
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import random
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
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
from layout.keys import is_bookkeeping_key
from layout.manifest import Manifest, ObjectEntry, PartitionEntry, join_key
from layout.restore.errors import MissingObjectError
from layout.schemas import cached_avro_lookup
from layout.spec_bridge import codec_context, spec_of
from tasks.runtime.retry import RETRY_OPTIONS
from tasks.services.errors import StorageAccessError, VerificationError
from tasks.services.object_store import SHA256_METADATA, ObjectInfo

if TYPE_CHECKING:
    from tasks.services.object_store import ObjectStore

Depth = Literal["quick", "sampled", "full"]
T = TypeVar("T")
SAMPLE_FRACTION = 0.1  # of the backup's objects a sampled verification decodes
SAMPLE_MIN = 3  # objects it decodes at least (every one of a smaller backup)
SAMPLE_BYTES = 256 * 1024 * 1024  # what its sample fetches at most, past one object of each topic
VERIFY_THREADS = 16  # objects asked for at once (boto3's clients are thread-safe)
VERIFY_BYTES = 128 * 1024 * 1024  # what the decodings running at once may fetch, one at least


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


class Listing:
    """The objects a listing of s3://bucket/folder shows (manifests left out): what restore reads;
    `objects`: key -> the listing's entry (size, ETag). A plain class, which Prefect does not walk
    when it inspects a task's parameters (it walks dicts and dataclasses, item by item)."""

    def __init__(self, bucket: str, folder: str, objects: Mapping[str, ObjectInfo]) -> None:
        self.bucket, self.folder, self.objects = bucket, folder, objects

    @property
    def keys(self) -> frozenset[str]:
        return frozenset(self.objects)


def list_prefix(store: ObjectStore, bucket: str, prefix: str) -> Listing:
    """List the prefix as restore does (tasks.restore.discover.plan_restore)."""
    folder = join_key(prefix) + "/" if join_key(prefix) else ""
    listed = {o.key: o for o in store.list_objects(bucket, folder) if not is_bookkeeping_key(o.key)}
    return Listing(bucket, folder, listed)


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


@dataclass(frozen=True)
class _Decoding:
    """One decoding job: a partition's digest over all its objects, or one object's check."""

    partition: PartitionEntry
    objects: tuple[ObjectEntry, ...]
    whole_partition: bool

    @property
    def weight(self) -> int:
        """The bytes the job fetches (what it holds in memory is of that order)."""
        return sum(o.size for o in self.objects)


def _run_decoding(
    store: ObjectStore, bucket: str, manifest: Manifest, job: _Decoding
) -> tuple[int, int, list[str]]:
    """(objects decoded, records decoded, problems) of one job."""
    problems: list[str] = []
    if job.whole_partition:
        records = _check_partition_digest(store, bucket, manifest, job.partition, problems)
    else:
        [entry] = job.objects
        records = _check_object(store, bucket, manifest, job.partition, entry, problems)
    return len(job.objects), records, problems


def _in_order(
    call: Callable[[T], Any], jobs: Sequence[T], weight: Callable[[T], int] = lambda _: 0, budget: int = 0
) -> Iterator[Any]:
    """`call` of each job on VERIFY_THREADS threads, the results in the jobs' order; with a
    `budget`, jobs are started while the weights of those running stay within it (one at least)."""
    if len(jobs) <= 1:
        yield from map(call, jobs)
        return
    with ThreadPoolExecutor(min(VERIFY_THREADS, len(jobs))) as pool:
        running: deque[tuple[Future[Any], int]] = deque()
        held = 0
        for job in jobs:
            cost = weight(job)
            while running and (len(running) >= VERIFY_THREADS or (budget and held + cost > budget)):
                future, done_cost = running.popleft()
                held -= done_cost
                yield future.result()
            running.append((pool.submit(call, job), cost))
            held += cost
        while running:
            yield running.popleft()[0].result()


def _uploaded(listing: Listing, entry: ObjectEntry) -> ObjectInfo | None:
    """The listing's entry of an object whose upload's ETag is known and listed: no HEAD needed."""
    listed = listing.objects.get(entry.key)
    if entry.etag is None or listed is None or listed.etag is None:
        return None
    return listed


def _check_present(
    bucket: str, manifest: Manifest, listing: Listing, entry: ObjectEntry, seen: ObjectInfo | None
) -> list[str]:
    """The problems of one object as its listing entry (`_uploaded`) or else its HEAD (`seen`)
    shows it; an object the HEAD does not find is missing."""
    if seen is None:
        return [_missing(bucket, manifest, entry.key)]
    problems = []
    if entry.key not in listing.objects:
        problems.append(_not_listed(listing, manifest, entry.key))
    if seen.size != entry.size:
        problems.append(_corrupt(bucket, entry.key, f"{seen.size} bytes, the manifest says {entry.size}"))
    elif entry.etag is not None and seen.etag is not None and seen.etag != entry.etag:
        problems.append(
            _corrupt(
                bucket,
                entry.key,
                f"its ETag {seen.etag} is not the one its upload got ({entry.etag}): it was replaced since",
            )
        )
    elif seen.metadata.get(SHA256_METADATA, entry.sha256) != entry.sha256:
        problems.append(_corrupt(bucket, entry.key, "its stored sha256 differs from the manifest's"))
    return problems


def sample(objects: Sequence[tuple[str, int]], seed: int) -> list[int]:
    """The indices, in order, of the objects a sampled verification decodes, of `objects` (each
    object's topic and size): one of each topic, then more in the seed's random order until
    SAMPLE_FRACTION of them, SAMPLE_MIN at least, are chosen, or the next would take the sample
    past SAMPLE_BYTES. It grows with the backup's objects, not with its partitions."""
    order = random.Random(seed).sample(range(len(objects)), len(objects))
    first_of_topic = {objects[index][0]: index for index in reversed(order)}
    chosen = set(first_of_topic.values())
    wanted = max(SAMPLE_MIN, round(len(objects) * SAMPLE_FRACTION))
    held = sum(objects[i][1] for i in chosen)
    for index in order:
        if index in chosen:
            continue
        if len(chosen) >= wanted or held + objects[index][1] > SAMPLE_BYTES:
            break
        chosen.add(index)
        held += objects[index][1]
    return sorted(chosen)


def verify_backup(
    store: ObjectStore,
    bucket: str,
    manifest: Manifest,
    depth: Depth,
    seed: int = 0,
    listing: Listing | None = None,
) -> VerifyReport:
    """Check the manifest's objects as the module docstring says of `depth`: each in `listing` (a
    listing of the backup's prefix, made here when not given) with its upload's ETag, else HEADed;
    `sampled`/`full` decode and recompute digests.

    Objects are asked for on VERIFY_THREADS threads (HEADs all at once; decodings while the bytes
    they fetch stay within VERIFY_BYTES); the problems are reported in the manifest's order, the
    same whatever the threads' timing."""
    if listing is None:
        listing = list_prefix(store, bucket, spec_of(manifest).prefix)
    checked = decoded = records = 0
    entries = [entry for partition in manifest.partitions for entry in partition.objects]
    unheaded = [entry for entry in entries if _uploaded(listing, entry) is None]
    heads = iter(list(_in_order(lambda entry: store.head(bucket, entry.key), unheaded)))
    found: list[list[str]] = []  # each partition's problems, in the manifest's order
    decodings: list[tuple[int, _Decoding]] = []  # (the partition's index, what to decode)
    present: list[tuple[int, ObjectEntry]] = []  # (the partition's index, an object there)
    for index, partition in enumerate(manifest.partitions):
        found.append([])
        problems = found[-1]
        if sum(o.record_count for o in partition.objects) != partition.record_count:
            problems.append(
                f"{partition.topic}/{partition.partition}: objects hold fewer records than the partition's count"
            )
        there = []
        for entry in partition.objects:
            seen = _uploaded(listing, entry) or next(heads)
            checked += 1
            problems.extend(_check_present(bucket, manifest, listing, entry, seen))
            if seen is not None:
                there.append(entry)
        present.extend((index, entry) for entry in there)
        if depth == "full" and len(there) == len(partition.objects):
            decodings.append((index, _Decoding(partition, partition.objects, whole_partition=True)))
        elif depth == "full":  # the partition's digest cannot be recomputed; check what is there
            decodings.extend(
                (index, _Decoding(partition, (entry,), whole_partition=False)) for entry in there
            )
    if depth == "sampled":
        for chosen in sample([(manifest.partitions[i].topic, entry.size) for i, entry in present], seed):
            index, entry = present[chosen]
            decodings.append((index, _Decoding(manifest.partitions[index], (entry,), whole_partition=False)))
    outcomes = _in_order(
        lambda job: _run_decoding(store, bucket, manifest, job[1]),
        decodings,
        lambda job: job[1].weight,
        VERIFY_BYTES,
    )
    for (index, _), (objects, job_records, job_problems) in zip(decodings, outcomes, strict=True):
        decoded += objects
        records += job_records
        found[index].extend(job_problems)  # after the partition's own, in the decodings' order
    problems = [problem for partition_problems in found for problem in partition_problems]
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
