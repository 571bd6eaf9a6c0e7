"""The restore's pre-flight: before a topic is created or a record produced, check that every object
the restore will read is in the bucket and is what the manifest says, and name every one that is
not — instead of failing one partition half-way while the others are committed.

- `quick` (the default): every object is in the one listing of the prefix that discovery made
  (no HEAD per object), with the size the manifest records.
- `full`: also downloads each object and compares its sha256 with the manifest's.
- `none`: no check; a missing or damaged object then fails its partition when it is read.

Data written without a manifest (Stream Reactor) is discovered from the listing itself: there is
nothing to check it against.

Whatever the mode, `zero_timestamps` finds the selected records with timestamp 0, which the
producer cannot write (layout.restore.timestamps): the manifest's per-object timestamp bounds say
which objects may hold one (usually none), and only those are decoded, to name each record.
Without a manifest there are no bounds: each batch is checked before it is produced
(tasks.restore.produce).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from formats.errors import CorruptObjectError
from layout.restore.errors import MissingObjectError, UnwritableTimestampError
from layout.restore.plan import RestoreObject, RestorePlan
from layout.restore.timestamps import suspects, zero_rows
from tasks.restore.decode import decode_object
from tasks.restore.errors import PreflightError, RestoreError
from tasks.restore.produce import window_mask
from tasks.runtime import shutdown

if TYPE_CHECKING:
    from tasks.services.object_store import ObjectInfo, ObjectStore

HASH_WORKERS = 8
CHUNK_BYTES = 8 * 1024 * 1024


def object_sha256(store: ObjectStore, bucket: str, key: str) -> str:
    """The sha256 of an object's bytes, streamed (never the whole object in memory)."""
    digest = hashlib.sha256()
    for chunk in store.read_chunks(bucket, key, CHUNK_BYTES):
        shutdown.raise_if_stopping()
        digest.update(chunk)
    return digest.hexdigest()


def _objects(plan: RestorePlan) -> list[RestoreObject]:
    seen: dict[str, RestoreObject] = {}
    for unit in plan.units:
        for obj in unit.objects:
            seen.setdefault(obj.key, obj)
    return list(seen.values())


def preflight(store: ObjectStore, plan: RestorePlan, listed: Mapping[str, ObjectInfo], mode: str) -> str:
    """Check the plan's objects as `mode` says; raise PreflightError naming every object that is
    missing or not as the manifest says. Returns what was checked, for the report."""
    if mode == "none":
        return "none"
    if not plan.manifest_format:
        return f"{mode}: nothing to check (no manifest; the objects are the listing)"
    objects = _objects(plan)
    problems: list[RestoreError] = []
    sound: list[RestoreObject] = []
    for obj in objects:
        entry = listed.get(obj.key)
        if entry is None:
            problems.append(MissingObjectError(plan.bucket, obj.key, obj.backup_id or "?"))
        elif obj.size is not None and entry.size != obj.size:
            problems.append(
                CorruptObjectError(
                    plan.bucket, obj.key, f"{entry.size} bytes in the bucket, the manifest says {obj.size}"
                )
            )
        else:
            sound.append(obj)
    hashed = 0
    if mode == "full":
        to_hash = [o for o in sound if o.sha256 is not None]
        with ThreadPoolExecutor(max_workers=HASH_WORKERS, thread_name_prefix="kbackup-preflight") as pool:
            actual = pool.map(lambda o: object_sha256(store, plan.bucket, o.key), to_hash)
            for obj, sha256 in zip(to_hash, actual, strict=True):
                hashed += 1
                if sha256 != obj.sha256:
                    problems.append(
                        CorruptObjectError(
                            plan.bucket, obj.key, f"sha256 {sha256} differs from the manifest's {obj.sha256}"
                        )
                    )
    if problems:
        problems.sort(key=lambda p: str(getattr(p, "key", "")))
        raise PreflightError(plan.bucket, plan.prefix, mode, len(objects), tuple(problems))
    if mode == "full":
        return f"full: {len(objects)} objects present, sizes and sha256 ({hashed} hashed) as in the manifest"
    return f"quick: {len(objects)} objects present with the manifest's sizes"


def zero_timestamps(store: ObjectStore, plan: RestorePlan) -> UnwritableTimestampError | None:
    """The selected records with timestamp 0, as the error that refuses them (the first one named,
    all counted), or None when there is none. Reads only the objects whose manifest timestamps
    admit a 0; nothing without a manifest, or when the objects keep no timestamps."""
    if not (plan.manifest_format and plan.envelope and plan.codec.envelope.metadata):
        return None
    first: tuple[str | None, int | None, int, str] | None = None
    count = 0
    for unit in plan.units:
        for obj in suspects(unit.objects):
            for batch in decode_object(store, plan, unit, obj):
                shutdown.raise_if_stopping()
                offsets = batch.column("offset").to_numpy(zero_copy_only=False)
                mask = window_mask(plan.window, offsets, batch.column("timestamp"))
                rows = zero_rows(batch.column("timestamp"))
                if mask is not None:
                    rows = rows[mask[rows]]
                if len(rows) and first is None:
                    row = int(rows[0])
                    first = (
                        batch.column("topic")[row].as_py() or unit.source_topic,
                        batch.column("partition")[row].as_py(),
                        int(offsets[row]),
                        obj.key,
                    )
                count += len(rows)
    if first is None:
        return None
    topic, partition, offset, key = first
    return UnwritableTimestampError(topic, partition, offset, 0, key, count)
