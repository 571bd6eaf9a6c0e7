"""The evidence of a restore drill: what a drill restored, what its read-back check compared, how long
the recovery took, and its result — written to `<prefix>/_drills/<drill_id>.json` beside the backups
it proves (docs/operators-guide.md, "Restore drills").

Pure: the model, its key and its id. The drill flow writes it (flows/drill.py); `kbackup status` /
`ls` read it; prune keeps the evidence of every kept restore point and deletes the rest.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Literal

from pydantic import Field

from core.models import FrozenModel

DRILLS_FOLDER = "_drills"
DRILL_FORMAT_VERSION = 1
SCRATCH_PREFIX = "drill-"

DrillResult = Literal["passed", "failed"]


class DrillPartition(FrozenModel):
    """One partition of the drill: what the restore point holds and what was read back."""

    partition: int
    expected_records: int
    restored_records: int | None = Field(
        description="None: the partition was not read back (the drill stopped)."
    )
    expected_digest: str | None = Field(description="The manifest's records digest of the partition.")
    restored_digest: str | None = Field(description="Recomputed from the scratch topic; None: counted only.")
    ok: bool
    problem: str | None = None


class DrillTopic(FrozenModel):
    """One backed-up topic of the drill and its scratch copy, with its recovery time."""

    topic: str
    scratch_topic: str
    records: int
    bytes: int
    seconds: float = Field(
        description="Wall time of the topic's restore: its slowest partition's (a topic's partitions "
        "restore in parallel); the drill's `seconds` cover the whole restore and its check."
    )
    records_per_second: float
    partitions: tuple[DrillPartition, ...]

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.partitions)


class DrillCleanup(FrozenModel):
    """What the drill removed when it ended, whatever happened, and what it could not remove."""

    deleted_topics: tuple[str, ...] = ()
    deleted_groups: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()


class DrillEvidence(FrozenModel):
    """The JSON document `<prefix>/_drills/<drill_id>.json`."""

    format_version: int = DRILL_FORMAT_VERSION
    drill_id: str
    bucket: str
    prefix: str
    backup_id: str = Field(description="The restore point drilled (a manifest's backup id).")
    manifest_key: str
    manifest_sha256: str = Field(description="Hex sha256 of the manifest's bytes as the drill read them.")
    started_at: datetime
    finished_at: datetime
    seconds: float = Field(description="Recovery time: the whole restore and its check, wall time.")
    records: int
    records_per_second: float
    cluster: str = Field(description="Where the scratch topics were restored: bootstrap servers (no secret).")
    cluster_id: str | None = None
    scratch_prefix: str = Field(
        description="`drill-<drill_id>-`: every scratch topic and group name starts with it."
    )
    sample: str = Field(description="`all`, or the partitions restored, e.g. `partitions 0,3`.")
    result: DrillResult
    problem: str | None = Field(default=None, description="Why it failed, naming the object or partition.")
    topics: tuple[DrillTopic, ...] = ()
    cleanup: DrillCleanup = DrillCleanup()


def new_drill_id(now: datetime | None = None) -> str:
    """Sortable by time and valid in a topic name: `20261207T190000Z-1a2b3c`."""
    now = now or datetime.now(UTC)
    return now.strftime("%Y%m%dT%H%M%SZ-") + secrets.token_hex(3)


def scratch_prefix(drill_id: str) -> str:
    return f"{SCRATCH_PREFIX}{drill_id}-"


def drills_prefix(prefix: str) -> str:
    return "/".join(p.strip("/") for p in (prefix, DRILLS_FOLDER) if p.strip("/")) + "/"


def drill_key(prefix: str, drill_id: str) -> str:
    return f"{drills_prefix(prefix)}{drill_id}.json"
