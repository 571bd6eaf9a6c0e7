"""Backups for the restore tests, built without the backup flow: consume a real topic, encode its
records with the formats codecs into objects of `per_object` records, upload them under the
default (or a Hive-style) layout, and write a Manifest — the same shape the backup writes."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from formats import RecordsDigest, get_codec
from formats.envelope import Record, TimestampType
from kcql import parse_backup
from layout.keys import KeyNaming
from layout.manifest import (
    CommittedOffset,
    GroupOffsets,
    Manifest,
    ObjectEntry,
    PartitionEntry,
    TopicEntry,
    manifest_key,
    new_backup_id,
)
from layout.spec_bridge import codec_context, is_lossless
from tests.support.kafka import consume_all

PartitionKey = Callable[[Record], dict[str, str]]


def build_backup(
    s3: Any,
    kafka_config: dict[str, Any],
    topic: str,
    partitions: int,
    bucket: str,
    prefix: str,
    fmt: str = "AVRO",
    envelope: bool = True,
    per_object: int = 40,
    partition_key: PartitionKey | None = None,
    groups: Sequence[GroupOffsets] = (),
    write_manifest: bool = True,
) -> Manifest:
    envelope_prop = ", 'store.envelope'=true" if envelope else ""
    include = ", 'partition.include.keys'=true" if partition_key else ""
    partition_by = " PARTITIONBY region" if partition_key else ""
    spec = parse_backup(
        f"INSERT INTO {bucket}:{prefix} SELECT * FROM `{topic}`{partition_by} STOREAS {fmt} "
        f"PROPERTIES('flush.count'={per_object}{envelope_prop}{include})"
    )[0]
    codec = get_codec(fmt)
    naming = KeyNaming(
        prefix=prefix,
        extension=codec.spec.extension,
        partition_names=("region",) if partition_key else (),
        include_keys=bool(partition_key),
    )
    started = datetime.now(UTC)
    backup_id = new_backup_id(started)
    by_partition: dict[int, list[Any]] = {}
    for message in consume_all(kafka_config, topic, partitions):
        by_partition.setdefault(message.partition(), []).append(message)
    entries = []
    for partition in range(partitions):
        messages = by_partition.get(partition, [])
        digest = RecordsDigest()
        records = []
        for m in messages:
            ts_type, ts = m.timestamp()
            timestamp = None if ts_type == 0 else ts
            headers = tuple(m.headers() or ())
            digest.update(m.key(), m.value(), headers, timestamp, ts_type)
            records.append(
                Record(
                    m.key(),
                    m.value(),
                    headers,
                    topic,
                    partition,
                    m.offset(),
                    timestamp,
                    TimestampType(ts_type),
                )
            )
        groups_of: dict[tuple[tuple[str, str], ...], list[Record]] = {}
        for record in records:
            values = tuple(sorted(partition_key(record).items())) if partition_key else ()
            groups_of.setdefault(values, []).append(record)
        objects = []
        for values, group in groups_of.items():
            for start in range(0, len(group), per_object):
                chunk = group[start : start + per_object]
                writer = codec.writer(codec_context(spec.format.value, spec.codec, topic, partition))
                writer.write(chunk)
                data = writer.finish()
                key = naming.object_key(topic, partition, chunk[-1].offset, [v for _, v in values])
                s3.put_object(Bucket=bucket, Key=key, Body=data, Metadata={"backup-id": backup_id})
                object_digest = RecordsDigest()
                for r in chunk:
                    object_digest.update(r.key, r.value, r.headers, r.timestamp, int(r.timestamp_type))
                timestamps = [r.timestamp for r in chunk if r.timestamp is not None]
                objects.append(
                    ObjectEntry(
                        key=key,
                        first_offset=chunk[0].offset,
                        last_offset=chunk[-1].offset,
                        record_count=len(chunk),
                        min_timestamp=min(timestamps) if timestamps else None,
                        max_timestamp=max(timestamps) if timestamps else None,
                        size=len(data),
                        sha256=hashlib.sha256(data).hexdigest(),
                        records_digest=object_digest.hexdigest(),
                        partition_values=dict(values),
                    )
                )
        objects.sort(key=lambda o: (o.last_offset, o.key))
        end = messages[-1].offset() + 1 if messages else 0
        entries.append(
            PartitionEntry(
                topic=topic,
                partition=partition,
                start_offset=messages[0].offset() if messages else 0,
                end_offset=end,
                record_count=len(messages),
                byte_count=sum(o.size for o in objects),
                records_digest=digest.hexdigest(),
                objects=tuple(objects),
            )
        )
    manifest = Manifest(
        backup_id=backup_id,
        previous_backup_id=None,
        started_at=started,
        finished_at=datetime.now(UTC),
        kcql="(test helper)",
        spec=spec.model_dump(mode="json"),
        format=fmt,
        extension=codec.spec.extension,
        lossless=is_lossless(spec),
        cluster_id=None,
        topics=(TopicEntry(name=topic, partition_count=partitions, replication_factor=1),),
        partitions=tuple(entries),
        consumer_groups=tuple(groups),
    )
    if write_manifest:
        s3.put_object(
            Bucket=bucket,
            Key=manifest_key(prefix, backup_id),
            Body=manifest.model_dump_json(indent=2).encode(),
        )
    return manifest


def group_at(group: str, topic: str, partition: int, offset: int, metadata: str = "m") -> GroupOffsets:
    return GroupOffsets(
        group=group,
        offsets=(CommittedOffset(topic=topic, partition=partition, offset=offset, metadata=metadata),),
    )
