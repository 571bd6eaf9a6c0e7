"""Pruning a prefix's backups by a retention policy (README, "Backup lifecycle").

What is kept and dropped is decided by layout/chains.py (`retention_plan`: the policy's points and
every backup their chains read). Here the dropped backups are deleted, under the prefix's backup
lock (tasks/services/locks.py), so no backup runs meanwhile and no object of a running backup is touched:

1. Manifests first, newest dropped first. A point disappears before any of its objects, and
   what remains at every moment is whole chains (a chain's newest backups go before its base).
   A manifest the store refuses to delete (Object Lock) stays a restore point: its chain and
   their objects are kept, and the report says until when.
2. Then the objects no remaining manifest references: those of the deleted backups, and objects
   of the prefix's topics that no manifest ever committed (left by a failed or killed backup).
   In a versioned bucket every version of each is deleted; a version under retention is
   reported, not deleted.

3. Then the restore drills' evidence (`_drills/<id>.json`, layout/drills.py) of every restore point
   that no longer is: the evidence of each kept point stays.

A killed prune leaves every kept point restorable: their manifests and objects are never on the
list; what it did not get to is deleted by the next prune.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from layout.chains import RetentionPlan, chain_of, referenced_keys, retention_plan
from layout.drills import drill_key
from layout.keys import is_bookkeeping_key, parse_object_key
from layout.manifest import Manifest, join_key, manifest_key
from layout.spec_bridge import key_naming, spec_of
from tasks.runtime.retry import RETRY_OPTIONS
from tasks.services.drill_store import list_drill_ids, read_drill
from tasks.services.errors import DrillRecordError
from tasks.services.manifest_store import read_chain
from tasks.services.object_store import ObjectVersion

if TYPE_CHECKING:
    from tasks.services.object_store import ObjectInfo, ObjectStore

log = logging.getLogger(__name__)
DELETE_BATCH = 1000  # keys deleted together (S3's DeleteObjects takes at most 1,000)


class PruneReport(BaseModel):
    bucket: str
    prefix: str
    policy: str
    dry_run: bool
    started_at: datetime
    kept: list[str] = Field(default_factory=list, description="Restore points the policy keeps.")
    needed: list[str] = Field(
        default_factory=list, description="Backups kept because a kept point's chain reads them."
    )
    dropped: list[str] = Field(default_factory=list, description="Backups the policy drops.")
    deleted_manifests: list[str] = Field(default_factory=list)
    deleted_objects: int = 0
    deleted_bytes: int = 0
    orphans: int = Field(default=0, description="Objects no manifest committed (failed runs), deleted.")
    not_deleted: list[str] = Field(
        default_factory=list, description="What the store refused to delete (Object Lock), and why."
    )
    deleted_drills: list[str] = Field(
        default_factory=list, description="Restore drills whose evidence went with their restore point."
    )


def prune(
    store: ObjectStore,
    bucket: str,
    prefix: str,
    *,
    keep_last: int | None = None,
    keep_within: timedelta | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
) -> PruneReport:
    """Delete what the policy drops (see the module docstring); the caller holds the backup lock."""
    now = now or datetime.now(UTC)
    store.check_bucket(bucket)
    manifests = read_chain(store, bucket, prefix)
    policy = ", ".join(
        part
        for part in (
            f"keep last {keep_last}" if keep_last else "",
            f"keep within {keep_within}" if keep_within is not None else "",
        )
        if part
    )
    report = PruneReport(bucket=bucket, prefix=prefix, policy=policy, dry_run=dry_run, started_at=now)
    plan = retention_plan(manifests, now, keep_last, keep_within)
    report.kept, report.needed, report.dropped = list(plan.kept), list(plan.needed), list(plan.dropped)
    folder = join_key(prefix) + "/" if join_key(prefix) else ""
    listed = {o.key: o for o in store.list_objects(bucket, folder) if not is_bookkeeping_key(o.key)}
    orphans = _orphans(listed, manifests, prefix)
    if dry_run:
        report.deleted_manifests = list(plan.dropped)
        gone = _doomed(manifests, set(plan.dropped), orphans)
        report.deleted_drills = _drills_of_gone_points(store, bucket, prefix, manifests, set(plan.dropped))
    else:
        deleted = _delete_manifests(store, bucket, prefix, manifests, plan, report)
        gone = _delete_objects(store, bucket, sorted(_doomed(manifests, deleted, orphans)), report)
        drills = _drills_of_gone_points(store, bucket, prefix, manifests, deleted)
        refused = _delete_versions(store, bucket, [drill_key(prefix, d) for d in drills])
        report.not_deleted.extend(refused)
        refused_keys = {line.split(" ", 1)[0] for line in refused}
        report.deleted_drills = [d for d in drills if drill_key(prefix, d) not in refused_keys]
    report.deleted_objects = len(gone)
    report.deleted_bytes = sum(listed[k].size for k in gone if k in listed)
    report.orphans = len(gone & orphans)
    return report


def _drills_of_gone_points(
    store: ObjectStore, bucket: str, prefix: str, manifests: Sequence[Manifest], gone: set[str]
) -> list[str]:
    """The drills whose restore point is gone once the backups `gone` are (or was gone already);
    a document that cannot be read is left alone (and logged)."""
    remaining = {m.backup_id for m in manifests} - gone
    drills = []
    for drill_id in list_drill_ids(store, bucket, prefix):
        try:
            evidence = read_drill(store, bucket, prefix, drill_id)
        except DrillRecordError as exc:
            log.warning("drill evidence kept, it cannot be read: %s", exc)
            continue
        if evidence.backup_id not in remaining:
            drills.append(drill_id)
    return drills


def _doomed(manifests: Sequence[Manifest], gone: set[str], orphans: set[str]) -> set[str]:
    """The objects to delete once the backups `gone` are: theirs and the leftovers, but none a
    remaining manifest references."""
    remaining = referenced_keys([m for m in manifests if m.backup_id not in gone])
    return (referenced_keys([m for m in manifests if m.backup_id in gone]) | orphans) - remaining


def _orphans(listed: Mapping[str, ObjectInfo], manifests: Sequence[Manifest], prefix: str) -> set[str]:
    """Objects that no manifest commits but that these backups' statements name objects so
    (default layout, a topic they hold; the first chain's names, or any chain's: its suffix is a
    backup id, `layout.chains.chain_suffix`): what a failed or killed backup uploaded, and what a
    prune stopped after its manifests left. Anything else under the prefix — another backup's
    prefix nested in this one (`prefix/other/topic/0/…` parses as a topic too), PARTITIONBY
    objects, files of other tools — is never taken for a leftover."""
    topics = {t.name for m in manifests for t in m.topics}
    committed = referenced_keys(manifests)
    namings = {}
    for m in manifests:
        naming = key_naming(spec_of(m), m.extension)  # without the chain's suffix: matched below
        if not naming.partitioned:
            namings[(naming.extension, naming.key_suffix, repr(naming.padding))] = naming
    orphans = set()
    for key in listed:
        if key in committed:
            continue
        parsed = parse_object_key(key, prefix)
        if parsed.topic not in topics or parsed.partition is None or parsed.last_offset is None:
            continue
        for naming in namings.values():
            named = naming.object_key(parsed.topic, parsed.partition, parsed.last_offset)
            stem, extension = named.rsplit(".", 1)
            if (
                key == named
                or _CHAIN_NAMED.fullmatch(key.removeprefix(stem))
                and key.endswith(f".{extension}")
            ):
                orphans.add(key)
                break
    return orphans


_CHAIN_NAMED = re.compile(r"-c\d{8}T\d{9}Z-[0-9a-f]{6}\.[A-Za-z0-9]+")
"""What follows the name of a chain's object after its offset and `key.suffix`: `-c<backup id>.ext`."""


def _delete_manifests(
    store: ObjectStore,
    bucket: str,
    prefix: str,
    manifests: Sequence[Manifest],
    plan: RetentionPlan,
    report: PruneReport,
) -> set[str]:
    """Delete the dropped backups' manifests, newest first; a refused one keeps its chain."""
    deleted: set[str] = set()
    keep: set[str] = set()
    for backup_id in reversed(plan.dropped):
        if backup_id in keep:
            continue
        key = manifest_key(prefix, backup_id)
        refused = _delete_versions(store, bucket, [key])
        if refused:
            report.not_deleted.extend(refused)
            keep.update(m.backup_id for m in chain_of(manifests, backup_id))
            continue
        deleted.add(backup_id)
        report.deleted_manifests.append(backup_id)
        log.info("pruned restore point %s (manifest %s)", backup_id, key)
    return deleted


def _delete_objects(store: ObjectStore, bucket: str, keys: Sequence[str], report: PruneReport) -> set[str]:
    gone: set[str] = set()
    for start in range(0, len(keys), DELETE_BATCH):
        batch = list(keys[start : start + DELETE_BATCH])
        refused = _delete_versions(store, bucket, batch)
        report.not_deleted.extend(refused)
        refused_keys = {line.split(" ", 1)[0] for line in refused}
        gone.update(k for k in batch if k not in refused_keys)
    return gone


def _delete_versions(store: ObjectStore, bucket: str, keys: Iterable[str]) -> list[str]:
    """Delete the keys — every version of each in a versioned bucket — and return one line per
    key the store refused ("key: why")."""
    keys = list(keys)
    targets = [ObjectVersion(k) for k in keys]
    if store.versioned(bucket):
        targets = [ObjectVersion(k, v) for k in keys for v in store.versions(bucket, k)]
    if not targets:
        return []
    refused: dict[str, tuple[str, str | None]] = {}
    for refusal in store.delete_many(bucket, targets):
        line = f"{refusal.key} {refusal.code}: {refusal.message}".strip()
        refused.setdefault(refusal.key, (line, refusal.version_id))
    lines = []
    for key, (line, version) in refused.items():
        until = _retained_until(store, bucket, key, version)
        lines.append(line + (f" (retained until {until})" if until else ""))
    return lines


def _retained_until(store: ObjectStore, bucket: str, key: str, version: str | None = None) -> str | None:
    """The Object Lock retention of the refused version (else of the key's current one), or None:
    none, or not readable."""
    retention = store.retention(bucket, key, version)
    if retention is None:
        return None
    return f"{retention.until:%Y-%m-%d %H:%M:%S} UTC, {retention.mode.lower()}"


@task(name="prune-backups", cache_policy=NO_CACHE, **RETRY_OPTIONS)
def prune_task(
    bucket: str,
    prefix: str,
    keep_last: int | None,
    keep_within_s: int | None,
    dry_run: bool,
) -> PruneReport:
    from tasks.services.object_store import open_store

    within = timedelta(seconds=keep_within_s) if keep_within_s is not None else None
    return prune(open_store(), bucket, prefix, keep_last=keep_last, keep_within=within, dry_run=dry_run)


def summary(report: PruneReport) -> str:
    """The report in markdown: the `prune-summary` artifact and the command line's output."""
    lines = [
        f"# Prune s3://{report.bucket}/{report.prefix}{' (dry run)' if report.dry_run else ''}",
        f"- policy: {report.policy}",
        f"- restore points kept: {len(report.kept)}; kept for their chains: {len(report.needed)}; "
        f"dropped: {len(report.dropped)}",
        f"- {'would delete' if report.dry_run else 'deleted'}: {len(report.deleted_manifests)} manifests, "
        f"{report.deleted_objects} objects ({report.deleted_bytes} bytes; {report.orphans} of them "
        "uncommitted leftovers)",
    ]
    if report.deleted_manifests:
        title = "## Restore points to remove" if report.dry_run else "## Restore points removed"
        lines += ["", title, *(f"- {b}" for b in report.deleted_manifests)]
    if report.deleted_drills:
        title = "## Drill evidence to remove" if report.dry_run else "## Drill evidence removed"
        lines += ["", f"{title} (with its restore point)", *(f"- {d}" for d in report.deleted_drills)]
    if report.not_deleted:
        lines += ["", "## Not deleted yet", *(f"- {line}" for line in report.not_deleted)]
    return "\n".join(lines)
