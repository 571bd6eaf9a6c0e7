"""The backup lock's objects: leases kept in the bucket, next to the chain they protect.

`<prefix>/_manifests/_lock/<kind>/<epoch>.json` (epoch left-padded to 12 digits, so keys sort as
numbers). The highest epoch is the current lease; a new one is created with `If-None-Match: *`, so
one contender wins each epoch, and the epoch is the fencing token. The folder sits inside
`_manifests/` because everything that reads a prefix already skips that folder — restore discovery
(`layout.keys.is_bookkeeping_key`) — or reads only its top level — the manifest chain and `kbackup ls`
(`tasks.services.manifest_store.list_backup_ids`) — so a lease is never taken for data or for a backup.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from layout.manifest import MANIFESTS_FOLDER, join_key

LOCK_FOLDER = "_lock"
EPOCH_DIGITS = 12


def lock_folder(prefix: str, kind: str) -> str:
    """The folder of one lock's leases, ending in `/`."""
    return join_key(prefix, MANIFESTS_FOLDER, LOCK_FOLDER, kind) + "/"


def lease_key(prefix: str, kind: str, epoch: int) -> str:
    return f"{lock_folder(prefix, kind)}{epoch:0{EPOCH_DIGITS}d}.json"


def epoch_of(key: str, folder: str) -> int | None:
    """The epoch a key in `folder` names, or None for anything else there."""
    name = key[len(folder) :] if key.startswith(folder) else ""
    stem = name[: -len(".json")] if name.endswith(".json") else ""
    return int(stem) if len(stem) == EPOCH_DIGITS and stem.isdigit() else None


class LeaseRecord(BaseModel):
    """The body of a lease object: who holds (or held) the lock, and until when."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    kind: str = Field(description="What the lock guards: 'backup'.")
    bucket: str
    prefix: str
    epoch: int = Field(description="Fencing token: the lease's number, one more than the one it replaced.")
    flow_run_id: str | None = Field(default=None, description="The Prefect flow run holding it, if any.")
    flow_run_name: str | None = None
    host: str
    pid: int
    lease_seconds: float = Field(description="How long the lease lasts after each write of this object.")
    acquired_at: datetime = Field(description="Holder's clock.")
    renewed_at: datetime = Field(description="Holder's clock, at the last renewal.")
    expires_at: datetime = Field(description="Holder's clock: renewed_at + lease_seconds.")
    released: bool = Field(default=False, description="Given back by its holder; free to take.")

    def holder(self) -> str:
        """`run nightly-fox (0d1e…) on host-1 pid 4242 since 2026-11-28T02:52:41+00:00`."""
        if self.flow_run_id:
            run = f"run {self.flow_run_name or '?'} ({self.flow_run_id})"
        else:
            run = "a process outside Prefect"
        return f"{run} on {self.host} pid {self.pid} since {self.acquired_at.isoformat(timespec='seconds')}"
