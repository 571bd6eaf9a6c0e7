"""A manifest's invariants, checked when it is read (tasks.services.manifest_store), so that
`kbackup verify` and the restore's discovery refuse an impossible manifest before anything is
fetched or written, naming the field, where it is (topic/partition, object) and why.

`manifest_problems` checks one manifest: counts and sizes not negative, each window's start not
after its end, each object's offsets inside its partition's window and its records no more than
its offsets, the objects' record counts adding up to the partition's, objects of the default
layout following each other without overlapping, digests of the form the backup writes
(`sha256:<64 hex>` records digests, 64-hex sha256 of the bytes), and every key inside the backup:
under its prefix, no `.`/`..`/empty segment, not an address (`s3://…`), not a manifest.
The freshness entries name backed-up topics, once each, with a lag not negative, measured after
the snapshot, and the newest record timestamp its topic's objects hold.
The access rules, when recorded, list each binding once, exactly the principals the bindings name,
and SCRAM users among them.
`chain_problems` checks what only the chain shows: an incremental backup continues an older one
of its own chain and starts each partition where that one ended, or after.

Fields older manifests lack take their defaults and are not checked against anything. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from core.models import FrozenModel
from layout.access import principals_of, scram_user_names
from layout.keys import parse_object_key
from layout.manifest import MANIFESTS_FOLDER, Manifest, ObjectEntry, PartitionEntry, join_key

RECORDS_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
SHA256 = re.compile(r"[0-9a-f]{64}")


class ManifestProblem(FrozenModel):
    """One impossible value: `field` is its path in the manifest's JSON
    (`partitions[1].objects[0].record_count`), `where` what it belongs to (`orders/1 object
    <key>`), `reason` why it cannot be."""

    field: str
    where: str = ""
    reason: str

    def __str__(self) -> str:
        return f"{self.field} ({self.where}): {self.reason}" if self.where else f"{self.field}: {self.reason}"


def backup_folder(prefix: str) -> str:
    """The folder a backup under `prefix` writes its objects in (`nightly/`; "" at the bucket's root)."""
    return join_key(prefix) + "/" if join_key(prefix) else ""


def key_outside(key: str, prefix: str) -> str | None:
    """Why an object key lies outside the backup under `prefix`; None: it is inside."""
    folder = backup_folder(prefix)
    shown = f"s3://<bucket>/{folder}" if folder else "the bucket's root"
    if "://" in key:
        return f"key {key!r} is an address, not a key of the backup's bucket: it lies outside the backup ({shown})"
    if not key.startswith(folder):
        return f"key {key!r} lies outside the backup: it is not under the backup's prefix {folder!r}"
    segments = key[len(folder) :].split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        return (
            f"key {key!r} lies outside the backup: a '.', '..' or empty path segment leads out of "
            f"its prefix {folder!r} (the backup escapes them in the names it writes)"
        )
    if segments[0] == MANIFESTS_FOLDER:
        return f"key {key!r} names the backup's manifests folder, not an object of it"
    return None


def manifest_problems(manifest: Manifest, prefix: str, backup_id: str | None = None) -> list[ManifestProblem]:
    """Every impossible value of `manifest`, read under `prefix` (from the file `<backup_id>.json`,
    when given); [] for a sound manifest."""
    problems: list[ManifestProblem] = []
    if backup_id is not None and manifest.backup_id != backup_id:
        problems.append(
            ManifestProblem(
                field="backup_id",
                reason=f"{manifest.backup_id!r}, but the manifest is stored as backup {backup_id!r}",
            )
        )
    counts: dict[str, int] = {}
    for index, topic in enumerate(manifest.topics):
        field = f"topics[{index}]"
        if topic.name in counts:
            problems.append(ManifestProblem(field=f"{field}.name", where=topic.name, reason="listed twice"))
        counts[topic.name] = topic.partition_count
        if topic.partition_count < 1:
            problems.append(_at_least(f"{field}.partition_count", topic.name, topic.partition_count, 1))
        if topic.replication_factor < 1:
            problems.append(_at_least(f"{field}.replication_factor", topic.name, topic.replication_factor, 1))
    seen_partitions: set[tuple[str, int]] = set()
    seen_keys: dict[str, str] = {}
    partitioned = bool(manifest.spec.get("partition_by"))
    for index, partition in enumerate(manifest.partitions):
        field = f"partitions[{index}]"
        where = f"{partition.topic}/{partition.partition}"
        if (partition.topic, partition.partition) in seen_partitions:
            problems.append(ManifestProblem(field=f"{field}.partition", where=where, reason="listed twice"))
        seen_partitions.add((partition.topic, partition.partition))
        count = counts.get(partition.topic)
        if partition.partition < 0 or (count is not None and partition.partition >= count):
            known = f" (the topic has {count} partitions)" if count is not None else ""
            problems.append(
                ManifestProblem(field=f"{field}.partition", where=where, reason=f"no such partition{known}")
            )
        problems.extend(_partition_problems(partition, field, where))
        for number, entry in enumerate(partition.objects):
            object_field = f"{field}.objects[{number}]"
            object_where = f"{where} object {entry.key}"
            problems.extend(_object_problems(partition, entry, object_field, object_where, prefix))
            if entry.key in seen_keys:
                problems.append(
                    ManifestProblem(
                        field=f"{object_field}.key",
                        where=object_where,
                        reason=f"listed twice (also at {seen_keys[entry.key]})",
                    )
                )
            seen_keys.setdefault(entry.key, object_field)
        if not partitioned:
            problems.extend(_overlaps(partition, field, where))
    problems.extend(_freshness_problems(manifest))
    problems.extend(_access_problems(manifest))
    return problems


def _access_problems(manifest: Manifest) -> list[ManifestProblem]:
    """The access rules, when recorded: each binding once, the principals exactly those the bindings
    name, each SCRAM user (once) one of those principals' user names."""
    access = manifest.access
    if access is None:
        return []
    problems: list[ManifestProblem] = []
    seen: dict[tuple[str, ...], int] = {}
    for index, rule in enumerate(access.acls):
        key = rule.sort_key()
        if key in seen:
            problems.append(
                ManifestProblem(
                    field=f"access.acls[{index}]",
                    where=rule.describe(),
                    reason=f"listed twice (also at access.acls[{seen[key]}])",
                )
            )
        seen.setdefault(key, index)
    named = set(principals_of(access.acls))
    listed = set(access.principals)
    if len(access.principals) != len(listed):
        problems.append(ManifestProblem(field="access.principals", reason="a principal is listed twice"))
    if listed != named:
        unnamed = ", ".join(sorted(listed - named)) or "none"
        missing = ", ".join(sorted(named - listed)) or "none"
        problems.append(
            ManifestProblem(
                field="access.principals",
                reason=f"not the principals the bindings name: {unnamed} listed but named by no binding; "
                f"{missing} named but not listed",
            )
        )
    users = set(scram_user_names(access.principals))
    seen_users: set[str] = set()
    for index, user in enumerate(access.scram_users):
        field = f"access.scram_users[{index}].user"
        if user.user in seen_users:
            problems.append(ManifestProblem(field=field, where=user.user, reason="listed twice"))
        elif user.user not in users:
            problems.append(
                ManifestProblem(
                    field=field,
                    where=user.user,
                    reason=f"User:{user.user} is not among the access principals",
                )
            )
        seen_users.add(user.user)
    return problems


def _freshness_problems(manifest: Manifest) -> list[ManifestProblem]:
    """Each freshness entry names a backed-up topic, once; its lag is not negative; it was measured
    no earlier than its snapshot; its newest record is the newest its topic's objects hold."""
    problems: list[ManifestProblem] = []
    topics = {t.name for t in manifest.topics}
    seen: set[str] = set()
    newest_by_topic: dict[str, int] = {}
    for partition in manifest.partitions if manifest.freshness else ():
        for entry_object in partition.objects:
            stamp = entry_object.max_timestamp
            if stamp is not None and stamp > newest_by_topic.get(partition.topic, stamp - 1):
                newest_by_topic[partition.topic] = stamp
    for index, entry in enumerate(manifest.freshness):
        field = f"freshness[{index}]"
        if entry.topic not in topics:
            problems.append(
                ManifestProblem(field=f"{field}.topic", where=entry.topic, reason="not a topic of the backup")
            )
        elif entry.topic in seen:
            problems.append(ManifestProblem(field=f"{field}.topic", where=entry.topic, reason="listed twice"))
        seen.add(entry.topic)
        for name in ("lag_records", "lag_bytes"):
            value = getattr(entry, name)
            if value is not None and value < 0:
                problems.append(_at_least(f"{field}.{name}", entry.topic, value, 0))
        if entry.measured_at < entry.snapshot_at:
            problems.append(
                ManifestProblem(
                    field=f"{field}.measured_at",
                    where=entry.topic,
                    reason=f"{entry.measured_at.isoformat()} is before its snapshot_at "
                    f"{entry.snapshot_at.isoformat()}: the lag is measured after the snapshot",
                )
            )
        newest = newest_by_topic.get(entry.topic)
        if entry.topic in topics and entry.newest_record_ms != newest:
            problems.append(
                ManifestProblem(
                    field=f"{field}.newest_record_ms",
                    where=entry.topic,
                    reason=f"{entry.newest_record_ms}, but the newest timestamp its objects hold is {newest}",
                )
            )
    return problems


def _at_least(field: str, where: str, value: int, least: int) -> ManifestProblem:
    return ManifestProblem(field=field, where=where, reason=f"{value}, it cannot be less than {least}")


def _partition_problems(partition: PartitionEntry, field: str, where: str) -> list[ManifestProblem]:
    problems = []
    start, end = partition.start_offset, partition.end_offset
    if start < 0:
        problems.append(_at_least(f"{field}.start_offset", where, start, 0))
    if end < start:
        problems.append(
            ManifestProblem(
                field=f"{field}.end_offset",
                where=where,
                reason=f"{end} is before the start_offset {start}: the window cannot end before it starts",
            )
        )
    if partition.record_count < 0:
        problems.append(_at_least(f"{field}.record_count", where, partition.record_count, 0))
    elif end >= start and partition.record_count > end - start:
        problems.append(
            ManifestProblem(
                field=f"{field}.record_count",
                where=where,
                reason=f"{partition.record_count} records in a window of {end - start} offsets ({start}–{end})",
            )
        )
    held = sum(o.record_count for o in partition.objects)
    if partition.record_count >= 0 and held != partition.record_count:
        problems.append(
            ManifestProblem(
                field=f"{field}.record_count",
                where=where,
                reason=f"{partition.record_count}, but its objects hold {held} records",
            )
        )
    if partition.byte_count < 0:
        problems.append(_at_least(f"{field}.byte_count", where, partition.byte_count, 0))
    if not RECORDS_DIGEST.fullmatch(partition.records_digest):
        problems.append(_bad_digest(f"{field}.records_digest", where, partition.records_digest))
    for number, gap in enumerate(partition.gaps):
        if gap.first < 0 or gap.last < gap.first:
            problems.append(
                ManifestProblem(
                    field=f"{field}.gaps[{number}]",
                    where=where,
                    reason=f"offsets {gap.first}–{gap.last} are not a range of offsets",
                )
            )
    return problems


def _bad_digest(field: str, where: str, value: str) -> ManifestProblem:
    return ManifestProblem(
        field=field, where=where, reason=f"{value!r} is not a records digest ('sha256:' and 64 hex digits)"
    )


def _object_problems(
    partition: PartitionEntry, entry: ObjectEntry, field: str, where: str, prefix: str
) -> list[ManifestProblem]:
    problems = []
    outside = key_outside(entry.key, prefix)
    if outside is not None:
        problems.append(ManifestProblem(field=f"{field}.key", where=where, reason=outside))
    else:
        parsed = parse_object_key(entry.key, prefix)
        named = (parsed.topic, parsed.partition)
        if parsed.topic is not None and named != (partition.topic, partition.partition):
            problems.append(
                ManifestProblem(
                    field=f"{field}.key",
                    where=where,
                    reason=f"names an object of {parsed.topic}/{parsed.partition}, not of "
                    f"{partition.topic}/{partition.partition}",
                )
            )
        elif parsed.last_offset is not None and parsed.last_offset != entry.last_offset:
            problems.append(
                ManifestProblem(
                    field=f"{field}.last_offset",
                    where=where,
                    reason=f"{entry.last_offset}, but the key names last offset {parsed.last_offset}",
                )
            )
    first, last = entry.first_offset, entry.last_offset
    if last < first:
        problems.append(
            ManifestProblem(
                field=f"{field}.last_offset", where=where, reason=f"{last} is before its first_offset {first}"
            )
        )
    elif first < partition.start_offset or last >= partition.end_offset:
        problems.append(
            ManifestProblem(
                field=f"{field}.first_offset" if first < partition.start_offset else f"{field}.last_offset",
                where=where,
                reason=f"offsets {first}–{last} are outside the partition's window "
                f"{partition.start_offset}–{partition.end_offset} (end exclusive)",
            )
        )
    if entry.record_count < 0:
        problems.append(_at_least(f"{field}.record_count", where, entry.record_count, 0))
    elif last >= first and entry.record_count > last - first + 1:
        problems.append(
            ManifestProblem(
                field=f"{field}.record_count",
                where=where,
                reason=f"{entry.record_count} records in {last - first + 1} offsets ({first}–{last})",
            )
        )
    if entry.size < 0:
        problems.append(_at_least(f"{field}.size", where, entry.size, 0))
    low, high = entry.min_timestamp, entry.max_timestamp
    if low is not None and high is not None and low > high:
        problems.append(
            ManifestProblem(
                field=f"{field}.min_timestamp", where=where, reason=f"{low} is after its max_timestamp {high}"
            )
        )
    if not SHA256.fullmatch(entry.sha256):
        problems.append(
            ManifestProblem(
                field=f"{field}.sha256",
                where=where,
                reason=f"{entry.sha256!r} is not a sha256 (64 lower-case hex digits)",
            )
        )
    if not RECORDS_DIGEST.fullmatch(entry.records_digest):
        problems.append(_bad_digest(f"{field}.records_digest", where, entry.records_digest))
    return problems


def _overlaps(partition: PartitionEntry, field: str, where: str) -> list[ManifestProblem]:
    """Objects of the default layout follow each other: one's offsets never reach into the next's."""
    numbered = sorted(enumerate(partition.objects), key=lambda n: (n[1].first_offset, n[1].last_offset))
    problems = []
    for (_, before), (number, after) in zip(numbered, numbered[1:], strict=False):
        if after.first_offset <= before.last_offset:
            problems.append(
                ManifestProblem(
                    field=f"{field}.objects[{number}].first_offset",
                    where=f"{where} object {after.key}",
                    reason=f"offsets {after.first_offset}–{after.last_offset} overlap those of "
                    f"{before.key} ({before.first_offset}–{before.last_offset})",
                )
            )
    return problems


def chain_problems(manifests: Sequence[Manifest]) -> dict[str, list[ManifestProblem]]:
    """By backup id, what is impossible in how the backups chain: an incremental backup continues
    an older backup, of its own chain (chain id and object-name suffix), and starts each partition
    where that one ended or after it (a retention gap). A backup whose predecessor is gone is not a
    problem here: only the restore points that read it fail (layout.chains.chain_of)."""
    known = {m.backup_id: m for m in manifests}
    found: dict[str, list[ManifestProblem]] = {}
    for manifest in manifests:
        problems = _continues(manifest, known.get(manifest.previous_backup_id or ""))
        if manifest.previous_backup_id is None and manifest.chain_id not in (None, manifest.backup_id):
            problems.append(
                ManifestProblem(
                    field="chain_id",
                    reason=f"{manifest.chain_id!r}, but a full backup begins its own chain ({manifest.backup_id!r})",
                )
            )
        if problems:
            found[manifest.backup_id] = problems
    return found


def _continues(manifest: Manifest, previous: Manifest | None) -> list[ManifestProblem]:
    before = manifest.previous_backup_id
    if before is None:
        return []
    if before >= manifest.backup_id:
        return [
            ManifestProblem(
                field="previous_backup_id",
                reason=f"{before!r} is not older than the backup itself ({manifest.backup_id!r}): "
                "a backup continues one made before it",
            )
        ]
    if previous is None:
        return []
    problems = []
    if (
        manifest.chain_id is not None
        and previous.chain_id is not None
        and manifest.chain_id != previous.chain_id
    ):
        problems.append(
            ManifestProblem(
                field="chain_id",
                reason=f"{manifest.chain_id!r}, but the backup it continues ({before}) is of chain "
                f"{previous.chain_id!r}",
            )
        )
    if manifest.chain_suffix != previous.chain_suffix:
        problems.append(
            ManifestProblem(
                field="chain_suffix",
                reason=f"{manifest.chain_suffix!r}, but the backup it continues ({before}) names its "
                f"objects with {previous.chain_suffix!r}",
            )
        )
    for index, partition in enumerate(manifest.partitions):
        ended = previous.partition(partition.topic, partition.partition)
        if ended is not None and partition.start_offset < ended.end_offset:
            problems.append(
                ManifestProblem(
                    field=f"partitions[{index}].start_offset",
                    where=f"{partition.topic}/{partition.partition}",
                    reason=f"{partition.start_offset}, before the end of the backup it continues "
                    f"({before} ended at {ended.end_offset}): the two would overlap",
                )
            )
    return problems
