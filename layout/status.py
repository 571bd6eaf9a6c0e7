"""How protected a prefix's topics are now (`kbackup status`, the status flow) and what its restore
drills showed (`kbackup ls`): built from the manifests and the drills' evidence, at a given time.
Pure: the reads are in tasks/backup/status.py.

Per topic: the newest restore point holding it (a restorable one: its chain is whole) and its age —
the recovery point objective as it stands —, the age of the newest backed-up record, the lag that
backup left behind (records, and bytes estimated), the last drill of a restore point holding
the topic, and the access rules that restore point captured for it (its bindings, their principals
and SCRAM users), or "not captured".
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import Field

from core.models import FrozenModel
from core.sizes import human_bytes
from layout.access import (
    ACL_BINDINGS,
    SCRAM_USERS,
    AccessCapture,
    counted,
    part_captured,
    principals_of,
    scram_user_names,
    topic_rules,
)
from layout.chains import ChainError, chain_of
from layout.drills import DrillEvidence, DrillResult
from layout.freshness import newest_record_ms
from layout.manifest import Manifest, TopicFreshness


class DrillSummary(FrozenModel):
    """A drill as status shows it beside a topic."""

    drill_id: str
    backup_id: str = Field(description="The restore point drilled.")
    result: DrillResult
    finished_at: datetime
    age_s: float = Field(description="Seconds since the drill finished.")
    recovery_s: float = Field(
        description="Recovery time: the topic's own in the drill when it got that far, else the whole drill's."
    )
    problem: str | None = None


class AccessSummary(FrozenModel):
    """What the newest restore point captured of who may do what with the topic."""

    bindings: int | None = Field(
        description="The TOPIC bindings applying to it (literal, prefixed, wildcard); None: not captured."
    )
    principals: int | None = Field(description="The principals those bindings name; None: not captured.")
    scram_users: int | None = Field(description="The SCRAM users among those principals; None: not captured.")
    not_captured: tuple[str, ...] = Field(default=(), description="What the backup could not read, and why.")


class TopicStatus(FrozenModel):
    """One topic of the prefix: `kbackup status`'s row."""

    topic: str
    restore_point: str | None = Field(
        description="The newest restorable backup holding the topic (a backup id); None: none is restorable."
    )
    restore_point_at: datetime | None = Field(description="Its snapshot time.")
    restore_point_age_s: float | None = Field(
        description="Seconds since that snapshot: the recovery point objective as it stands."
    )
    newest_record_at: datetime | None = Field(
        description="The newest backed-up record's timestamp (from the newest backup holding a record of it)."
    )
    newest_record_age_s: float | None
    lag_records: int | None = Field(
        description="Records the newest restore point left behind when it committed; None: unknown."
    )
    lag_bytes_estimated: int | None = Field(
        description="Their bytes, estimated from the backup's bytes per record; None: unknown."
    )
    lag_measured_at: datetime | None
    last_drill: DrillSummary | None
    access: AccessSummary | None = Field(
        default=None,
        description="The access rules the newest restore point captured for the topic; None: it captured "
        "none (written before the capture existed).",
    )


class PrefixStatus(FrozenModel):
    """`kbackup status --json`, the status flow's result."""

    bucket: str
    prefix: str
    at: datetime = Field(description="When the status was read: the ages are counted to it.")
    restore_points: int
    drills: int
    topics: tuple[TopicStatus, ...]


def access_summary(capture: AccessCapture | None, topic: str) -> AccessSummary | None:
    """The counts of a capture for one topic: its bindings, their principals and SCRAM users."""
    if capture is None:
        return None
    rules = topic_rules(capture, topic)
    principals = principals_of(rules)
    users = set(scram_user_names(principals))
    bindings_read = part_captured(capture, ACL_BINDINGS)
    users_read = bindings_read and part_captured(capture, SCRAM_USERS)
    return AccessSummary(
        bindings=len(rules) if bindings_read else None,
        principals=len(principals) if bindings_read else None,
        scram_users=sum(1 for u in capture.scram_users if u.user in users) if users_read else None,
        not_captured=capture.not_captured,
    )


def access_words(summary: AccessSummary | None) -> str:
    """`3 bindings, 2 principals, 1 SCRAM user`, or `not captured` (the bindings were not)."""
    if summary is None or summary.bindings is None:
        return "not captured"
    users = (
        "SCRAM users not captured"
        if summary.scram_users is None
        else counted(summary.scram_users, "SCRAM user")
    )
    return f"{counted(summary.bindings, 'binding')}, {counted(summary.principals or 0, 'principal')}, {users}"


def _seconds(now: datetime, then: datetime) -> float:
    return round((now - then).total_seconds(), 3)


def restorable(manifests: Sequence[Manifest]) -> list[Manifest]:
    """The restore points whose chains are whole, oldest first."""
    whole = []
    for m in manifests:
        try:
            chain_of(manifests, m.backup_id)
        except ChainError:
            continue
        whole.append(m)
    return whole


def _freshness(manifest: Manifest, topic: str) -> TopicFreshness | None:
    return next((f for f in manifest.freshness if f.topic == topic), None)


def _holds(manifest: Manifest, topic: str) -> bool:
    return any(t.name == topic for t in manifest.topics)


def _newest_record(manifests: Sequence[Manifest], topic: str) -> int | None:
    """From the newest backup that holds a record of the topic (its freshness entry, or its objects
    in a manifest written before freshness existed)."""
    for m in reversed(manifests):
        entry = _freshness(m, topic)
        stamp = (
            entry.newest_record_ms
            if entry is not None
            else newest_record_ms(p for p in m.partitions if p.topic == topic)
        )
        if stamp is not None:
            return stamp
    return None


def drill_topics(drill: DrillEvidence, manifests: Sequence[Manifest]) -> set[str]:
    """The topics a drill proves: those it restored, else (it stopped before) its restore point's."""
    named = {t.topic for t in drill.topics}
    if named:
        return named
    point = next((m for m in manifests if m.backup_id == drill.backup_id), None)
    return {t.name for t in point.topics} if point else set()


def drill_summary(drill: DrillEvidence, now: datetime, topic: str | None = None) -> DrillSummary:
    own = next((t for t in drill.topics if t.topic == topic), None)
    return DrillSummary(
        drill_id=drill.drill_id,
        backup_id=drill.backup_id,
        result=drill.result,
        finished_at=drill.finished_at,
        age_s=_seconds(now, drill.finished_at),
        recovery_s=own.seconds if own is not None else drill.seconds,
        problem=drill.problem,
    )


def prefix_status(
    bucket: str,
    prefix: str,
    manifests: Sequence[Manifest],
    drills: Sequence[DrillEvidence],
    now: datetime,
) -> PrefixStatus:
    """Every topic any backup under the prefix holds, by name; `manifests` and `drills` oldest first."""
    whole = restorable(manifests)
    names = sorted({t.name for m in manifests for t in m.topics})
    ordered = sorted(drills, key=lambda d: (d.finished_at, d.drill_id))
    proves = {d.drill_id: drill_topics(d, manifests) for d in ordered}
    rows = []
    for topic in names:
        holding = [m for m in whole if _holds(m, topic)]
        point = holding[-1] if holding else None
        entry = _freshness(point, topic) if point else None
        newest = _newest_record(holding, topic)
        newest_at = datetime.fromtimestamp(newest / 1000, UTC) if newest is not None else None
        drill = next((d for d in reversed(ordered) if topic in proves[d.drill_id]), None)
        rows.append(
            TopicStatus(
                topic=topic,
                restore_point=point.backup_id if point else None,
                restore_point_at=point.started_at if point else None,
                restore_point_age_s=_seconds(now, point.started_at) if point else None,
                newest_record_at=newest_at,
                newest_record_age_s=_seconds(now, newest_at) if newest_at else None,
                lag_records=entry.lag_records if entry else None,
                lag_bytes_estimated=entry.lag_bytes if entry else None,
                lag_measured_at=entry.measured_at if entry else None,
                last_drill=drill_summary(drill, now, topic) if drill else None,
                access=access_summary(point.access, topic) if point else None,
            )
        )
    return PrefixStatus(
        bucket=bucket,
        prefix=prefix,
        at=now,
        restore_points=len(manifests),
        drills=len(drills),
        topics=tuple(rows),
    )


def human_age(seconds: float | None) -> str:
    """`45 s`, `12 min`, `3 h 05 min`, `2 d 04 h`; `-` for None. A negative age (a clock ahead, a
    record stamped in the future) shows as `in …`."""
    if seconds is None:
        return "-"
    if seconds <= -1:
        return f"in {human_age(-seconds)}"
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes = whole // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours:02d} h"


def status_rows(status: PrefixStatus) -> list[dict[str, Any]]:
    """The status table: a row per topic, in words."""
    rows = []
    for t in status.topics:
        drill = t.last_drill
        rows.append(
            {
                "topic": t.topic,
                "restore point": t.restore_point or "none restorable",
                "RPO (age)": human_age(t.restore_point_age_s),
                "newest record": "-"
                if t.newest_record_age_s is None
                else f"{human_age(t.newest_record_age_s)} ago",
                "lag records": "?" if t.lag_records is None else t.lag_records,
                "lag bytes (est.)": "?"
                if t.lag_bytes_estimated is None
                else human_bytes(t.lag_bytes_estimated),
                "last drill": drill.drill_id if drill else "never",
                "drill result": drill.result if drill else "-",
                "drill age": human_age(drill.age_s) if drill else "-",
                "recovery time": f"{drill.recovery_s:.1f} s" if drill else "-",
                "access rules": access_words(t.access),
            }
        )
    return rows


def recovery_trend(seconds: float, previous: float | None) -> str:
    """The recovery time against the previous passed drill's: `+12 %`, `-3 %`; `-` without one."""
    if previous is None or previous <= 0:
        return "-"
    change = 100 * (seconds - previous) / previous
    return f"{change:+.0f} %"


def drill_rows(drills: Sequence[DrillEvidence]) -> list[dict[str, Any]]:
    """`kbackup ls`'s drills table, oldest first: a row per drill, with the trend of its recovery
    time against the previous passed drill of the prefix (a failed drill stopped early: no trend,
    and it is no baseline)."""
    rows = []
    previous: float | None = None
    for d in sorted(drills, key=lambda d: (d.started_at, d.drill_id)):
        passed = d.result == "passed"
        rows.append(
            {
                "drill": d.drill_id,
                "restore point": d.backup_id,
                "finished": d.finished_at.strftime("%Y-%m-%d %H:%M:%S"),
                "result": d.result,
                "recovery time": f"{d.seconds:.1f} s",
                "records/s": f"{d.records_per_second:,.0f}",
                "trend": recovery_trend(d.seconds, previous) if passed else "-",
                "sample": d.sample,
            }
        )
        if passed:
            previous = d.seconds
    return rows


def last_drills(drills: Sequence[DrillEvidence]) -> dict[str, DrillEvidence]:
    """The last drill of each restore point drilled, by backup id."""
    found: dict[str, DrillEvidence] = {}
    for d in sorted(drills, key=lambda d: (d.finished_at, d.drill_id)):
        found[d.backup_id] = d
    return found
