"""Errors of the tasks' services — Kafka, S3 — and of a backup's own records (manifests, lock,
verification): each keeps what it is about as attributes and says it in its message. Their layer
bases and the root are core.errors'; `Retryable` marks what a retry can fix (a broker that is
down, a timeout, S3 throttling or 5xx); everything else (a missing bucket or permission, a
conflicting object) fails at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.errors import BackupError, KafkaError, KbackupError, Retryable, StorageError

if TYPE_CHECKING:
    from datetime import datetime

    from layout.lock import LeaseRecord

__all__ = [
    "BackupError",
    "BrokerUnavailableError",
    "BucketNotFoundError",
    "KafkaAuthenticationError",
    "KafkaAuthorizationError",
    "KafkaError",
    "KafkaOperationError",
    "KafkaSecurityError",
    "KafkaTlsError",
    "KbackupError",
    "LockError",
    "LockLostError",
    "LockTimeoutError",
    "DrillRecordError",
    "ImpossibleManifestError",
    "ManifestError",
    "ObjectConflictError",
    "ObjectNotFoundError",
    "Retryable",
    "StorageAccessError",
    "StorageError",
    "TopicNotFoundError",
    "TransientStorageError",
    "VerificationError",
    "is_retryable",
]


class BrokerUnavailableError(KafkaError, Retryable):
    def __init__(self, bootstrap_servers: str, reason: str) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.reason = reason
        super().__init__(f"Kafka brokers at {bootstrap_servers} are unreachable: {reason}")


class KafkaOperationError(KafkaError):
    def __init__(self, operation: str, reason: str, retryable: bool = False) -> None:
        self.operation = operation
        self.reason = reason
        self.retryable = retryable
        super().__init__(f"Kafka {operation} failed: {reason}")


class KafkaSecurityError(KafkaError):
    """Authentication, authorization or TLS: the cluster refused us, and a retry cannot fix that."""


class KafkaAuthenticationError(KafkaSecurityError):
    def __init__(self, broker: str, username: str | None, mechanism: str | None, reason: str) -> None:
        self.broker = broker
        self.username = username
        self.mechanism = mechanism
        self.reason = reason
        who = f"user {username!r}" if username else "the client"
        kind = "SASL authentication" if mechanism else "authentication"
        super().__init__(f"{kind} failed for {who} at {broker}: {reason}")


class KafkaTlsError(KafkaSecurityError):
    def __init__(self, broker: str, reason: str) -> None:
        self.broker = broker
        self.reason = reason
        super().__init__(f"TLS handshake with {broker} failed: {reason}")


class KafkaAuthorizationError(KafkaSecurityError):
    def __init__(self, operation: str, principal: str, code: str, reason: str) -> None:
        self.operation = operation
        self.principal = principal
        self.code = code
        self.reason = reason
        super().__init__(
            f"Kafka {operation} failed: {principal} is not authorized ({code}: {reason}); "
            "the ACLs a backup and a restore need are in the README's Security section"
        )


class TopicNotFoundError(KafkaError):
    def __init__(self, topic: str, bootstrap_servers: str) -> None:
        self.topic = topic
        self.bootstrap_servers = bootstrap_servers
        super().__init__(f"topic {topic!r} does not exist on the cluster at {bootstrap_servers}")


class BucketNotFoundError(StorageError):
    def __init__(self, bucket: str, endpoint: str) -> None:
        self.bucket = bucket
        self.endpoint = endpoint
        super().__init__(f"bucket {bucket!r} does not exist at {endpoint}")


class StorageAccessError(StorageError):
    def __init__(self, operation: str, bucket: str, key: str | None, endpoint: str, reason: str) -> None:
        self.operation = operation
        self.bucket = bucket
        self.key = key
        self.endpoint = endpoint
        self.reason = reason
        where = f"s3://{bucket}/{key}" if key else f"s3://{bucket}"
        super().__init__(f"S3 {operation} of {where} at {endpoint} failed: {reason}")


class ObjectNotFoundError(StorageAccessError):
    """The bucket is there but the object is not (S3's NoSuchKey): a retry cannot fix that."""


class TransientStorageError(StorageAccessError, Retryable):
    """Throttling, 5xx, a connection dropped: worth another try."""


class ObjectConflictError(StorageError):
    def __init__(self, bucket: str, key: str, existing_sha256: str | None, new_sha256: str) -> None:
        self.bucket = bucket
        self.key = key
        self.existing_sha256 = existing_sha256
        self.new_sha256 = new_sha256
        super().__init__(
            f"s3://{bucket}/{key} already exists with different content (sha256 {existing_sha256} ≠ {new_sha256}); "
            "refusing to replace it"
        )


class ManifestError(BackupError):
    def __init__(self, bucket: str, key: str, reason: str) -> None:
        self.bucket = bucket
        self.key = key
        self.reason = reason
        super().__init__(f"manifest s3://{bucket}/{key}: {reason}")


class DrillRecordError(BackupError):
    """A restore drill's evidence under a prefix that cannot be read as one."""

    def __init__(self, bucket: str, key: str, reason: str) -> None:
        self.bucket = bucket
        self.key = key
        self.reason = reason
        super().__init__(f"drill evidence s3://{bucket}/{key}: {reason}")


class ImpossibleManifestError(ManifestError):
    """A manifest holds values no backup writes (layout.manifest_checks): a negative count, a window
    that ends before it starts, objects that do not add up, a key outside the backup. `problems`
    names each field, where it is and why; nothing the manifest names is read."""

    def __init__(self, bucket: str, key: str, prefix: str, problems: list[str]) -> None:
        self.prefix = prefix
        self.problems = problems
        listed = "\n  ".join(problems[:50])
        more = f"\n  … and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(
            bucket,
            key,
            f"impossible values, refused before anything is read or written "
            f"(backup prefix s3://{bucket}/{prefix.strip('/')}):\n  {listed}{more}",
        )


class VerificationError(BackupError):
    """The objects in the bucket do not match the manifest; lists every problem found."""

    def __init__(self, bucket: str, backup_id: str, problems: list[str]) -> None:
        self.bucket = bucket
        self.backup_id = backup_id
        self.problems = problems
        listed = "\n  ".join(problems[:50])
        more = f"\n  … and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(f"backup {backup_id} in s3://{bucket} failed verification:\n  {listed}{more}")


class LockError(BackupError):
    """The lock that keeps two backups of one bucket/prefix apart (tasks.services.locks); `holder` is the
    lease record of whoever holds it, None when unknown."""

    def __init__(self, bucket: str, prefix: str, holder: LeaseRecord | None, message: str) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.holder = holder
        super().__init__(message)


def _held_by(holder: LeaseRecord | None) -> str:
    return f"held by {holder.holder()}" if holder else "held by an unknown holder"


class LockTimeoutError(LockError):
    def __init__(
        self,
        kind: str,
        bucket: str,
        prefix: str,
        holder: LeaseRecord | None,
        expires_at: datetime | None,
        waited_seconds: float,
    ) -> None:
        self.kind = kind
        self.expires_at = expires_at
        self.waited_seconds = waited_seconds
        expires = f", lease expires {expires_at.isoformat(timespec='seconds')}" if expires_at else ""
        super().__init__(
            bucket,
            prefix,
            holder,
            f"gave up after {waited_seconds:.0f} s waiting for the {kind} lock of s3://{bucket}/{prefix}: "
            f"{_held_by(holder)}{expires}",
        )


class LockLostError(LockError):
    """The lease this run held was taken over (or could not be renewed in time): committing now
    could fork the chain, so the run must stop before its manifest."""

    def __init__(
        self, kind: str, bucket: str, prefix: str, epoch: int, holder: LeaseRecord | None, reason: str
    ) -> None:
        self.kind = kind
        self.epoch = epoch
        self.reason = reason
        now_held = f"; now {_held_by(holder)} (epoch {holder.epoch})" if holder else ""
        super().__init__(
            bucket,
            prefix,
            holder,
            f"lost the {kind} lock of s3://{bucket}/{prefix} (epoch {epoch}): {reason}{now_held}",
        )


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, Retryable):
        return True
    return isinstance(exc, KafkaOperationError) and exc.retryable
