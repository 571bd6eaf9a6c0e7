"""The restore flow: discover objects → prepare the target → per-partition produce (exactly once,
resumable) → check → translate consumer groups → report.

Composition only: the work is in tasks/restore_*.py. `run_restore` is the plain pipeline the
flow, the command line and the tests share; the flow runs it with each step as a Prefect task.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from pydantic import BaseModel, Field, field_validator

from flows.runners import TASK_RUNNERS, check_task_runner, run_tasks
from tasks.restore_plan import (
    DEFAULT_BATCH,
    RestoreObject,
    RestorePlan,
    RestoreUnit,
    Selection,
    Window,
    plan_restore,
    plan_restore_task,
)
from tasks.restore_produce import UnitResult, restore_unit, restore_unit_task
from tasks.restore_target import (
    GroupTranslation,
    PartitionCheck,
    TargetInfo,
    check_unit,
    check_unit_task,
    prepare_targets,
    prepare_targets_task,
    read_restored,
    translate_groups,
    translate_groups_task,
)
from tasks.restore_writer import CommittedProgress, committed_progress
from tasks.run_dir import run_dir
from tasks.shutdown import stop_tasks_when_terminated


class RestoreParameters(BaseModel):
    """What one restore does; rendered as a form in the Prefect UI. Fields other than `kcql`
    override the statement's properties when set."""

    kcql: str = Field(
        description="INSERT INTO target SELECT * FROM bucket:prefix [STOREAS …] [LIMIT n] [PROPERTIES(…)]; "
        "INSERT INTO * restores every topic to its original name.",
    )
    target: str | None = Field(default=None, description="Target topic, instead of the statement's.")
    restore_from: str | None = Field(
        default=None, description="Start of the window (inclusive): ISO-8601 time or offset:N (restore.from)."
    )
    restore_to: str | None = Field(
        default=None, description="End of the window (exclusive): ISO-8601 time or offset:N (restore.to)."
    )
    partitions: list[int] | None = Field(
        default=None, description="Source partitions to restore (all when empty)."
    )
    filter: str | None = Field(default=None, description="Partition-key values, e.g. region=EMEA,year=2023.")
    group_prefix: str = Field(default="", description="Prefix for the translated consumer-group names.")
    translate_groups: bool = Field(default=True, description="Commit the backed-up consumer-group offsets.")
    dry_run: bool = Field(default=False, description="Plan and report only: create nothing, produce nothing.")
    check: bool = Field(default=True, description="Consume what was restored and compare digests.")
    concurrency: int = Field(
        default=4, ge=1, le=64, description="Partitions restored at the same time: the task runner's workers."
    )
    task_runner: str = Field(
        default="auto",
        description=f"Where the restores run: {', '.join(TASK_RUNNERS)} (see the README).",
    )

    @field_validator("task_runner")
    @classmethod
    def _known_runner(cls, value: str) -> str:
        return check_task_runner(value)

    @field_validator("kcql")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a KCQL statement is required")
        return value


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
    status: Literal["complete", "partial", "not started", "unknown"]
    committed: int | None = Field(description="Records committed in the target (None: could not be read).")
    expected: int | None = Field(
        description="Records the unit restores (None: unknown before decoding, e.g. with a time window)."
    )

    def describe(self) -> str:
        if self.status == "unknown":
            return f"{self.target}: unknown (the committed progress could not be read)"
        if self.status == "not started":
            return f"{self.target}: not started (0 records committed)"
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

    @property
    def ok(self) -> bool:
        return all(u.status != "failed" for u in self.units) and all(c.ok for c in self.checks)

    @property
    def records(self) -> int:
        return sum(u.records for u in self.units)

    @property
    def bytes(self) -> int:
        return sum(u.bytes for u in self.units)


class RestoreFailed(Exception):  # noqa: N818 - it is the restore's outcome, not a bug class
    """Raised by run_restore when a unit or a check failed; `report` says what is done, `cause` why."""

    def __init__(self, report: RestoreReport, cause: BaseException) -> None:
        self.report = report
        self.cause = cause
        failed = [u.unit for u in report.units if u.status == "failed"]
        super().__init__(f"restore {report.restore_id} failed ({', '.join(failed) or 'check'}): {cause}")


# --- from parameters to a Selection ----------------------------------------------------------


def _bound(text: str | None, spec_bound: Any) -> tuple[int | None, int | None]:
    """(timestamp_ms, offset) of a window bound from a parameter text, else the spec's."""
    if text:
        return parse_bound(text)
    if spec_bound is None:
        return None, None
    return getattr(spec_bound, "timestamp_ms", None), getattr(spec_bound, "offset", None)


def parse_bound(text: str) -> tuple[int | None, int | None]:
    """`offset:N` → (None, N); an ISO-8601 time (or epoch milliseconds) → (ms, None)."""
    text = text.strip()
    if text.lower().startswith("offset:"):
        return None, int(text.split(":", 1)[1])
    if text.lstrip("-").isdigit():
        return int(text), None
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000), None


def _parse_filter(text: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for part in text.split(","):
        if part.strip():
            name, sep, value = part.partition("=")
            if not sep:
                raise ValueError(f"restore filter {part!r}: expected name=value")
            pairs.append((name.strip(), value.strip()))
    return tuple(pairs)


def selection_of(params: RestoreParameters) -> Selection:
    """The parsed statement plus the parameters' overrides; raises KcqlError/ValueError on bad input."""
    from kcql import parse_restore

    specs = parse_restore(params.kcql)
    spec = specs[0] if isinstance(specs, (list, tuple)) else specs
    if isinstance(specs, (list, tuple)) and len(specs) != 1:
        raise ValueError(f"a restore takes exactly one statement, got {len(specs)}")
    from_ts, from_off = _bound(params.restore_from, getattr(spec, "restore_from", None))
    to_ts, to_off = _bound(params.restore_to, getattr(spec, "restore_to", None))
    envelope = getattr(spec, "envelope", None)
    fmt = getattr(spec, "format", None)
    partitions = params.partitions if params.partitions else getattr(spec, "partitions", None)
    return Selection(
        target_topic=params.target or spec.target_topic,
        bucket=spec.bucket,
        prefix=spec.prefix or "",
        format=(getattr(fmt, "value", fmt) if fmt is not None else None),
        envelope=getattr(envelope, "enabled", None) if envelope is not None else None,
        envelope_parts=(
            (envelope.key, envelope.value, envelope.headers, envelope.metadata)
            if envelope is not None
            else (True,) * 4
        ),
        key_converter=getattr(spec, "key_converter", None) or "bytes",
        value_converter=getattr(spec, "value_converter", None) or "bytes",
        source_topic=getattr(spec, "source_topic", None),
        window=Window(from_timestamp=from_ts, to_timestamp=to_ts, from_offset=from_off, to_offset=to_off),
        preflight=getattr(spec, "preflight", None) or "quick",
        target_nonempty=getattr(spec, "target_nonempty", None) or "refuse",
        partitions=tuple(partitions) if partitions else None,
        filter=_parse_filter(params.filter) if params.filter else tuple(getattr(spec, "filter", None) or ()),
        partitioner=getattr(spec, "partitioner", None) or "preserve",
        batch=getattr(spec, "batch_limit", None) or DEFAULT_BATCH,
        group_prefix=params.group_prefix
        or (getattr(spec, "properties", None) or {}).get("restore.group.prefix", "")
        or "",
        translate_groups=params.translate_groups,
    )


# --- the pipeline ----------------------------------------------------------------------------

UnitOutcome = UnitResult | BaseException


@dataclass(frozen=True)
class Steps:
    """How run_restore performs each step: plain functions by default, Prefect tasks in the flow."""

    plan: Callable[[Selection], RestorePlan]
    prepare: Callable[[RestorePlan, bool], list[TargetInfo]]
    restore: Callable[[RestorePlan, Sequence[RestoreUnit], dict[str, TargetInfo], int], list[UnitOutcome]]
    check: Callable[[Sequence[UnitResult], int], list[PartitionCheck]]
    translate: Callable[[RestorePlan, list[UnitResult], list[PartitionCheck], bool], list[GroupTranslation]]
    progress: Callable[[RestorePlan, Sequence[RestoreUnit]], dict[str, CommittedProgress]]


def _plain_steps() -> Steps:
    from kbackup.settings import KafkaSettings
    from tasks.s3 import s3_client

    config = KafkaSettings().client_config()
    s3 = s3_client()

    def restore_all(
        plan: RestorePlan, units: Sequence[RestoreUnit], targets: dict[str, TargetInfo], concurrency: int
    ) -> list[UnitOutcome]:
        def one(unit: RestoreUnit) -> UnitOutcome:
            target = targets[unit.target_topic]
            try:
                return restore_unit(plan, unit, config, s3, target.partitions, grow_target=target.created)
            except Exception as exc:  # noqa: BLE001 - collected and reported per unit
                return exc

        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            return list(pool.map(one, units))

    def check_all(results: Sequence[UnitResult], concurrency: int) -> list[PartitionCheck]:
        return check_results(config, results, lambda units: [c for u in units for c in check_unit(config, u)])

    return Steps(
        plan=lambda selection: plan_restore(s3, selection),
        prepare=lambda plan, dry_run: prepare_targets(plan, config, dry_run),
        restore=restore_all,
        check=check_all,
        translate=lambda plan, results, checks, dry_run: translate_groups(
            plan, results, checks, config, dry_run
        ),
        progress=lambda plan, units: committed_progress(config, plan, units),
    )


def _prefect_steps(task_runner: str = "auto") -> Steps:
    def restore_all(
        plan: RestorePlan, units: Sequence[RestoreUnit], targets: dict[str, TargetInfo], concurrency: int
    ) -> list[UnitOutcome]:
        parameters = [
            {
                "plan": plan,
                "unit": unit,
                "target_partitions": targets[unit.target_topic].partitions,
                "grow_target": targets[unit.target_topic].created,
            }
            for unit in units
        ]
        return run_tasks(
            restore_unit_task,
            parameters,
            choice=task_runner,
            concurrency=concurrency,
            records=sum(_records_of(o) for unit in units for o in unit.objects),
            description=f"Restore {plan.restore_id}: records produced",
        )

    def check_all(results: Sequence[UnitResult], concurrency: int) -> list[PartitionCheck]:
        from kbackup.settings import KafkaSettings

        def check_units(units: list[UnitResult]) -> list[PartitionCheck]:
            # Each unit's target partitions are read back in parallel, on the restore's runner.
            outcomes = run_tasks(
                check_unit_task,
                [{"result": unit} for unit in units],
                choice=task_runner,
                concurrency=concurrency,
                records=sum(p.records for unit in units for p in unit.partitions.values()),
                description="Check: records read back",
            )
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
            return [check for outcome in outcomes for check in outcome]

        return check_results(KafkaSettings().client_config(), results, check_units)

    return Steps(
        plan=plan_restore_task,
        prepare=lambda plan, dry_run: prepare_targets_task(plan, dry_run),
        restore=restore_all,
        check=check_all,
        translate=lambda plan, results, checks, dry_run: translate_groups_task(
            plan, results, checks, dry_run
        ),
        progress=_progress_now,
    )


def _records_of(obj: RestoreObject) -> int:
    """An object's record count; without a manifest, a guess from its size (for the `auto` runner)."""
    if obj.record_count is not None:
        return obj.record_count
    return (obj.size or 0) // 100


def _progress_now(plan: RestorePlan, units: Sequence[RestoreUnit]) -> dict[str, CommittedProgress]:
    from kbackup.settings import KafkaSettings

    return committed_progress(KafkaSettings().client_config(), plan, units)


def check_results(
    config: dict[str, Any],
    results: Sequence[UnitResult],
    check_units: Callable[[list[UnitResult]], list[PartitionCheck]],
) -> list[PartitionCheck]:
    """Digest checks where one unit alone wrote a target partition (`check_units` reads them
    back); record counts where several did."""
    writers: dict[tuple[str, int], list[UnitResult]] = {}
    for result in results:
        for partition in result.partitions:
            writers.setdefault((result.target_topic, partition), []).append(result)
    alone = [r for r in results if all(len(writers[(r.target_topic, p)]) == 1 for p in r.partitions)]
    checks: list[PartitionCheck] = check_units(alone) if alone else []
    for (topic, partition), units in sorted(writers.items()):
        if len(units) > 1:
            start = min(u.partitions[partition].start_offset for u in units)
            expected = sum(u.partitions[partition].records for u in units)
            count, _, _, end = read_restored(config, topic, partition, start, None)
            ok = count == expected
            checks.append(
                PartitionCheck(
                    topic=topic,
                    partition=partition,
                    expected_records=expected,
                    records=count,
                    digest_compared=False,
                    ok=ok,
                    end_offset=end,
                    problem=None
                    if ok
                    else f"{count} records in the target since the restore began, {expected} restored",
                )
            )
    return checks


def _describe_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _expected_records(plan: RestorePlan, unit: RestoreUnit) -> int | None:
    counts = [o.record_count for o in unit.objects]
    if plan.window.active or any(c is None for c in counts):
        return None
    return sum(c or 0 for c in counts)


def target_progress(
    plan: RestorePlan,
    outcomes: Sequence[UnitOutcome],
    read: Callable[[RestorePlan, Sequence[RestoreUnit]], dict[str, CommittedProgress]],
) -> tuple[list[TargetProgress], str]:
    """Per unit of a failed restore: complete / partial / not started, and how to resume."""
    failed = [u for u, o in zip(plan.units, outcomes, strict=True) if isinstance(o, BaseException)]
    try:
        committed: dict[str, CommittedProgress] | None = read(plan, failed) if failed else {}
    except Exception:  # noqa: BLE001 - the cluster may be what failed; say what is known
        committed = None
    rows = []
    for unit, outcome in zip(plan.units, outcomes, strict=True):
        target = f"{unit.target_topic}/{unit.target_partition if unit.target_partition is not None else unit.routing}"
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
        status: Literal["complete", "partial", "not started"] = (
            "not started"
            if progress.records == 0
            else "complete"
            if expected is not None and progress.records >= expected
            else "partial"
        )
        rows.append(
            TargetProgress(
                unit=unit.unit_id, target=target, status=status, committed=progress.records, expected=expected
            )
        )
    tally = {
        s: sum(1 for r in rows if r.status == s) for s in ("complete", "partial", "not started", "unknown")
    }
    summary = ", ".join(f"{n} {s}" for s, n in tally.items() if n)
    resume = (
        f"{summary} (of {len(rows)}). To resume, remove the cause and run the same restore again (the same "
        "KCQL and options; 'restore.preflight' and 'restore.target.nonempty' may differ): restore "
        f"{plan.restore_id} continues each partition after its last committed record, exactly once — "
        "nothing committed is produced again"
    )
    return rows, resume


def run_restore(params: RestoreParameters, steps: Steps | None = None) -> RestoreReport:
    """Restore as the parameters say; returns the report, or raises RestoreFailed (with the report
    and the first failure as `cause`) when a partition or a check failed. Errors found before
    anything is produced (bad input, missing manifest or object, too few target partitions)
    are raised as themselves."""
    started_at = datetime.now(UTC)
    started = time.monotonic()
    selection = selection_of(params)
    steps = steps or _plain_steps()
    plan = steps.plan(selection)
    targets = steps.prepare(plan, params.dry_run)
    notes = list(plan.notes) + [w for t in targets for w in t.warnings]

    def report(
        units: list[UnitReport],
        checks: list[PartitionCheck],
        groups: list[GroupTranslation],
        progress: list[TargetProgress] | None = None,
        resume: str | None = None,
    ) -> RestoreReport:
        return RestoreReport(
            restore_id=plan.restore_id,
            bucket=plan.bucket,
            prefix=plan.prefix,
            backup_ids=list(plan.backup_ids),
            format=plan.format,
            lossless=plan.lossless,
            dry_run=params.dry_run,
            started_at=started_at,
            seconds=round(time.monotonic() - started, 3),
            targets=targets,
            units=units,
            checks=checks,
            groups=groups,
            preflight=plan.preflight,
            progress=progress or [],
            resume=resume,
            notes=notes,
        )

    def source(unit: RestoreUnit) -> str:
        return (
            f"{unit.source_topic}/{unit.source_partition}"
            if unit.source_topic
            else f"{plan.prefix} (key order)"
        )

    if params.dry_run:
        planned = [
            UnitReport(
                unit=u.unit_id,
                source=source(u),
                target=f"{u.target_topic}/{u.target_partition if u.target_partition is not None else u.routing}",
                status="planned",
                records=sum(o.record_count or 0 for o in u.objects),
                objects=len(u.objects),
            )
            for u in plan.units
        ]
        return report(planned, [], [])

    outcomes = steps.restore(plan, plan.units, {t.name: t for t in targets}, params.concurrency)
    units: list[UnitReport] = []
    results: list[UnitResult] = []
    failures: list[BaseException] = []
    for unit, outcome in zip(plan.units, outcomes, strict=True):
        target = f"{unit.target_topic}/{unit.target_partition if unit.target_partition is not None else unit.routing}"
        if isinstance(outcome, BaseException):
            failures.append(outcome)
            units.append(
                UnitReport(
                    unit=unit.unit_id,
                    source=source(unit),
                    target=target,
                    status="failed",
                    error=_describe_error(outcome),
                )
            )
            continue
        results.append(outcome)
        units.append(
            UnitReport(
                unit=unit.unit_id,
                source=source(unit),
                target=target,
                status="done",
                records=outcome.selected,
                produced=outcome.produced,
                resumed_after=outcome.resumed_after,
                bytes=outcome.bytes,
                objects=outcome.objects,
                seconds=outcome.seconds,
            )
        )
    if failures:
        progress, resume = target_progress(plan, outcomes, steps.progress)
        raise RestoreFailed(report(units, [], [], progress, resume), failures[0])
    checks = steps.check(results, params.concurrency) if params.check else []
    failed_checks = [c for c in checks if not c.ok]
    if failed_checks:
        from tasks.restore_errors import RestoreCheckError

        c = failed_checks[0]
        raise RestoreFailed(
            report(units, checks, []), RestoreCheckError(c.topic, c.partition, c.problem or "mismatch")
        )
    groups: list[GroupTranslation] = []
    if plan.consumer_groups and params.check:
        groups = steps.translate(plan, results, checks, params.dry_run)
    elif plan.consumer_groups:
        notes.append("consumer-group offsets were not translated: translation needs the check step")
    return report(units, checks, groups)


# --- the flow --------------------------------------------------------------------------------


def publish(report: RestoreReport) -> None:
    rows = [
        {
            "unit": u.unit,
            "source": u.source,
            "target": u.target,
            "status": u.status,
            "records": u.records,
            "bytes": u.bytes,
            "objects": u.objects,
            "seconds": u.seconds,
            "MB/s": u.mb_per_s,
            "resumed after": u.resumed_after,
        }
        for u in report.units
    ]
    create_table_artifact(table=rows, key="restore-partitions", description=f"Restore {report.restore_id}")
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
    if report.groups:
        lines += [
            "",
            "## Consumer groups",
            *(
                f"- {g.group} {g.topic}/{g.partition}: {g.source_offset} → {g.target_offset}"
                for g in report.groups
            ),
        ]
    if report.progress:
        lines += ["", "## What is committed", *(f"- {p.describe()}" for p in report.progress)]
    if report.resume:
        lines += ["", "## Resume", report.resume]
    if report.notes:
        lines += ["", "## Notes", *(f"- {n}" for n in report.notes)]
    create_markdown_artifact(key="restore-summary", markdown="\n".join(lines))


@flow(name="restore", log_prints=True)
def restore_flow(params: RestoreParameters) -> RestoreReport:
    """Restore Kafka topics from an S3 backup as the KCQL says, exactly once and resumable."""
    logger = get_run_logger()
    try:
        with run_dir(), stop_tasks_when_terminated():
            report = run_restore(params, _prefect_steps(params.task_runner))
    except RestoreFailed as failed:
        publish(failed.report)
        raise
    for note in report.notes:
        logger.warning(note)
    publish(report)
    logger.info(
        "restore %s: %s records into %s",
        report.restore_id,
        report.records,
        ", ".join(t.name for t in report.targets),
    )
    return report
