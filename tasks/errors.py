"""Errors of the tasks: each keeps what it is about as attributes and says it in its message.

`Retryable` marks what a retry can fix (a broker that is down, a timeout, S3 throttling or 5xx);
everything else (bad KCQL, a corrupt object, a missing bucket or permission) fails at once.
"""

from __future__ import annotations


class KbackupError(Exception):
    """Base of the errors the tasks raise."""


class Retryable:
    """Mixin: a retry of the same task may succeed."""


class BrokerUnavailableError(KbackupError, Retryable):
    def __init__(self, bootstrap_servers: str, reason: str) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.reason = reason
        super().__init__(f"Kafka brokers at {bootstrap_servers} are unreachable: {reason}")


class KafkaOperationError(KbackupError):
    def __init__(self, operation: str, reason: str, retryable: bool = False) -> None:
        self.operation = operation
        self.reason = reason
        self.retryable = retryable
        super().__init__(f"Kafka {operation} failed: {reason}")


class TopicNotFoundError(KbackupError):
    def __init__(self, topic: str, bootstrap_servers: str) -> None:
        self.topic = topic
        self.bootstrap_servers = bootstrap_servers
        super().__init__(f"topic {topic!r} does not exist on the cluster at {bootstrap_servers}")


class BucketNotFoundError(KbackupError):
    def __init__(self, bucket: str, endpoint: str) -> None:
        self.bucket = bucket
        self.endpoint = endpoint
        super().__init__(f"bucket {bucket!r} does not exist at {endpoint}")


class StorageAccessError(KbackupError):
    def __init__(self, operation: str, bucket: str, key: str | None, endpoint: str, reason: str) -> None:
        self.operation = operation
        self.bucket = bucket
        self.key = key
        self.endpoint = endpoint
        self.reason = reason
        where = f"s3://{bucket}/{key}" if key else f"s3://{bucket}"
        super().__init__(f"S3 {operation} of {where} at {endpoint} failed: {reason}")


class TransientStorageError(StorageAccessError, Retryable):
    """Throttling, 5xx, a connection dropped: worth another try."""


class ObjectConflictError(KbackupError):
    def __init__(self, bucket: str, key: str, existing_sha256: str | None, new_sha256: str) -> None:
        self.bucket = bucket
        self.key = key
        self.existing_sha256 = existing_sha256
        self.new_sha256 = new_sha256
        super().__init__(
            f"s3://{bucket}/{key} already exists with different content (sha256 {existing_sha256} ≠ {new_sha256}); "
            "refusing to replace it"
        )


class ManifestError(KbackupError):
    def __init__(self, bucket: str, key: str, reason: str) -> None:
        self.bucket = bucket
        self.key = key
        self.reason = reason
        super().__init__(f"manifest s3://{bucket}/{key}: {reason}")


class VerificationError(KbackupError):
    """The objects in the bucket do not match the manifest; lists every problem found."""

    def __init__(self, bucket: str, backup_id: str, problems: list[str]) -> None:
        self.bucket = bucket
        self.backup_id = backup_id
        self.problems = problems
        listed = "\n  ".join(problems[:50])
        more = f"\n  … and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(f"backup {backup_id} in s3://{bucket} failed verification:\n  {listed}{more}")


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, Retryable):
        return True
    return isinstance(exc, KafkaOperationError) and exc.retryable
