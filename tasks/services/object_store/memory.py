"""`MemoryStore`: the object store in a dict, with S3's semantics as the interface states them
(conditional puts, key-ordered listings, versions and delete markers, Object Lock retention) and
the same error classes raised in the same situations, so that the tasks' logic — export, upload
once and resume, verification, prune, restore planning and pre-flight — runs in unit tests
without a service. Its contract is tests/unit/test_object_store_contract.py.

What it does not model: multipart uploads (a put is a put), server-side encryption (accepted and
forgotten), permissions (everything is allowed but deleting a retained version), and GOVERNANCE's
bypass (never asked for).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from tasks.services.errors import (
    BucketNotFoundError,
    ObjectNotFoundError,
    StorageAccessError,
    StorageError,
)
from tasks.services.object_store.base import (
    DeleteRefusal,
    ObjectInfo,
    ObjectStore,
    ObjectVersion,
    Retention,
    put_operation,
)

if TYPE_CHECKING:
    from layout.manifest import Protection

NO_SUCH_KEY = "NoSuchKey: The specified key does not exist."
ACCESS_DENIED = "Access Denied."
NO_LOCK = "InvalidRequest: Bucket is missing Object Lock Configuration"


@dataclass
class _Version:
    version_id: str  # "null" in a bucket without versioning, as S3 says
    data: bytes | None  # None: a delete marker
    last_modified: datetime
    metadata: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None
    retention: Retention | None = None


@dataclass
class _Bucket:
    object_lock: bool
    versioning: bool
    objects: dict[str, list[_Version]] = field(default_factory=dict)  # versions, oldest first


class MemoryStore(ObjectStore):
    """Buckets held in memory. `clock` is the store's clock (LastModified, the listings' time,
    whether a retention has passed), to the second as S3's."""

    def __init__(self, endpoint: str = "memory://", clock: Callable[[], datetime] | None = None) -> None:
        self._endpoint = endpoint
        self._clock = clock or (lambda: datetime.now(UTC))
        self._buckets: dict[str, _Bucket] = {}
        self._ids = itertools.count(1)
        self._mutex = threading.RLock()

    @property
    def endpoint(self) -> str:
        return self._endpoint

    def _now(self) -> datetime:
        return self._clock().replace(microsecond=0)

    def _bucket(self, bucket: str) -> _Bucket:
        found = self._buckets.get(bucket)
        if found is None:
            raise BucketNotFoundError(bucket, self._endpoint)
        return found

    def _current(self, bucket: str, key: str) -> _Version | None:
        versions = self._bucket(bucket).objects.get(key)
        if not versions or versions[-1].data is None:
            return None
        return versions[-1]

    def _version(self, bucket: str, key: str, version_id: str | None) -> _Version | None:
        if version_id is None:
            return self._current(bucket, key)
        return next(
            (v for v in self._bucket(bucket).objects.get(key, []) if v.version_id == version_id), None
        )

    def _retained(self, version: _Version) -> bool:
        return version.retention is not None and version.retention.until > self._now()

    def _denied(self, operation: str, bucket: str, key: str) -> StorageAccessError:
        return StorageAccessError(operation, bucket, key, self._endpoint, f"AccessDenied: {ACCESS_DENIED}")

    # --- buckets ---------------------------------------------------------------------------------

    def check_bucket(self, bucket: str) -> None:
        with self._mutex:
            self._bucket(bucket)

    def create_bucket(self, bucket: str, *, object_lock: bool = False, versioned: bool = False) -> None:
        """As the interface says; `versioned`: versioning enabled without Object Lock."""
        with self._mutex:
            if bucket in self._buckets:
                raise StorageAccessError(
                    "CreateBucket", bucket, None, self._endpoint, "BucketAlreadyOwnedByYou: it exists"
                )
            self._buckets[bucket] = _Bucket(object_lock=object_lock, versioning=object_lock or versioned)

    def versioned(self, bucket: str) -> bool:
        with self._mutex:
            found = self._buckets.get(bucket)
            return found is not None and found.versioning

    def object_lock_enabled(self, bucket: str) -> bool:
        with self._mutex:
            return self._bucket(bucket).object_lock

    # --- objects ---------------------------------------------------------------------------------

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        with self._mutex:
            if bucket not in self._buckets:
                return None
            current = self._current(bucket, key)
            if current is None or current.data is None:
                return None
            return ObjectInfo(
                key=key,
                size=len(current.data),
                last_modified=current.last_modified,
                metadata=dict(current.metadata),
                version_id=current.version_id if self._buckets[bucket].versioning else None,
                retention=current.retention,
            )

    def get(self, bucket: str, key: str) -> bytes:
        with self._mutex:
            current = self._current(bucket, key)
            if current is None or current.data is None:
                raise ObjectNotFoundError("GetObject", bucket, key, self._endpoint, NO_SUCH_KEY)
            return current.data

    def read_chunks(self, bucket: str, key: str, chunk_bytes: int) -> Iterator[bytes]:
        data = self.get(bucket, key)
        for start in range(0, len(data), chunk_bytes):
            yield data[start : start + chunk_bytes]

    def list_objects(self, bucket: str, prefix: str, *, start_after: str = "") -> Iterator[ObjectInfo]:
        with self._mutex:
            objects = self._bucket(bucket).objects
            listed_at = self._now()
            found = []
            for key, versions in objects.items():
                current = versions[-1]
                if key.startswith(prefix) and key > start_after and current.data is not None:
                    found.append(
                        ObjectInfo(key, len(current.data), current.last_modified, listed_at=listed_at)
                    )
        # S3 lists by the keys' UTF-8 bytes, which sort as their code points do
        yield from sorted(found, key=lambda info: info.key)

    def put(
        self,
        bucket: str,
        key: str,
        data: bytes,
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str | None = None,
        protection: Protection | None = None,
        if_none_match: bool = False,
    ) -> bool:
        with self._mutex:
            found = self._bucket(bucket)
            retention = None
            if protection is not None and protection.lock_mode and protection.retain_until is not None:
                if not found.object_lock:
                    raise StorageAccessError(put_operation(protection), bucket, key, self._endpoint, NO_LOCK)
                retention = Retention(protection.lock_mode, protection.retain_until)
            if if_none_match and self._current(bucket, key) is not None:
                return False
            version = _Version(
                version_id=str(next(self._ids)) if found.versioning else "null",
                data=bytes(data),
                last_modified=self._now(),
                metadata=dict(metadata or {}),
                content_type=content_type,
                retention=retention,
            )
            if found.versioning:
                found.objects.setdefault(key, []).append(version)
            else:
                found.objects[key] = [version]
            return True

    def _delete(self, bucket: str, key: str, version_id: str | None) -> None:
        found = self._bucket(bucket)
        versions = found.objects.get(key, [])
        if version_id is None and found.versioning:  # S3 adds the marker even where nothing was
            found.objects.setdefault(key, []).append(_Version(str(next(self._ids)), None, self._now()))
            return
        for version in list(versions):
            if version_id is None or version.version_id == version_id:
                if self._retained(version):
                    raise self._denied("DeleteObject", bucket, key)
                versions.remove(version)
        if not versions:
            found.objects.pop(key, None)

    def delete(self, bucket: str, key: str, version_id: str | None = None) -> None:
        with self._mutex:
            self._delete(bucket, key, version_id)

    def delete_many(self, bucket: str, targets: Sequence[ObjectVersion]) -> list[DeleteRefusal]:
        refused = []
        with self._mutex:
            self._bucket(bucket)
            for target in targets:
                try:
                    self._delete(bucket, target.key, target.version_id)
                except StorageError:
                    refused.append(
                        DeleteRefusal(target.key, target.version_id, "AccessDenied", ACCESS_DENIED)
                    )
        return refused

    def versions(self, bucket: str, key: str) -> list[str]:
        with self._mutex:
            return [v.version_id for v in reversed(self._bucket(bucket).objects.get(key, []))]

    def retention(self, bucket: str, key: str, version_id: str | None = None) -> Retention | None:
        with self._mutex:
            if bucket not in self._buckets:
                return None
            version = self._version(bucket, key, version_id)
            return version.retention if version is not None else None

    def put_retention(
        self, bucket: str, key: str, retention: Retention, version_id: str | None = None
    ) -> None:
        with self._mutex:
            if not self._bucket(bucket).object_lock:
                raise StorageAccessError("PutObjectRetention", bucket, key, self._endpoint, NO_LOCK)
            version = self._version(bucket, key, version_id)
            if version is None:
                raise ObjectNotFoundError("PutObjectRetention", bucket, key, self._endpoint, NO_SUCH_KEY)
            current = version.retention
            if current is not None and self._retained(version):
                shorter = retention.until < current.until
                weaker = current.mode == "COMPLIANCE" and retention.mode != "COMPLIANCE"
                if shorter or weaker:
                    raise self._denied("PutObjectRetention", bucket, key)
            version.retention = retention
