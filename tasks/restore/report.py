"""The restore's report: what each unit did, what a failed restore committed per target partition
and how to resume, rendered once — the same rows and text for the Prefect artifacts and the
command line's output; a failed restore raises RestoreFailed, which carries its report."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from core.errors import RestoreError
from layout.restore.access import AccessDiff
from layout.restore.plan import RestoreObject, RestorePlan, RestoreUnit
from layout.restore.timestamps import PROPERTY, SUBSTITUTE_MS
from tasks.restore.check import PartitionCheck
from tasks.restore.committed import CommittedProgress
from tasks.restore.groups import GroupTranslation
from tasks.restore.produce import UnitResult
from tasks.restore.target import TargetInfo
from tasks.runtime.overview import MANY_ROWS, TOP_ROWS, Condensed, condensed

UnitOutcome = UnitResult | BaseException


class UnitReport(BaseModel):
    unit: str
    source: str
    target: str
    status: Literal["done", "failed", "planned"]
    records: int = 0
    produced: int = 0
    resumed_after: int = 0
    bytes: int = 0
    objects: int = 0
    seconds: float = 0.0
    error: str | None = None

    @property
    def mb_per_s(self) -> float | None:
        return round(self.bytes / 1e6 / self.seconds, 2) if self.seconds else None


class TargetProgress(BaseModel):
    """How far one unit (with 'preserve': one target partition) got, after a failed restore: what
    is committed there, exactly once, and what a rerun resumes after."""

    unit: str
    target: str
    status: Literal["complete", "not finished", "partial", "not started", "unknown"] = Field(
        description="complete: the unit finished; not finished: it failed after committing every "
        "record it expected (a check or a later step failed; it is never called complete)."
    )
    committed: int | None = Field(description="Records committed in the target (None: could not be read).")
    expected: int | None = Field(
        description="Records the unit restores (None: unknown before decoding, e.g. with a time window)."
    )

    def describe(self) -> str:
        if self.status == "unknown":
            return f"{self.target}: unknown (the committed progress could not be read)"
        if self.status == "not started":
            return f"{self.target}: not started (0 records committed)"
        if self.status == "not finished":
            return (
                f"{self.target}: not finished ({self.committed} of {self.expected} records committed, "
                "then the unit failed)"
            )
        of = f" of {self.expected}" if self.expected is not None else ""
        return f"{self.target}: {self.status} ({self.committed}{of} records committed)"


class RestoreReport(BaseModel):
    restore_id: str
    bucket: str
    prefix: str
    backup_ids: list[str]
    format: str
    lossless: bool
    dry_run: bool
    started_at: datetime
    seconds: float
    targets: list[TargetInfo]
    units: list[UnitReport]
    checks: list[PartitionCheck] = Field(default_factory=list)
    groups: list[GroupTranslation] = Field(default_factory=list)
    preflight: str = Field(default="none", description="What was checked before anything was produced.")
    progress: list[TargetProgress] = Field(
        default_factory=list, description="On failure: per unit, what is committed in the target."
    )
    resume: str | None = Field(default=None, description="On failure: how to resume.")
    notes: list[str] = Field(default_factory=list, description="What could not be restored, and warnings.")
    schemas: list[str] = Field(
        default_factory=list,
        description="The backup's registry schemas: source id, subjects, and the target's id (or kept).",
    )
    access: AccessDiff | None = Field(
        default=None,
        description="'restore.acls' / 'restore.users': each recorded binding's and user's change on the "
        "target (created once the records are restored; in a dry run, what would be).",
    )

    @property
    def ok(self) -> bool:
        return all(u.status != "failed" for u in self.units) and all(c.ok for c in self.checks)

    @property
    def records(self) -> int:
        return sum(u.records for u in self.units)

    @property
    def bytes(self) -> int:
        return sum(u.bytes for u in self.units)


class RestoreFailed(RestoreError):  # noqa: N818 - it is the restore's outcome, not a bug class
    """A unit or a check failed; `report` says what is done (and committed), `cause` why."""

    def __init__(self, report: RestoreReport, cause: BaseException) -> None:
        self.report = report
        self.cause = cause
        failed = [u.unit for u in report.units if u.status == "failed"]
        super().__init__(f"restore {report.restore_id} failed ({', '.join(failed) or 'check'}): {cause}")


# --- from the plan and the tasks' outcomes -------------------------------------------------------


def records_of(obj: RestoreObject) -> int:
    """An object's record count; without a manifest, a guess from its size (for the `auto` runner)."""
    if obj.record_count is not None:
        return obj.record_count
    return (obj.size or 0) // 100


def _source(plan: RestorePlan, unit: RestoreUnit) -> str:
    return (
        f"{unit.source_topic}/{unit.source_partition}" if unit.source_topic else f"{plan.prefix} (key order)"
    )


def _target(unit: RestoreUnit) -> str:
    return (
        f"{unit.target_topic}/{unit.target_partition if unit.target_partition is not None else unit.routing}"
    )


def planned_units(plan: RestorePlan) -> list[UnitReport]:
    """A dry run's rows: what each unit would restore."""
    return [
        UnitReport(
            unit=u.unit_id,
            source=_source(plan, u),
            target=_target(u),
            status="planned",
            records=sum(o.record_count or 0 for o in u.objects),
            objects=len(u.objects),
        )
        for u in plan.units
    ]


def unit_reports(plan: RestorePlan, outcomes: Sequence[UnitOutcome]) -> list[UnitReport]:
    """Per unit: what it restored, or the error that failed it."""
    reports = []
    for unit, outcome in zip(plan.units, outcomes, strict=True):
        row: dict[str, Any] = {"unit": unit.unit_id, "source": _source(plan, unit), "target": _target(unit)}
        if isinstance(outcome, BaseException):
            reports.append(UnitReport(**row, status="failed", error=f"{type(outcome).__name__}: {outcome}"))
            continue
        reports.append(
            UnitReport(
                **row,
                status="done",
                records=outcome.selected,
                produced=outcome.produced,
                resumed_after=outcome.resumed_after,
                bytes=outcome.bytes,
                objects=outcome.objects,
                seconds=outcome.seconds,
            )
        )
    return reports


def substitution_notes(results: Sequence[UnitResult]) -> list[str]:
    """A note per target topic that received records with the substitute timestamp."""
    by_topic: dict[str, int] = {}
    for result in results:
        if result.timestamps_substituted:
            by_topic[result.target_topic] = (
                by_topic.get(result.target_topic, 0) + result.timestamps_substituted
            )
    return [
        f"{topic}: {count} records with timestamp 0 (1970-01-01T00:00:00Z) were written with timestamp "
        f"{SUBSTITUTE_MS} ('{PROPERTY}'='substitute'); the check expected the substitute"
        for topic, count in sorted(by_topic.items())
    ]


def _expected_records(plan: RestorePlan, unit: RestoreUnit) -> int | None:
    counts = [o.record_count for o in unit.objects]
    if plan.window.active or any(c is None for c in counts):
        return None
    return sum(c or 0 for c in counts)


def target_progress(
    plan: RestorePlan, outcomes: Sequence[UnitOutcome], committed: dict[str, CommittedProgress] | None
) -> tuple[list[TargetProgress], str]:
    """Per unit of a failed restore: complete (the unit finished), not finished (it failed after
    committing all it expected: never called complete), partial, not started (unknown where
    `committed`, the failed units' committed progress, could not be read), and how to resume."""
    rows = []
    for unit, outcome in zip(plan.units, outcomes, strict=True):
        target = _target(unit)
        if not isinstance(outcome, BaseException):
            rows.append(
                TargetProgress(
                    unit=unit.unit_id,
                    target=target,
                    status="complete",
                    committed=outcome.selected,
                    expected=outcome.selected,
                )
            )
            continue
        expected = _expected_records(plan, unit)
        progress = committed.get(unit.unit_id) if committed is not None else None
        if progress is None:
            rows.append(
                TargetProgress(
                    unit=unit.unit_id, target=target, status="unknown", committed=None, expected=expected
                )
            )
            continue
        status: Literal["not finished", "partial", "not started"] = (
            "not started"
            if progress.records == 0
            else "not finished"
            if expected is not None and progress.records >= expected
            else "partial"
        )
        rows.append(
            TargetProgress(
                unit=unit.unit_id, target=target, status=status, committed=progress.records, expected=expected
            )
        )
    tally = {
        s: sum(1 for r in rows if r.status == s)
        for s in ("complete", "not finished", "partial", "not started", "unknown")
    }
    summary = ", ".join(f"{n} {s}" for s, n in tally.items() if n)
    resume = (
        f"{summary} (of {len(rows)}). To resume, remove the cause and run the same restore again (the same "
        "KCQL and options; 'restore.preflight', 'restore.target.nonempty' and 'restore.timestamp.zero' may "
        "differ): restore "
        f"{plan.restore_id} continues each partition after its last committed record, exactly once — "
        "nothing committed is produced again"
    )
    return rows, resume


# --- rendered once ---------------------------------------------------------------------------


def unit_rows(report: RestoreReport) -> list[dict[str, Any]]:
    """The per-unit table: the `restore-partitions` artifact and the command line's table."""
    return [
        {
            "unit": u.unit,
            "source": u.source,
            "target": u.target,
            "status": u.status,
            "records": u.records,
            "resumed after": u.resumed_after,
            "objects": u.objects,
            "bytes": u.bytes,
            "seconds": u.seconds,
            "MB/s": u.mb_per_s if u.mb_per_s is not None else "",
            "error": u.error or "",
        }
        for u in report.units
    ]


def condensed_rows(report: RestoreReport) -> Condensed | None:
    """Past MANY_ROWS units, the table for reading: per target topic totals, then the failed units,
    the slowest and the largest (None: the whole table reads well)."""
    return condensed(
        unit_rows(report),
        topic=lambda row: str(row["target"]).rsplit("/", 1)[0],
        sums=("records", "resumed after", "objects", "bytes", "seconds"),
        largest="records",
        slowest="seconds",
        first=lambda row: row["status"] == "failed",
    )


def _at_most(lines: list[str], what: str, full: bool) -> list[str]:
    """`lines`, or past MANY_ROWS of them (unless `full`) the first TOP_ROWS and how many more."""
    if full or len(lines) <= MANY_ROWS:
        return lines
    return [*lines[:TOP_ROWS], f"- … and {len(lines) - TOP_ROWS} more {what}"]


def summary(report: RestoreReport, full: bool = False) -> str:
    """The summary in markdown (plain enough for a terminal): the `restore-summary` artifact and
    the command line's output. Past MANY_ROWS partitions (unless `full`), its per-partition lists
    are cut to TOP_ROWS lines and a count: what is committed lists the units not complete first."""
    lines = [
        f"# Restore {report.restore_id}{' (dry run)' if report.dry_run else ''}",
        f"- from: `s3://{report.bucket}/{report.prefix}` backups {', '.join(report.backup_ids) or '(no manifest)'}",
        f"- format: {report.format}, lossless: {report.lossless}",
        f"- pre-flight: {report.preflight}",
        "- targets: "
        + ", ".join(
            f"{t.name} ({t.partitions} partitions{' created' if t.created else ''})" for t in report.targets
        ),
        f"- records: {report.records}, bytes: {report.bytes}, seconds: {report.seconds}",
        f"- checked partitions: {sum(1 for c in report.checks if c.ok)}/{len(report.checks)} "
        f"({sum(1 for c in report.checks if c.digest_compared)} by records digest)",
    ]
    if report.schemas:
        lines += ["", "## Registry schemas", *(f"- {line}" for line in report.schemas)]
    if report.groups:
        lines += [
            "",
            "## Consumer groups",
            *_at_most(
                [
                    f"- {g.group} {g.topic}/{g.partition}: {g.source_offset} → {g.target_offset}"
                    for g in report.groups
                ],
                "partitions' offsets translated",
                full,
            ),
        ]
    if report.access is not None:
        lines += ["", "## Access rules", report.access.headline(report.dry_run)]
        lines += _at_most([f"- {line}" for line in report.access.lines()], "bindings and users", full)
    if report.progress:
        committed = [f"- {p.describe()}" for p in report.progress]
        if not full and len(committed) > MANY_ROWS:  # the units not complete, then how many are
            pending = [f"- {p.describe()}" for p in report.progress if p.status != "complete"]
            complete = len(report.progress) - len(pending)
            committed = pending[:TOP_ROWS]
            if len(pending) > TOP_ROWS:
                committed.append(f"- … and {len(pending) - TOP_ROWS} more units not complete")
            committed.append(f"- {complete} units complete (the counts: Resume)")
        lines += ["", "## What is committed", *committed]
    if report.resume:
        lines += ["", "## Resume", report.resume]
    if report.notes:
        lines += ["", "## Notes", *(f"- {n}" for n in report.notes)]
    return "\n".join(lines)


def publish(report: RestoreReport) -> None:
    """The report as the flow run's artifacts: the unit table, past MANY_ROWS units the failed,
    slowest and largest of them, and the summary."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    create_table_artifact(
        table=unit_rows(report), key="restore-partitions", description=f"Restore {report.restore_id}"
    )
    if (short := condensed_rows(report)) is not None:
        create_table_artifact(
            table=short.rows,
            key="restore-partitions-slowest-largest",
            description=f"Restore {report.restore_id}: the failed, slowest and largest {len(short.rows)} of "
            f"{short.of} units (all of them: the restore-partitions artifact)",
        )
    create_markdown_artifact(key="restore-summary", markdown=summary(report))


def restore_report(
    plan: RestorePlan,
    targets: Sequence[TargetInfo],
    units: list[UnitReport],
    *,
    dry_run: bool,
    started_at: datetime,
    seconds: float,
    notes: Sequence[str] = (),
    checks: Sequence[PartitionCheck] = (),
    groups: Sequence[GroupTranslation] = (),
    progress: Sequence[TargetProgress] = (),
    resume: str | None = None,
    access: AccessDiff | None = None,
) -> RestoreReport:
    """The report of a restore of `plan` into `targets`; its notes are the plan's, the targets'
    warnings, then `notes`."""
    return RestoreReport(
        restore_id=plan.restore_id,
        bucket=plan.bucket,
        prefix=plan.prefix,
        backup_ids=list(plan.backup_ids),
        format=plan.format,
        lossless=plan.lossless,
        dry_run=dry_run,
        started_at=started_at,
        seconds=round(seconds, 3),
        targets=list(targets),
        units=units,
        checks=list(checks),
        groups=list(groups),
        preflight=plan.preflight,
        progress=list(progress),
        resume=resume,
        notes=[*plan.notes, *(w for t in targets for w in t.warnings), *notes],
        schemas=schema_lines(plan, dry_run),
        access=access,
    )


def schema_lines(plan: RestorePlan, dry_run: bool) -> list[str]:
    """One line per schema the backup holds: what became of its id in the target registry."""
    lines = []
    for schema in plan.schemas:
        subjects = ", ".join(f"{v.subject} v{v.version}" for v in schema.versions) or "no subject"
        if plan.schema_ids == "keep" or not plan.wire_sides:
            fate = "id kept"
        elif schema.id in plan.schema_id_map:
            fate = f"→ target id {plan.schema_id_map[schema.id]}"
        else:
            fate = "to be registered" if dry_run else "not registered"
        lines.append(f"id {schema.id} ({subjects}; {'/'.join(schema.used_by)}): {fate}")
    return lines
