"""Errors of the restore's plan and of the order of its records: what discovery finds missing or
unsupported, and an object whose offsets break the restore order. Each keeps what it is about as
attributes and says it in its message; their layer base, RestoreError, is core.errors'. The
errors of the restore's stages (pre-flight, target, writer, check) are tasks.restore.errors'.

None of these is retryable: a missing manifest or an ordering violation stays what it is however
often the task runs again.
"""

from __future__ import annotations

from core.errors import RestoreError

__all__ = [
    "AccessNotCapturedError",
    "BackupIncompleteError",
    "MissingObjectError",
    "NothingToRestoreError",
    "OrderingViolationError",
    "RestoreError",
    "RestoreFilterError",
    "UnsupportedRestoreError",
    "UnwritableTimestampError",
]


class BackupIncompleteError(RestoreError):
    """Objects under the prefix that no manifest commits (and that are not Stream Reactor data)."""

    def __init__(self, bucket: str, prefix: str, reason: str, keys: tuple[str, ...] = ()) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.reason = reason
        self.keys = keys
        shown = f" (e.g. {', '.join(keys[:3])})" if keys else ""
        super().__init__(
            f"s3://{bucket}/{prefix}: backup incomplete: {reason}{shown}; refusing to restore it"
        )


class NothingToRestoreError(RestoreError):
    def __init__(self, bucket: str, prefix: str, reason: str) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.reason = reason
        super().__init__(f"s3://{bucket}/{prefix}: nothing to restore: {reason}")


class MissingObjectError(RestoreError):
    """An object the manifest names is not in the bucket."""

    def __init__(self, bucket: str, key: str, backup_id: str) -> None:
        self.bucket = bucket
        self.key = key
        self.backup_id = backup_id
        super().__init__(f"s3://{bucket}/{key} is listed in manifest {backup_id} but missing from the bucket")


class OrderingViolationError(RestoreError):
    """Records of one source partition out of order, overlapping, or with an unrecorded hole."""

    def __init__(
        self, topic: str | None, partition: int | None, key: str, offset: int | None, reason: str
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.key = key
        self.offset = offset
        self.reason = reason
        at = f" at offset {offset}" if offset is not None else ""
        super().__init__(f"ordering violation in {topic}/{partition}, object {key}{at}: {reason}")


class RestoreFilterError(RestoreError):
    def __init__(self, name: str, available: tuple[str, ...]) -> None:
        self.name = name
        self.available = available
        super().__init__(
            f"restore.filter names {name!r}, which is not a partition key of this backup "
            f"(its keys: {', '.join(available) or 'none'})"
        )


class UnsupportedRestoreError(RestoreError):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"cannot restore: {reason}")


class UnwritableTimestampError(RestoreError):
    """A selected record has a timestamp the producer cannot write (0: librdkafka reads it as
    "now"), and 'restore.timestamp.zero' is 'refuse'. `first` is the first such record's
    (topic, partition, offset), `count` how many were found, `written` whether records of the
    restore may already be committed (no manifest to find them by: each batch is checked before
    it is produced)."""

    def __init__(
        self,
        topic: str | None,
        partition: int | None,
        offset: int,
        timestamp: int,
        key: str,
        count: int = 1,
        written: bool = False,
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.timestamp = timestamp
        self.key = key
        self.count = count
        self.written = written
        more = f" (and {count - 1} more such records)" if count > 1 else ""
        when = (
            "the restore stopped before producing it (records before it may be committed, exactly as backed "
            "up: a rerun with the property continues after them)"
            if written
            else "nothing was written"
        )
        super().__init__(
            f"{topic}/{partition} offset {offset} (object {key}) has timestamp {timestamp} "
            f"(1970-01-01T00:00:00Z){more}, which the producer cannot write: librdkafka reads 0 as 'now' and "
            f"would give it the restore's time; {when}. Set 'restore.timestamp.zero'='substitute' to write "
            "such records with timestamp 1 (1970-01-01T00:00:00.001Z); the report counts them"
        )


class AccessNotCapturedError(RestoreError):
    """'restore.acls' or 'restore.users' asked of a restore point whose manifest recorded no access
    rules (backed up before kbackup recorded them), or of data without a manifest; `point` is the
    restore point's backup id (None: no manifest)."""

    def __init__(self, bucket: str, prefix: str, point: str | None, asked: str) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.point = point
        self.asked = asked
        where = (
            f"restore point {point} of s3://{bucket}/{prefix} recorded no access rules (ACLs, SCRAM users)"
            if point
            else f"s3://{bucket}/{prefix} holds no manifest, so no access rules (ACLs, SCRAM users)"
        )
        super().__init__(f"{asked} cannot be restored: {where}; nothing was restored. Run without {asked}")
