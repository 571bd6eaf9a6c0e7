"""Verification: the objects in the bucket are the ones the manifest names, bit for bit, and
(deep) decode to the very records that were read from Kafka."""

from __future__ import annotations

import hashlib
import heapq
import random
from collections.abc import Iterator
from typing import Any, Literal

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from formats import RecordsDigest, get_codec
from formats.envelope import Record
from layout.manifest import Manifest, ObjectEntry, PartitionEntry
from layout.spec_bridge import codec_context_from_manifest
from tasks.errors import VerificationError
from tasks.retry import RETRY_OPTIONS
from tasks.s3 import SHA256_METADATA, get_object_bytes, head_object

Depth = Literal["quick", "sampled", "full"]
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


def _decode(
    s3: Any,
    bucket: str,
    manifest: Manifest,
    entry: ObjectEntry,
    partition: PartitionEntry,
    problems: list[str],
) -> Iterator[Record]:
    data = get_object_bytes(s3, bucket, entry.key)
    actual = hashlib.sha256(data).hexdigest()
    if actual != entry.sha256:
        problems.append(f"{entry.key}: sha256 {actual} differs from the manifest's {entry.sha256}")
    codec = get_codec(manifest.format)
    context = codec_context_from_manifest(manifest, partition.topic, partition.partition, entry.key)
    try:
        yield from codec.reader(data, context)
    except Exception as exc:  # noqa: BLE001 - any decoding failure is a verification problem
        problems.append(f"{entry.key}: {exc}")


def _digest_parts(record: Record) -> tuple[Any, ...]:
    return record.key, record.value, record.headers, record.timestamp, int(record.timestamp_type)


def _check_object(
    s3: Any,
    bucket: str,
    manifest: Manifest,
    partition: PartitionEntry,
    entry: ObjectEntry,
    problems: list[str],
) -> int:
    digest = RecordsDigest()
    count = 0
    for record in _decode(s3, bucket, manifest, entry, partition, problems):
        count += 1
        digest.update(*_digest_parts(record))
    if count != entry.record_count:
        problems.append(f"{entry.key}: decoded {count} records, the manifest says {entry.record_count}")
    elif manifest.lossless and digest.hexdigest() != entry.records_digest:
        problems.append(
            f"{entry.key}: records digest {digest.hexdigest()} differs from the manifest's {entry.records_digest}"
        )
    return count


def _check_partition_digest(
    s3: Any, bucket: str, manifest: Manifest, partition: PartitionEntry, problems: list[str]
) -> int:
    """Recompute the partition's digest over all its objects' records in offset order."""
    streams = [_decode(s3, bucket, manifest, entry, partition, problems) for entry in partition.objects]
    digest = RecordsDigest()
    count = 0
    for record in heapq.merge(*streams, key=lambda r: r.offset):
        count += 1
        digest.update(*_digest_parts(record))
    if count != partition.record_count:
        problems.append(
            f"{partition.topic}/{partition.partition}: decoded {count} records, the manifest says {partition.record_count}"
        )
    elif manifest.lossless and digest.hexdigest() != partition.records_digest:
        problems.append(
            f"{partition.topic}/{partition.partition}: records digest {digest.hexdigest()} differs from the manifest's "
            f"{partition.records_digest} (read from Kafka)"
        )
    return count


def verify_backup(s3: Any, bucket: str, manifest: Manifest, depth: Depth, seed: int = 0) -> VerifyReport:
    problems: list[str] = []
    checked = decoded = records = 0
    rng = random.Random(seed)
    for partition in manifest.partitions:
        if sum(o.record_count for o in partition.objects) != partition.record_count:
            problems.append(
                f"{partition.topic}/{partition.partition}: objects hold fewer records than the partition's count"
            )
        for entry in partition.objects:
            head = head_object(s3, bucket, entry.key)
            checked += 1
            if head is None:
                problems.append(f"{entry.key}: missing from the bucket")
            elif head["ContentLength"] != entry.size:
                problems.append(f"{entry.key}: {head['ContentLength']} bytes, the manifest says {entry.size}")
            elif head.get("Metadata", {}).get(SHA256_METADATA, entry.sha256) != entry.sha256:
                problems.append(f"{entry.key}: stored sha256 differs from the manifest's")
        if depth == "full":
            records += _check_partition_digest(s3, bucket, manifest, partition, problems)
            decoded += len(partition.objects)
        elif depth == "sampled" and partition.objects:
            wanted = max(1, round(len(partition.objects) * SAMPLE_FRACTION))
            for entry in rng.sample(list(partition.objects), wanted):
                records += _check_object(s3, bucket, manifest, partition, entry, problems)
                decoded += 1
    return VerifyReport(
        backup_id=manifest.backup_id,
        depth=depth,
        objects_checked=checked,
        objects_decoded=decoded,
        records_decoded=records,
        problems=problems,
    )


@task(name="verify-backup", cache_policy=NO_CACHE, **RETRY_OPTIONS)
def verify_backup_task(bucket: str, manifest: Manifest, depth: Depth) -> VerifyReport:
    from tasks.s3 import s3_client

    report = verify_backup(s3_client(), bucket, manifest, depth)
    if report.problems:
        raise VerificationError(bucket, manifest.backup_id, report.problems)
    return report
