"""The restore's plan: what a restore reads, in which order, and where each record goes — its
objects, units, segments and target topics — and the restore id that names a restore's
transactional ids and consumer groups. Pure: built by discovery (layout.restore.from_manifests,
tasks.restore.discover_listing), read by every stage of the restore wing (tasks/restore/).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field

from core.models import FrozenModel
from kcql.selection import AccessMode, Selection, TargetNonEmpty, TimestampZero, Window
from kcql.specs import CodecOptions
from layout.access import AccessCapture
from layout.manifest import GroupOffsets, OffsetGap
from layout.restore.errors import AccessNotCapturedError
from layout.schemas import StoredSchema

Routing = Literal["preserve", "murmur2", "metadata", "round-robin"]
ProgressLayout = Literal["shared", "units"]  # where units keep their progress: layout.restore.progress


class RestoreObject(FrozenModel):
    key: str
    first_offset: int | None = None
    last_offset: int | None = None
    record_count: int | None = None
    min_timestamp: int | None = None
    max_timestamp: int | None = None
    size: int | None = None
    sha256: str | None = None
    partition_values: dict[str, str | None] = Field(default_factory=dict)
    backup_id: str | None = None


class Segment(FrozenModel):
    """One manifest's part of a source partition: its digest proves the decoded records."""

    backup_id: str
    start_offset: int
    end_offset: int
    record_count: int
    records_digest: str


class RestoreUnit(FrozenModel):
    """One task's work: a source partition (or, without a manifest, one stream of objects in key
    order), produced by one transactional producer."""

    unit_id: str
    source_topic: str | None
    source_partition: int | None
    target_topic: str
    target_partition: int | None = Field(description="With routing 'preserve': where every record goes.")
    routing: Routing
    objects: tuple[RestoreObject, ...]
    segments: tuple[Segment, ...] = ()
    gaps: tuple[OffsetGap, ...] = ()
    offsets_known: bool = Field(description="Records carry their real source offsets.")
    check_gaps: bool = Field(description="Every hole between offsets must be a recorded gap.")
    compare_segments: bool = Field(description="Decoded records must match the manifest's digests.")
    translate_offsets: tuple[int, ...] = Field(
        default=(), description="Source offsets of consumer groups to map onto target offsets."
    )


class TargetTopic(FrozenModel):
    name: str
    partitions_needed: int = Field(description="With preserve: the highest source partition + 1.")
    partition_count: int = Field(description="Partition count to create the topic with.")
    replication_factor: int | None = None
    configs: dict[str, str] = Field(default_factory=dict)
    oldest_timestamp: int | None = None


class RestorePlan(FrozenModel):
    restore_id: str = Field(
        description="Stable hash of what is restored where: names the restore's "
        "transactional ids and consumer groups, so that a rerun resumes."
    )
    bucket: str
    prefix: str
    format: str
    envelope: bool
    lossless: bool
    manifest_format: bool = Field(description="Discovered from manifests (else a listing).")
    backup_ids: tuple[str, ...]
    codec: CodecOptions = Field(
        description="How the objects are encoded: the last manifest's spec's codec options, or, without "
        "a manifest, the statement's envelope and converters."
    )
    batch: int
    window: Window
    partitioner: str
    targets: tuple[TargetTopic, ...]
    units: tuple[RestoreUnit, ...]
    consumer_groups: tuple[GroupOffsets, ...] = ()
    group_prefix: str = ""
    target_nonempty: TargetNonEmpty = Field(
        default="refuse",
        description="A target partition holding records this restore did not write: refuse or append.",
    )
    timestamp_zero: TimestampZero = Field(
        default="refuse",
        description="A selected record with timestamp 0, which the producer cannot write: refuse before "
        "anything is written, or write it with the substitute (layout.restore.timestamps).",
    )
    preflight: str = Field(
        default="none", description="What the pre-flight checked before anything was produced."
    )
    notes: tuple[str, ...] = Field(default=(), description="What cannot be restored, and other warnings.")
    schemas: tuple[StoredSchema, ...] = Field(
        default=(), description="The registry schemas the backup holds (its manifests' schemas)."
    )
    schema_ids: Literal["rewrite", "keep"] = "rewrite"
    schema_registry_url: str | None = None
    schema_id_map: dict[int, int] = Field(
        default_factory=dict,
        description="Source schema id → the target registry's, once registered (rewrite only).",
    )
    progress: ProgressLayout | None = Field(
        default=None,
        description="Where the units keep their progress (layout.restore.progress), as the restore "
        "recorded it when it first ran (tasks.restore.fence); None until then.",
    )
    acls: AccessMode = Field(
        default="off", description="`restore.acls`: which of the backup's ACL bindings to recreate."
    )
    users: bool = Field(
        default=False, description="`restore.users`: create the backup's missing SCRAM users."
    )
    access: AccessCapture | None = Field(
        default=None,
        description="What the restore point's manifest recorded of who may do what (layout.access); "
        "None: nothing recorded, or no manifest.",
    )

    @property
    def wire_sides(self) -> tuple[str, ...]:
        """`key` / `value`: the sides whose bytes are in the Confluent wire format (converter avro)."""
        converters = {"key": self.codec.key_converter, "value": self.codec.value_converter}
        return tuple(side for side, converter in converters.items() if converter == "avro")

    def target(self, name: str) -> TargetTopic:
        return next(t for t in self.targets if t.name == name)

    @property
    def record_estimate(self) -> int:
        return sum(o.record_count or 0 for u in self.units for o in u.objects)


# Choices that do not change what is restored where: a rerun that sets them differently (say,
# 'restore.preflight'='none' after a long full pre-flight) is still the same restore and resumes.
# (The restore point is in the id through the backups it restores.)
# 'restore.timestamp.zero' too: a run that refuses writes no substitute, so a rerun that substitutes
# continues it.
# 'restore.acls' and 'restore.users' neither: access is applied after the records, and a rerun
# that asks for it (or no longer does) resumes the same restore.
_NOT_IN_RESTORE_ID = {
    "acls",
    "users",
    "batch",
    "preflight",
    "target_nonempty",
    "timestamp_zero",
    "schema_registry_url",
    "point",
}


def _not_in_restore_id(selection: Selection) -> set[str]:
    """The fields left out of the restore id: the choices above, and `schema_ids` and
    `topic_prefix` at their defaults, so that the ids of restores from before they existed stay
    what they were."""
    return (
        _NOT_IN_RESTORE_ID
        | ({"schema_ids"} if selection.schema_ids == "rewrite" else set())
        | ({"topic_prefix"} if not selection.topic_prefix else set())
    )


def restore_id(selection: Selection, backup_ids: Sequence[str]) -> str:
    identity = json.dumps(
        {
            "selection": selection.model_dump(mode="json", exclude=_not_in_restore_id(selection)),
            "backups": list(backup_ids),
        },
        sort_keys=True,
    )
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


def plan_of(selection: Selection, identity: Sequence[str], **found: Any) -> RestorePlan:
    """A discovered plan: what it takes from the selection (where, how, and its restore_id, of the
    selection and `identity`, the backups restored) plus the fields discovery `found`. A selection
    asking for 'restore.acls' or 'restore.users' from a restore point that recorded no access
    rules (or from data without a manifest) is refused here, before anything is written."""
    if (selection.acls != "off" or selection.users) and found.get("access") is None:
        asked = "'restore.acls'" if selection.acls != "off" else "'restore.users'"
        backups = found.get("backup_ids") or ()
        raise AccessNotCapturedError(
            selection.bucket, selection.prefix, backups[-1] if backups else None, asked
        )
    return RestorePlan(
        restore_id=restore_id(selection, identity),
        bucket=selection.bucket,
        prefix=selection.prefix,
        batch=selection.batch,
        window=selection.window,
        partitioner=selection.partitioner,
        group_prefix=selection.group_prefix,
        target_nonempty=selection.target_nonempty,
        timestamp_zero=selection.timestamp_zero,
        schema_ids=selection.schema_ids,
        schema_registry_url=selection.schema_registry_url,
        acls=selection.acls,
        users=selection.users,
        **found,
    )
