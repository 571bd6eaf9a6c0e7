"""A Prefect global concurrency limit per backup target, so that two backups of the same
bucket/prefix never run at once (their chains would fork)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from contextlib import contextmanager

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import concurrency


def lock_name(kind: str, bucket: str, prefix: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_.-]+", "-", f"kbackup-{kind}-{bucket}-{prefix or 'root'}")[:200]


@contextmanager
def exclusive(kind: str, bucket: str, prefix: str, timeout_seconds: float = 3600) -> Iterator[None]:
    """Hold the one slot of the `kind` lock of bucket/prefix for the duration of the block."""
    name = lock_name(kind, bucket, prefix)
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except Exception:  # noqa: BLE001 - missing: create it (a concurrent creator may win; fine)
            with contextlib.suppress(Exception):
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
    with concurrency(name, occupy=1, timeout_seconds=timeout_seconds, strict=True):
        yield
