"""Restore points and their chains (docs/user-guide.md, "Backup lifecycle").

Every committed backup (a manifest) is a restore point. An incremental backup continues the one
before it (`previous_backup_id`): restoring a point reads every backup of its chain from the
chain's base up to it. A *full* backup (`previous_backup_id` None: the first under a prefix, one
`backup.full.every` asks for, or `kbackup backup --full`) starts a new chain from each
partition's earliest offset; nothing before it is needed to restore it or what follows it.

Retention (`retention_plan`) keeps the points a policy names (`--keep-last`, `--keep-within`)
and every point their chains need; it drops only whole older chain parts no kept point reads, so
a chain is never cut in the middle. Pure: the manifests are read and deleted by tasks/lifecycle/prune.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from pydantic import Field

from core.errors import BackupError, InputError
from core.models import FrozenModel
from layout.manifest import Manifest


class ChainError(BackupError):
    """A restore point cannot be found, or its chain is broken (a backup it continues is gone)."""


def chain_suffix(chain_id: str) -> str:
    """What the object names of a chain started while another existed end with (before the
    extension): a full backup then never writes a key an older chain holds (the same last offset
    with other first records, after retention or another cut) nor takes another chain's objects
    for its own. The prefix's first chain has none (keys as Stream Reactor names them)."""
    return f"-c{chain_id}"


def by_id(manifests: Sequence[Manifest]) -> dict[str, Manifest]:
    return {m.backup_id: m for m in manifests}


def chain_of(manifests: Sequence[Manifest], backup_id: str) -> list[Manifest]:
    """The backups restoring `backup_id` reads, its chain's base first, it last."""
    known = by_id(manifests)
    if backup_id not in known:
        listed = ", ".join(sorted(known)[-5:]) or "none"
        raise ChainError(f"no backup {backup_id!r} under the prefix (newest: {listed})")
    chain = [known[backup_id]]
    while chain[-1].previous_backup_id is not None:
        previous = chain[-1].previous_backup_id
        if previous not in known:
            raise ChainError(
                f"backup {chain[-1].backup_id} continues {previous}, which is gone: "
                f"restore point {backup_id} cannot be restored"
            )
        if len(chain) > len(known):
            raise ChainError(f"the chain of {backup_id} loops")
        chain.append(known[previous])
    return chain[::-1]


def chain_base(manifests: Sequence[Manifest], backup_id: str) -> str:
    """The id of the full backup that starts the chain of `backup_id`."""
    return chain_of(manifests, backup_id)[0].backup_id


def latest(manifests: Sequence[Manifest]) -> Manifest | None:
    """The newest restore point (ids sort by time)."""
    return max(manifests, key=lambda m: m.backup_id, default=None)


class RetentionPlan(FrozenModel):
    """What a prune keeps and drops, by backup id (oldest first)."""

    kept: tuple[str, ...] = Field(description="Restore points the policy keeps.")
    needed: tuple[str, ...] = Field(
        description="Backups kept only because a kept point's chain reads them (no longer restore points "
        "of the policy, but restorable)."
    )
    dropped: tuple[str, ...] = Field(description="Backups no kept point needs: their manifests go.")

    @property
    def keeps(self) -> tuple[str, ...]:
        return tuple(sorted(self.kept + self.needed))


def retention_plan(
    manifests: Sequence[Manifest],
    now: datetime,
    keep_last: int | None = None,
    keep_within: timedelta | None = None,
) -> RetentionPlan:
    """The points kept by the policy — the `keep_last` newest, and every one that finished within
    `keep_within` of `now` — plus what their chains read. The newest point is always kept (the
    next incremental backup continues it). A policy is required: with neither option nothing is
    decided."""
    if keep_last is None and keep_within is None:
        raise InputError("a retention policy is needed: --keep-last N and/or --keep-within DURATION")
    if keep_last is not None and keep_last < 1:
        raise InputError(f"--keep-last must be at least 1, not {keep_last}")
    ordered = sorted(manifests, key=lambda m: m.backup_id)
    kept: set[str] = set()
    if ordered:
        kept.add(ordered[-1].backup_id)
    if keep_last:
        kept.update(m.backup_id for m in ordered[-keep_last:])
    if keep_within is not None:
        kept.update(m.backup_id for m in ordered if m.finished_at >= now - keep_within)
    needed: set[str] = set()
    for backup_id in kept:
        needed.update(m.backup_id for m in chain_of(ordered, backup_id))
    needed -= kept
    dropped = [m.backup_id for m in ordered if m.backup_id not in kept and m.backup_id not in needed]
    return RetentionPlan(kept=tuple(sorted(kept)), needed=tuple(sorted(needed)), dropped=tuple(dropped))


def referenced_keys(manifests: Sequence[Manifest]) -> set[str]:
    """Every object key the manifests commit."""
    return {o.key for m in manifests for p in m.partitions for o in p.objects}
