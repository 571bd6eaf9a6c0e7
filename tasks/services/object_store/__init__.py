"""The object store: one interface (`ObjectStore`, base.py) through which every read and write of
a bucket goes; `S3Store` (s3.py, boto3) and `MemoryStore` (memory.py, for unit tests) implement it.
The tasks take a `store: ObjectStore`; their Prefect tasks open one with `open_store()`.
"""

from __future__ import annotations

from core.connections import S3Settings
from tasks.services.object_store.base import (
    SHA256_METADATA,
    DeleteRefusal,
    ObjectInfo,
    ObjectStore,
    ObjectVersion,
    Retention,
)
from tasks.services.object_store.memory import MemoryStore
from tasks.services.object_store.s3 import SINGLE_PUT_LIMIT, S3Store

__all__ = [
    "SHA256_METADATA",
    "SINGLE_PUT_LIMIT",
    "DeleteRefusal",
    "MemoryStore",
    "ObjectInfo",
    "ObjectStore",
    "ObjectVersion",
    "Retention",
    "S3Store",
    "open_store",
]


def open_store(settings: S3Settings | None = None) -> ObjectStore:
    """The store the settings configure (environment, `.env`: KBACKUP_S3_*): today always S3, on
    the endpoint's or the credentials block's credentials (`S3Store.from_settings`). Another
    backend is chosen here."""
    return S3Store.from_settings(settings)
