"""Errors of the restore's stages (pre-flight, target topics, writer, check): each keeps what it
is about as attributes and says it in its message. Their layer base, RestoreError, is
core.errors'; the plan's own errors (a missing object, an incomplete backup, an ordering
violation) are layout.restore.errors'; a corrupt object is formats.errors' CorruptObjectError
(one class for a codec's and a restore's findings).

None of these is retryable: a corrupt object or a refused target stays what it is however often
the task runs again (the retryable ones are tasks.services.errors').
"""

from __future__ import annotations

from core.errors import RestoreError
from formats.errors import CorruptObjectError

__all__ = [
    "AccessPermissionError",
    "CorruptObjectError",
    "PreflightError",
    "RestoreCheckError",
    "RestoreError",
    "RestoreStalledError",
    "TargetNotEmptyError",
    "TargetPartitionsError",
    "TransactionFatalError",
    "UserPasswordsError",
]


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


class AccessPermissionError(RestoreError):
    """'restore.acls' / 'restore.users' asked, and the restore's principal lacks an operation on
    the cluster they need (ALTER to create bindings and users, DESCRIBE to read the target's):
    found before anything is created or produced. `allowed` is what it may do on the cluster."""

    def __init__(
        self, asked: str, missing: tuple[str, ...], principal: str, allowed: tuple[str, ...]
    ) -> None:
        self.asked = asked
        self.missing = missing
        self.principal = principal
        self.allowed = allowed
        has = f"has {', '.join(allowed)} only" if allowed else "has no permission on it"
        super().__init__(
            f"{asked} needs {' and '.join(missing)} on the cluster: {principal} {has}; nothing was created or "
            "restored. Grant it (the operators' guide lists the ACLs) or restore without it"
        )


class UserPasswordsError(RestoreError):
    """The passwords of the users 'restore.users' creates could not be read from `source` (a Secret
    block or the environment variable): never their values, only what is wrong."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(
            f"the restore's user passwords from {source}: {reason}; expected a JSON object of user → password"
        )
