"""The manifest: the commit point of a backup (docs/user-guide.md, "What a backup does").

Written last to `<prefix>/_manifests/<backup_id>.json`, after every object it names was uploaded;
a backup without one is incomplete and is never restored silently.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any, Literal

from pydantic import Field

from core.models import FrozenModel
from kcql.specs import LockMode, ProtectionOptions, SseMode
from layout.access import AccessCapture
from layout.schemas import StoredSchema

FORMAT_VERSION = 1
MANIFESTS_FOLDER = "_manifests"

GapCause = Literal["compaction", "transaction-markers", "compaction-or-transaction-markers", "retention"]


class OffsetGap(FrozenModel):
    """Offsets `first`..`last` (inclusive) that hold no backed-up record, and why."""

    first: int
    last: int
    cause: GapCause


class ObjectEntry(FrozenModel):
    key: str = Field(description="Object key inside the bucket.")
    first_offset: int
    last_offset: int
    record_count: int
    min_timestamp: int | None
    max_timestamp: int | None
    size: int = Field(description="Bytes.")
    sha256: str = Field(description="Hex sha256 of the object's bytes.")
    records_digest: str = Field(description="Records digest of this object's records alone.")
    partition_values: dict[str, str | None] = Field(
        default_factory=dict, description="PARTITIONBY values (Hive-style name -> value) of this object."
    )
    etag: str | None = Field(
        default=None,
        exclude=True,
        description="The ETag the store gave the object when this run uploaded it (or found it "
        "there): kept in memory for the run's own verification, never written to the manifest "
        "(None in one read back).",
    )

    def __eq__(self, other: object) -> bool:
        """Equal as their JSON is: the ETag, which an entry read back has not, left aside."""
        if not isinstance(other, ObjectEntry):
            return NotImplemented
        return {**self.__dict__, "etag": None} == {**other.__dict__, "etag": None}


class PartitionEntry(FrozenModel):
    topic: str
    partition: int
    start_offset: int = Field(description="First offset of the window (inclusive).")
    end_offset: int = Field(
        description="End of the window (exclusive): the last stable offset at the snapshot."
    )
    record_count: int
    byte_count: int = Field(description="Encoded bytes written for this partition.")
    records_digest: str = Field(description="Digest over the window's records in offset order.")
    gaps: tuple[OffsetGap, ...] = ()
    objects: tuple[ObjectEntry, ...] = ()
    seconds: float = Field(
        default=0.0,
        description="Wall time of the export: from the start of its work unit to the partition's last object.",
    )
    schema_ids: dict[str, tuple[int, ...]] = Field(
        default_factory=dict,
        description="`key` / `value` → the registry schema ids its records name (converter `avro`).",
    )
    not_wire_format: int = Field(
        default=0,
        description="Keys and values under an `avro` converter that are not in the Confluent wire "
        "format: kept byte for byte, with no schema id to rewrite.",
    )


class TopicEntry(FrozenModel):
    name: str
    partition_count: int
    replication_factor: int
    configs: dict[str, str] = Field(default_factory=dict, description="Non-default topic configs.")


class CommittedOffset(FrozenModel):
    topic: str
    partition: int
    offset: int
    metadata: str = ""


class GroupOffsets(FrozenModel):
    group: str
    offsets: tuple[CommittedOffset, ...]


class Protection(FrozenModel):
    """How a backup's objects and its manifest were written (KCQL `sse`, `sse.kms.key.id`,
    `object.lock.mode`, `object.lock.retention`): one retention date for the whole backup, its
    start plus the retention, so every object of it is retained as long as its manifest."""

    sse: SseMode | None = None
    kms_key_id: str | None = None
    lock_mode: LockMode | None = None
    retain_until: datetime | None = None

    def put_arguments(self) -> dict[str, Any]:
        """The extra arguments of every PutObject / CreateMultipartUpload of the backup."""
        arguments: dict[str, Any] = {}
        if self.sse:
            arguments["ServerSideEncryption"] = self.sse
        if self.kms_key_id:
            arguments["SSEKMSKeyId"] = self.kms_key_id
        if self.lock_mode and self.retain_until:
            arguments["ObjectLockMode"] = self.lock_mode
            arguments["ObjectLockRetainUntilDate"] = self.retain_until
        return arguments

    def describe(self) -> str:
        """`aws:kms (key-id); GOVERNANCE until 2026-12-28 12:00` — `kbackup ls`'s column."""
        parts = []
        if self.sse:
            parts.append(f"{self.sse} ({self.kms_key_id})" if self.kms_key_id else self.sse)
        if self.lock_mode and self.retain_until:
            parts.append(f"{self.lock_mode} until {self.retain_until:%Y-%m-%d %H:%M:%S}")
        return "; ".join(parts) or "-"


def protection_of(options: ProtectionOptions, backup_id: str) -> Protection | None:
    """The protection a backup asks for, its retention dated from the backup's start (read from
    its id, so that every export task and the manifest compute the same date); None: none."""
    if not options.sse and not options.lock_mode:
        return None
    until = None
    if options.lock_mode and options.lock_retention_s:
        until = backup_time(backup_id).replace(microsecond=0) + timedelta(seconds=options.lock_retention_s)
    return Protection(
        sse=options.sse, kms_key_id=options.kms_key_id, lock_mode=options.lock_mode, retain_until=until
    )


class TopicFreshness(FrozenModel):
    """How fresh one backed-up topic was when its backup committed (`kbackup status`,
    layout/status.py): the snapshot, the newest record it holds, and what it left behind."""

    topic: str
    snapshot_at: datetime = Field(description="When the backup snapshotted the topic's offsets.")
    newest_record_ms: int | None = Field(
        description="The newest timestamp (ms since the epoch) among the topic's records in this backup; "
        "None: this backup holds no record of the topic (status looks at older backups)."
    )
    measured_at: datetime = Field(
        description="When the lag was measured: just before the manifest was written."
    )
    lag_records: int | None = Field(
        description="Records between each partition's end offset and its log end at `measured_at`, summed "
        "(at least 0); None: the log end could not be read (the backup committed all the same)."
    )
    lag_bytes: int | None = Field(
        description="Estimated bytes of that lag: lag_records times the topic's encoded bytes per record in "
        "this backup (Kafka gives no byte count per offset range); None: no record to estimate from, or "
        "the lag is unknown."
    )


class Manifest(FrozenModel):
    format_version: int = FORMAT_VERSION
    backup_id: str
    previous_backup_id: str | None = Field(
        description="The backup this one continues (incremental); None: a full backup, the base of a chain."
    )
    chain_id: str | None = Field(
        default=None,
        description="The id of the full backup its chain began with (itself when full); None in "
        "manifests written before chains had ids (layout/chains.py finds it by following the links).",
    )
    chain_suffix: str = Field(
        default="",
        description="What its chain's object names end with before the extension (a chain started "
        "while another existed; layout.chains.chain_suffix); empty for the prefix's first chain.",
    )
    started_at: datetime
    finished_at: datetime
    kcql: str
    spec: dict[str, object] = Field(description="The BackupSpec as JSON (format, envelope, flush, layout).")
    format: str
    extension: str
    lossless: bool = Field(
        description="True when every record part was kept (envelope with all parts, bytes)."
    )
    cluster_id: str | None
    topics: tuple[TopicEntry, ...]
    partitions: tuple[PartitionEntry, ...]
    consumer_groups: tuple[GroupOffsets, ...] = ()
    schemas: tuple[StoredSchema, ...] = Field(
        default=(),
        description="The registry schemas its records name (key/value converter `avro`), with the "
        "schemas they reference (layout/schemas.py).",
    )
    protection: Protection | None = Field(
        default=None,
        description="Server-side encryption and Object Lock retention of its objects and of the "
        "manifest itself; None: neither (and in manifests written before they existed).",
    )
    freshness: tuple[TopicFreshness, ...] = Field(
        default=(),
        description="Per backed-up topic, how fresh the backup was when it committed: snapshot time, "
        "newest record, lag left behind (records, and bytes estimated); empty in manifests written "
        "before it existed.",
    )
    access: AccessCapture | None = Field(
        default=None,
        description="The access rules of what it holds, read at snapshot time (layout/access.py): ACL "
        "bindings, principals, SCRAM users (no secrets), brokers' dynamic configs; None in manifests "
        "written before it existed.",
    )

    def partition(self, topic: str, partition: int) -> PartitionEntry | None:
        return self._partitions_by_key.get((topic, partition))

    @cached_property
    def _partitions_by_key(self) -> dict[tuple[str, int], PartitionEntry]:
        """Every partition by (topic, partition), built once: a lookup for each of 10,000
        partitions was a scan of all of them (7 s, bench/manifest_scale.py)."""
        found: dict[tuple[str, int], PartitionEntry] = {}
        for entry in self.partitions:
            found.setdefault((entry.topic, entry.partition), entry)
        return found

    @property
    def record_count(self) -> int:
        return sum(p.record_count for p in self.partitions)

    @property
    def byte_count(self) -> int:
        return sum(p.byte_count for p in self.partitions)


def backup_time(backup_id: str) -> datetime:
    """When the backup started, read from its id."""
    stamp = backup_id.split("Z", 1)[0]
    return datetime.strptime(stamp[:15], "%Y%m%dT%H%M%S").replace(
        microsecond=int(stamp[15:18] or 0) * 1000, tzinfo=UTC
    )


def new_backup_id(now: datetime | None = None) -> str:
    """Sortable by time: `20261124T221300123Z-1a2b3c`."""
    now = now or datetime.now(UTC)
    return now.strftime("%Y%m%dT%H%M%S") + f"{now.microsecond // 1000:03d}Z-" + secrets.token_hex(3)


def manifest_key(prefix: str, backup_id: str) -> str:
    return join_key(prefix, MANIFESTS_FOLDER, f"{backup_id}.json")


def manifests_prefix(prefix: str) -> str:
    return join_key(prefix, MANIFESTS_FOLDER) + "/"


def join_key(*parts: str) -> str:
    return "/".join(part.strip("/") for part in parts if part and part.strip("/"))
