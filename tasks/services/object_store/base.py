"""The object-store interface: every read and write of a bucket goes through an `ObjectStore`.

The semantics are S3's, as the backups rely on them: a put can be conditional (`If-None-Match: *`:
written only when no object is at the key); a listing returns keys in lexicographic order; a
versioned bucket keeps every version, and a delete without a version id only adds a delete marker;
an Object Lock retention can be extended, never shortened, and a version under retention cannot be
deleted. Errors are tasks.services.errors', raised in the same situations by every backend: a
missing bucket is a BucketNotFoundError, a missing object (on a read) an ObjectNotFoundError, a
store that refuses a StorageAccessError, one that may answer on another try a
TransientStorageError; an object put once that is already there with other bytes is an
ObjectConflictError. Each error names the bucket, the key and the store's endpoint.

Implementations: `S3Store` (s3.py, boto3: the only module that imports it) and `MemoryStore`
(memory.py, the same semantics in a dict, for unit tests).

Adding a backend (a filesystem, GCS, Azure Blob) is one module beside these: a subclass of
`ObjectStore` implementing its abstract methods with the semantics their docstrings state —
conditional creation (a filesystem: `open(path, "xb")`; GCS: `ifGenerationMatch=0`; Azure:
`If-None-Match: *`), key-ordered listings, versions where the service has them (GCS object
generations, Azure blob versions; a store without them answers `versioned()` False and lists one
version per key), retention where it has it (GCS retention policies and object holds, Azure
immutability policies; a store without it answers `object_lock_enabled()` False) — and its errors
translated into tasks.services.errors' classes. `put_once` and `check_object_lock` come with the
base class. Then `open_store` (`__init__.py`) returns it when the settings name it, and the
contract tests (tests/unit/test_object_store_contract.py) run on it as
tests/integration/test_object_store.py runs them on S3Store.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from tasks.services.errors import ObjectConflictError, StorageAccessError

if TYPE_CHECKING:
    from layout.manifest import Protection

# The metadata entry every object written by `put_once` carries: the hex sha256 of its bytes.
SHA256_METADATA = "sha256"


@dataclass(frozen=True)
class Retention:
    """An Object Lock retention: `mode` GOVERNANCE or COMPLIANCE, until `until` (aware, UTC)."""

    mode: str
    until: datetime


@dataclass(frozen=True)
class ObjectInfo:
    """What a listing or a HEAD says about an object. A listing fills `key`, `size`,
    `last_modified` and `listed_at`; a HEAD also `metadata`, `version_id` and `retention`."""

    key: str
    size: int
    last_modified: datetime | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    version_id: str | None = None
    retention: Retention | None = None
    listed_at: datetime | None = None
    """The store's clock when it answered the listing that showed this object (S3: the Date
    header), so that times are compared on one clock, never the hosts'."""


@dataclass(frozen=True)
class ObjectVersion:
    """One version of an object to delete; `version_id` None: the key's current version."""

    key: str
    version_id: str | None = None


@dataclass(frozen=True)
class DeleteRefusal:
    """A version the store refused to delete (Object Lock: `AccessDenied`)."""

    key: str
    version_id: str | None
    code: str
    message: str


def put_operation(protection: Protection | None) -> str:
    """The operation a put's errors name: `PutObject`, with what it asked for when it asked for
    encryption or a retention (a store that cannot encrypt may answer only "InternalError")."""
    asked = ", ".join(
        f"{name}={value:%Y-%m-%dT%H:%M:%SZ}" if isinstance(value, datetime) else f"{name}={value}"
        for name, value in (protection.put_arguments() if protection else {}).items()
    )
    return f"PutObject ({asked})" if asked else "PutObject"


class ObjectStore(ABC):
    """A bucket store with S3's semantics (see the module docstring). Thread-safe: tasks share
    one store between threads."""

    @property
    @abstractmethod
    def endpoint(self) -> str:
        """Where the store is (a URL), as the errors name it."""

    # --- buckets ---------------------------------------------------------------------------------

    @abstractmethod
    def check_bucket(self, bucket: str) -> None:
        """Return when the bucket exists and may be read; BucketNotFoundError when it does not,
        StorageAccessError when it may not be read."""

    @abstractmethod
    def create_bucket(self, bucket: str, *, object_lock: bool = False) -> None:
        """Create the bucket; with `object_lock`, with Object Lock enabled (and so versioning),
        which can only be done when a bucket is created. StorageAccessError when it exists."""

    @abstractmethod
    def versioned(self, bucket: str) -> bool:
        """Whether the bucket keeps versions (versioning enabled or suspended); False also when
        the store cannot say."""

    @abstractmethod
    def object_lock_enabled(self, bucket: str) -> bool:
        """Whether Object Lock is enabled on the bucket; BucketNotFoundError when there is none."""

    # --- objects ---------------------------------------------------------------------------------

    @abstractmethod
    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        """The object's size, metadata, version and retention; None when there is no object at
        the key (its current version a delete marker included). Like S3's HEAD, which cannot tell
        a missing bucket from a missing key, None for a missing bucket too."""

    @abstractmethod
    def get(self, bucket: str, key: str) -> bytes:
        """The object's bytes (its current version): ObjectNotFoundError when there is none,
        BucketNotFoundError when the bucket is missing."""

    @abstractmethod
    def read_chunks(self, bucket: str, key: str, chunk_bytes: int) -> Iterator[bytes]:
        """The object's bytes in chunks of at most `chunk_bytes`, streamed (never the whole object
        in memory); errors as `get`'s, raised while iterating."""

    @abstractmethod
    def list_objects(self, bucket: str, prefix: str, *, start_after: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with `prefix` (and sorts after `start_after`), in
        lexicographic key order as S3 lists (by UTF-8 bytes), current versions only (no delete
        markers). BucketNotFoundError when the bucket is missing."""

    @abstractmethod
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
        """Write `data` at `key` (a new version in a versioned bucket) with the user metadata and
        the protection's server-side encryption and Object Lock retention. With `if_none_match`
        (`If-None-Match: *`) only when no object is there: False, and nothing written, when one
        is. True when written. A retention asked in a bucket without Object Lock, or an
        encryption the store cannot do, is a StorageAccessError naming what was asked."""

    @abstractmethod
    def delete(self, bucket: str, key: str, version_id: str | None = None) -> None:
        """Delete one version of the object, or without `version_id` the key's current object (a
        versioned bucket then only gets a delete marker). Deleting what is not there succeeds;
        a version under retention is a StorageAccessError (AccessDenied)."""

    @abstractmethod
    def delete_many(self, bucket: str, targets: Sequence[ObjectVersion]) -> list[DeleteRefusal]:
        """Delete each target as `delete` does; return those the store refused, in no particular
        order, instead of raising. Any number of targets (S3 takes 1,000 per request)."""

    @abstractmethod
    def versions(self, bucket: str, key: str) -> list[str]:
        """The version ids of exactly `key` (not of the keys it prefixes), its delete markers'
        too, in no particular order; an unversioned bucket's object has the one version id "null"."""

    @abstractmethod
    def retention(self, bucket: str, key: str, version_id: str | None = None) -> Retention | None:
        """The Object Lock retention of the version (else of the key's current one); None when it
        has none, or it cannot be read."""

    @abstractmethod
    def put_retention(
        self, bucket: str, key: str, retention: Retention, version_id: str | None = None
    ) -> None:
        """Set the version's retention. It may be extended; shortening it, or turning COMPLIANCE
        into GOVERNANCE, is a StorageAccessError (AccessDenied)."""

    # --- built on the above ----------------------------------------------------------------------

    def put_once(
        self,
        bucket: str,
        key: str,
        data: bytes,
        metadata: Mapping[str, str],
        sha256: str | None = None,
        protection: Protection | None = None,
    ) -> bool:
        """Write `data` at `key` unless an object is there already.

        `sha256` is the data's hex digest when the caller has it already; it is stored as the
        `sha256` metadata entry. `protection` (layout.manifest.Protection) is the upload's
        server-side encryption and Object Lock retention. Returns True when written, False when
        an identical object (same sha256) was already there (a retried export), which is then
        retained at least as long as this upload asked. An existing object with other content is
        an ObjectConflictError.
        """
        sha256 = sha256 or hashlib.sha256(data).hexdigest()
        stored = {**metadata, SHA256_METADATA: sha256}
        if self.put(bucket, key, data, metadata=stored, protection=protection, if_none_match=True):
            return True
        existing = self.head(bucket, key)
        existing_sha = existing.metadata.get(SHA256_METADATA) if existing else None
        if existing is None or existing_sha != sha256:
            raise ObjectConflictError(bucket, key, existing_sha, sha256)
        self._retain_at_least(bucket, key, existing, protection)
        return False

    def _retain_at_least(
        self, bucket: str, key: str, existing: ObjectInfo, protection: Protection | None
    ) -> None:
        """An object already there (a retried export's, uploaded under an earlier retention date)
        is retained at least as long as this upload asked: an Object Lock retention can always be
        extended, never shortened. (Chains never share objects: layout.chains.chain_suffix.)"""
        if protection is None or not protection.lock_mode or protection.retain_until is None:
            return
        until, current = protection.retain_until, existing.retention
        if (
            current is not None
            and current.until >= until
            and current.mode in (protection.lock_mode, "COMPLIANCE")
        ):
            return
        later = max(until, current.until) if current is not None else until
        self.put_retention(bucket, key, Retention(protection.lock_mode, later), existing.version_id)

    def check_object_lock(self, bucket: str, asked_by: str) -> None:
        """Fail unless Object Lock is enabled on the bucket (a bucket gets it when it is created)."""
        if self.object_lock_enabled(bucket):
            return
        raise StorageAccessError(
            "GetObjectLockConfiguration",
            bucket,
            None,
            self.endpoint,
            f"Object Lock is not enabled on bucket {bucket!r}, and {asked_by} asks for it. Object Lock "
            "can only be enabled when a bucket is created (aws s3api create-bucket --bucket "
            f"{bucket} --object-lock-enabled-for-bucket; boto3: create_bucket(..., "
            "ObjectLockEnabledForBucket=True)): back up to such a bucket, or drop the "
            "'object.lock.*' properties",
        )
