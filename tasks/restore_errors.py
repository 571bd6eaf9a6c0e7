"""Errors of the restore side: each keeps what it is about as attributes and says it in its message.
Their layer base, RestoreError, is core.errors'; a corrupt object is formats.errors'
CorruptObjectError (one class for a codec's and a restore's findings), importable from here too.

None of these is retryable: a missing manifest, a corrupt object or an ordering violation stays
what it is however often the task runs again (the retryable ones are tasks.errors').
"""

from __future__ import annotations

from core.errors import RestoreError
from formats.errors import CorruptObjectError

__all__ = [
    "BackupIncompleteError",
    "CorruptObjectError",
    "MissingObjectError",
    "NothingToRestoreError",
    "OrderingViolationError",
    "PreflightError",
    "RestoreCheckError",
    "RestoreError",
    "RestoreFilterError",
    "RestoreStalledError",
    "TargetNotEmptyError",
    "TargetPartitionsError",
    "TransactionFatalError",
    "UnsupportedRestoreError",
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


class TargetPartitionsError(RestoreError):
    """The target topic has fewer partitions than the backup needs with restore.partitioner=preserve."""

    def __init__(self, topic: str, needed: int, actual: int) -> None:
        self.topic = topic
        self.needed = needed
        self.actual = actual
        super().__init__(
            f"target topic {topic!r} has {actual} partitions but the backup needs {needed} to preserve partitions; "
            "add partitions, restore into a new topic, or set 'restore.partitioner'='murmur2'"
        )


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


class RestoreCheckError(RestoreError):
    """What the target holds after the restore is not what was selected from the backup."""

    def __init__(self, topic: str, partition: int, reason: str) -> None:
        self.topic = topic
        self.partition = partition
        self.reason = reason
        super().__init__(f"check of restored {topic}/{partition} failed: {reason}")


class PreflightError(RestoreError):
    """The pre-flight found objects that are missing, of another size, or (`full`) with other
    bytes than the manifest says; nothing was created or produced. `problems` are the
    MissingObjectError / CorruptObjectError of every such object."""

    def __init__(
        self, bucket: str, prefix: str, mode: str, checked: int, problems: tuple[RestoreError, ...]
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.mode = mode
        self.checked = checked
        self.problems = problems
        self.keys = tuple(str(getattr(p, "key", "")) for p in problems)
        listed = "\n  ".join(str(p) for p in problems[:50])
        more = f"\n  … and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(
            f"pre-flight ({mode}) of s3://{bucket}/{prefix}: {len(problems)} of {checked} objects are not as "
            f"the manifest says; nothing was restored:\n  {listed}{more}"
        )


class TargetNotEmptyError(RestoreError):
    """A target partition holds records this restore did not write (`ranges`: partition ->
    (first offset, end offset) of those records)."""

    def __init__(self, topic: str, records: int, ranges: dict[int, tuple[int, int]]) -> None:
        self.topic = topic
        self.records = records
        self.ranges = ranges
        where = ", ".join(
            f"partition {p}: offsets {first}–{end - 1}" for p, (first, end) in sorted(ranges.items())
        )
        super().__init__(
            f"target topic {topic!r} already holds {records} records this restore did not write ({where}); "
            "the restored records would be mixed in after them at other offsets. Restore into a new or empty "
            "topic, or add PROPERTIES('restore.target.nonempty'='append') to append them anyway"
        )


class RestoreStalledError(RestoreError):
    """A unit made no progress (no transaction committed, no record delivered) for `seconds`
    while it retried, or its producer failed fatally; what was committed before stays."""

    def __init__(self, topic: str, unit_id: str, committed: int, seconds: float, reason: str) -> None:
        self.topic = topic
        self.unit_id = unit_id
        self.committed = committed
        self.seconds = seconds
        self.reason = reason
        super().__init__(
            f"restore of {unit_id} into {topic!r} gave up after {seconds:.0f} s without progress: {reason}; "
            f"{committed} records of it are committed (exactly once) and a rerun of the same restore "
            "resumes after them"
        )


class TransactionFatalError(RestoreError):
    """The unit's transactional producer failed with a fatal error (e.g. fenced by another run of
    the same restore): it cannot go on; what was committed before stays."""

    def __init__(self, topic: str, unit_id: str, committed: int, reason: str) -> None:
        self.topic = topic
        self.unit_id = unit_id
        self.committed = committed
        self.reason = reason
        super().__init__(
            f"restore of {unit_id} into {topic!r} failed fatally: {reason}; {committed} records of it are "
            "committed (exactly once) and a rerun of the same restore resumes after them (make sure no other "
            "run of it is still going: a second run fences the first)"
        )
