"""Reading and writing the backup lock's leases in the bucket (layout.lock names them), and what one
listing says about a lock: `LockState`. Acquiring, renewing and releasing are tasks.services.locks'.

Expiry is judged on the store's clock: an object's LastModified plus its lease time, against the
time of the listing that showed it (S3: its Date header), so the clocks of the hosts never matter.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from pydantic import ValidationError

from layout.lock import LeaseRecord, epoch_of, lease_key, lock_folder
from tasks.services.errors import ObjectNotFoundError, StorageError

if TYPE_CHECKING:
    from tasks.services.object_store import ObjectStore

# S3 times have one-second resolution (LastModified and Date are both truncated): a lease counts
# as expired only this long after its last write plus its lease time.
CLOCK_MARGIN_SECONDS = 2.0


@dataclass(frozen=True)
class LockState:
    """What one listing says about a lock: its lease objects and the current (highest) one."""

    epochs: tuple[tuple[int, str], ...]  # (epoch, key), ascending
    current: LeaseRecord | None  # None: no lease yet, or its body is unreadable
    last_modified: datetime | None  # server clock, of the current lease object
    server_now: datetime  # server clock (Date header), else this host's

    @property
    def epoch(self) -> int:
        return self.epochs[-1][0] if self.epochs else 0

    def expires_at(self, default_lease_seconds: float) -> datetime | None:
        """When the current lease runs out, on the server's clock."""
        if self.last_modified is None:
            return None
        seconds = self.current.lease_seconds if self.current else default_lease_seconds
        return self.last_modified + timedelta(seconds=seconds)

    def free(self, default_lease_seconds: float) -> bool:
        """No lease yet, the current one released, or expired (by the server's clock)."""
        if not self.epochs or (self.current is not None and self.current.released):
            return True
        expires_at = self.expires_at(default_lease_seconds)
        margin = timedelta(seconds=CLOCK_MARGIN_SECONDS)
        return expires_at is not None and self.server_now >= expires_at + margin


def list_epochs(
    store: ObjectStore, bucket: str, folder: str, start_after: str = ""
) -> tuple[list[tuple[int, str, datetime]], datetime]:
    """(epoch, key, LastModified) of the lease objects in `folder` (after `start_after`), ascending,
    and the server's time of the listing."""
    found: list[tuple[int, str, datetime]] = []
    server_now: datetime | None = None
    for listed in store.list_objects(bucket, folder, start_after=start_after):
        server_now = server_now or listed.listed_at
        epoch = epoch_of(listed.key, folder)
        if epoch is not None:
            found.append((epoch, listed.key, listed.last_modified or listed.listed_at or datetime.now(UTC)))
    return sorted(found), server_now or datetime.now(UTC)


def read_record(store: ObjectStore, bucket: str, key: str) -> LeaseRecord | None:
    """The lease at `key`; None when its body is not a lease. Raises FileNotFoundError when gone."""
    try:
        body = store.get(bucket, key)
    except ObjectNotFoundError as exc:
        raise FileNotFoundError(key) from exc
    try:
        return LeaseRecord.model_validate_json(body)
    except ValidationError:
        return None


def put_record(store: ObjectStore, record: LeaseRecord, *, create: bool) -> bool:
    """Write a lease object; with `create`, only if it does not exist yet (False when it did)."""
    key = lease_key(record.prefix, record.kind, record.epoch)
    body = record.model_dump_json(indent=2).encode()
    return store.put(record.bucket, key, body, content_type="application/json", if_none_match=create)


def read_lock(store: ObjectStore, bucket: str, prefix: str, kind: str) -> LockState | None:
    """The lock's state now; None when the current lease vanished while being read (look again)."""
    folder = lock_folder(prefix, kind)
    listed, server_now = list_epochs(store, bucket, folder)
    if not listed:
        return LockState((), None, None, server_now)
    _, key, last_modified = listed[-1]
    try:
        record = read_record(store, bucket, key)
    except FileNotFoundError:
        return None
    return LockState(tuple((e, k) for e, k, _ in listed), record, last_modified, server_now)


def newer_lease(store: ObjectStore, record: LeaseRecord) -> tuple[int, LeaseRecord | None] | None:
    """The highest lease above `record`'s, if any: then `record`'s is lost."""
    folder = lock_folder(record.prefix, record.kind)
    after = lease_key(record.prefix, record.kind, record.epoch)
    listed, _ = list_epochs(store, record.bucket, folder, start_after=after)
    if not listed:
        return None
    epoch, key, _ = listed[-1]
    try:
        return epoch, read_record(store, record.bucket, key)
    except FileNotFoundError:
        return epoch, None


def delete_leases(
    store: ObjectStore, bucket: str, epochs: tuple[tuple[int, str], ...], keep_from: int
) -> None:
    """Delete lease objects below `keep_from` (best effort: a leftover is harmless)."""
    for epoch, key in epochs:
        if epoch < keep_from:
            try:
                store.delete(bucket, key)
            except StorageError:
                return
