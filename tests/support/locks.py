"""Lease records for the backup lock's tests, written as another holder would write them."""

from __future__ import annotations

from datetime import datetime, timedelta

from layout.lock import LeaseRecord


def lease_record(
    *,
    bucket: str,
    prefix: str,
    epoch: int,
    at: datetime,
    lease_seconds: int,
    host: str,
    pid: int,
    flow_run: tuple[str, str] | None = None,
    released: bool = False,
) -> LeaseRecord:
    """A backup lease acquired and last renewed `at`, expiring `lease_seconds` later; held by
    `flow_run` (id, name) or, when None, by a process outside Prefect."""
    return LeaseRecord(
        kind="backup",
        bucket=bucket,
        prefix=prefix,
        epoch=epoch,
        flow_run_id=flow_run[0] if flow_run else None,
        flow_run_name=flow_run[1] if flow_run else None,
        host=host,
        pid=pid,
        lease_seconds=lease_seconds,
        acquired_at=at,
        renewed_at=at,
        expires_at=at + timedelta(seconds=lease_seconds),
        released=released,
    )
