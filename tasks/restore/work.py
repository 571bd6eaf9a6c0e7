"""A restore's work units: the plan's units (source partitions) packed into the units one Prefect
task run restores (layout.work_units, by each unit's records and bytes), so that the task runs,
transactional producers and transactions grow with the data and the workers, not with the
partitions.

A work unit restores its units one after another with one transactional producer, under the id
of its slot (its index among the run's work units, tasks.restore.writer.slot_id); a transaction
spans units (tasks.restore.produce.WorkTransaction) and commits each one's progress where
layout.restore.progress keeps it (per unit: its own offset), so exactly-once resumption stays per
unit whatever the grouping of the run that resumes. Before any work unit starts,
tasks.restore.fence aborts what earlier runs left open and says where the units' progress is kept.

- A broker outage is ridden out: the work unit starts again (each unit after its committed
  count) with a fresh producer, until it goes `recovery_s` without progress. A unit that alone
  writes its target partition starts after what that partition holds when a broker's lost
  transaction marker left its committed count a transaction away (tasks.restore.reconcile).
- A unit whose data fails (a corrupt object, an ordering violation, a target too small) fails
  alone: the open transaction is aborted and the work unit starts again without it, so the units
  whose last records that transaction held are produced again and the units after it go on.
- A fatal or non-retryable Kafka failure, a stop request: every unit not yet done fails with it.

`restore_work_unit` is the plain function, `restore_work_unit_task` its thin task;
`restore_units` is the flow's step: fence, then every work unit on the run's task runner, one
outcome per unit of the plan.
"""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from core.errors import KafkaError
from layout.restore.plan import RestorePlan, RestoreUnit
from layout.restore.progress import progress_keys
from layout.work_units import Part, WorkUnit, pack
from tasks.restore.committed import committed, high_watermarks
from tasks.restore.decode import unit_records
from tasks.restore.errors import RestoreError, RestoreStalledError, TransactionFatalError
from tasks.restore.fence import fence_task
from tasks.restore.produce import RECOVERY_S, ProgressCallback, UnitResult, UnitRun, WorkTransaction
from tasks.restore.reconcile import reconciled_progress
from tasks.restore.report import UnitOutcome, records_of
from tasks.restore.target import TargetInfo
from tasks.restore.writer import TransactionalWriter, UnitProgress, slot_id
from tasks.runtime import shutdown
from tasks.runtime.progress import announce
from tasks.runtime.retry import RETRY_OPTIONS
from tasks.runtime.task_runners import run_tasks
from tasks.services.errors import KbackupError, is_retryable
from tasks.services.kafka.admin import admin_client
from tasks.services.object_store.prefetch import Prefetch

if TYPE_CHECKING:
    from tasks.services.object_store import ObjectStore

log = logging.getLogger(__name__)


def unit_part(unit: RestoreUnit) -> Part:
    """A unit as the packer sees it: its source partition (its target where it has none) and
    its objects' records and bytes."""
    return Part(
        topic=unit.source_topic or unit.target_topic,
        partition=unit.source_partition if unit.source_partition is not None else unit.target_partition or 0,
        records=sum(records_of(o) for o in unit.objects),
        bytes=sum(o.size or 0 for o in unit.objects),
    )


def pack_units(plan: RestorePlan, workers: int) -> list[WorkUnit[RestoreUnit]]:
    return pack(plan.units, unit_part, workers=workers)


class WorkUnitFailed(RestoreError):  # noqa: N818 - it is a work unit's outcome, not a bug class
    """Some units of a work unit failed: `outcomes` holds each unit's result or error, in the work
    unit's order. Pickles (for a process pool) with its units' errors rebuilt attribute for
    attribute, even those whose constructor takes other arguments than their message."""

    def __init__(self, name: str, outcomes: Sequence[UnitOutcome]) -> None:
        self.name = name
        self.outcomes = list(outcomes)
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        super().__init__(
            f"restore of {name}: {len(failed)} of {len(outcomes)} partitions failed, the first with "
            f"{type(failed[0]).__name__}: {failed[0]}"
            if failed
            else f"restore of {name}: no partition failed"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (_work_unit_failed, (self.name, [_portable(o) for o in self.outcomes]))


def _portable(outcome: UnitOutcome) -> Any:
    if not isinstance(outcome, BaseException):
        return outcome
    try:
        pickle.loads(pickle.dumps(outcome))
    except Exception:  # noqa: BLE001 - rebuilt below instead
        return ("exception", type(outcome), outcome.args, dict(vars(outcome)))
    return outcome


def _work_unit_failed(name: str, outcomes: list[Any]) -> WorkUnitFailed:
    rebuilt: list[UnitOutcome] = []
    for outcome in outcomes:
        if isinstance(outcome, tuple) and outcome and outcome[0] == "exception":
            _, kind, args, attributes = outcome
            error = kind.__new__(kind)
            BaseException.__init__(error, *args)
            vars(error).update(attributes)
            outcome = error
        rebuilt.append(outcome)
    return WorkUnitFailed(name, rebuilt)


@dataclass
class _Member:
    """One unit of a work unit across its attempts."""

    unit: RestoreUnit
    result: UnitResult | None = None  # done: its last records committed
    failure: BaseException | None = None
    resumed_from: int | None = None  # its committed count when this run first read it
    committed: int = 0
    committed_bytes: int = 0

    @property
    def open(self) -> bool:
        return self.result is None and self.failure is None


class _UnitFailed(Exception):  # noqa: N818 - internal signal
    """A unit's own data failed it; the work unit goes on without it."""

    def __init__(self, member: _Member, cause: BaseException) -> None:
        self.member = member
        self.cause = cause
        super().__init__(str(cause))


def fails_unit_alone(exc: BaseException) -> bool:
    """Whether an error is about one unit's data (its objects, their order, its target), not
    about the work unit's producer or the cluster."""
    return (
        isinstance(exc, KbackupError)
        and not is_retryable(exc)
        and not isinstance(
            exc, KafkaError | RestoreStalledError | TransactionFatalError | shutdown.RunInterrupted
        )
    )


def restore_work_unit(
    plan: RestorePlan,
    units: Sequence[RestoreUnit],
    slot: int,
    kafka_config: dict[str, Any],
    store: ObjectStore,
    sizes: dict[str, int],
    grow: dict[str, bool] | None = None,
    on_progress: Callable[[RestoreUnit], ProgressCallback | None] | None = None,
    recovery_s: float = RECOVERY_S,
    name: str | None = None,
) -> list[UnitResult]:
    """Produce the units' selected records into their targets, each resuming after what an
    earlier run of the same restore committed of it; `sizes`: each target's partition count,
    `grow`: the targets this restore created (grown to the partitions records name). Returns one
    result per unit, or raises WorkUnitFailed with each unit's result or error (see the module's
    docstring for which failures fail a unit alone)."""
    name = name or f"work unit {slot}"
    members = [_Member(unit) for unit in units]
    targets = ", ".join(sorted({unit.target_topic for unit in units}))
    progress = UnitProgress(targets, name, recovery_s)
    sizes = dict(sizes)  # grown by the units as they go
    attempt = 0
    while any(m.open for m in members):
        try:
            _attempt(
                plan,
                members,
                slot_id(plan, slot),
                kafka_config,
                store,
                sizes,
                grow or {},
                on_progress,
                progress,
            )
        except _UnitFailed as failed:
            failed.member.failure = failed.cause
            log.warning(
                "restore of %s failed: %s; the rest of %s goes on",
                failed.member.unit.unit_id,
                failed.cause,
                name,
            )
        except KbackupError as exc:
            failure: BaseException = exc
            if is_retryable(exc) and not isinstance(exc, RestoreStalledError | TransactionFatalError):
                if not progress.expired():
                    attempt += 1
                    log.warning(
                        "restore of %s into %s: %s; starting again after its %d committed records",
                        name,
                        targets,
                        exc,
                        progress.committed,
                    )
                    try:
                        shutdown.sleep(min(1.0 * attempt, 5.0))
                        continue
                    except shutdown.RunInterrupted as stop:
                        failure = stop
                else:
                    failure = progress.stalled(str(exc))
            for member in members:
                if member.open:
                    member.failure = failure
    outcomes: list[UnitOutcome] = [m.result or m.failure or RuntimeError("not restored") for m in members]
    if any(not isinstance(o, UnitResult) for o in outcomes):
        raise WorkUnitFailed(name, outcomes)
    return [o for o in outcomes if isinstance(o, UnitResult)]


def _attempt(
    plan: RestorePlan,
    members: list[_Member],
    transactional_id: str,
    kafka_config: dict[str, Any],
    store: ObjectStore,
    sizes: dict[str, int],
    grow: dict[str, bool],
    on_progress: Callable[[RestoreUnit], ProgressCallback | None] | None,
    progress: UnitProgress,
) -> None:
    """One pass over the open units with one producer, producing what comes after each one's
    committed count."""
    todo = [m for m in members if m.open]
    writer = TransactionalWriter(kafka_config, transactional_id, progress)
    finished: dict[int, tuple[_Member, UnitResult]] = {}  # id(run): done, waiting for its commit
    member_of: dict[int, _Member] = {}

    def on_commit(runs: list[UnitRun]) -> None:
        for run in runs:
            member = member_of[id(run)]
            member.committed, member.committed_bytes = run.committed_count, run.committed_bytes
            if id(run) in finished:
                member.result = finished.pop(id(run))[1]
        progress.committed = sum(m.committed for m in members)

    try:
        # First fence a killed (or wedged) earlier producer of this slot: init_transactions aborts
        # its open transaction, which otherwise holds the groups' committed offsets (read below).
        writer.init()
        admin = admin_client(kafka_config)
        keys = progress_keys(plan)
        key_of = [keys[(m.unit.target_topic, m.unit.unit_id)] for m in todo]
        found = committed(kafka_config, key_of, admin)
        # a unit alone in its partition resumes after what the partition holds (tasks.restore.reconcile)
        found = reconciled_progress(kafka_config, admin, plan, [m.unit for m in todo], found)
        # Where the units that never began begin: their partitions' high watermarks, asked at once.
        # (a topic this restore created begins at 0: nothing else wrote to it, and a partition
        # created a moment ago may not answer ListOffsets yet)
        fresh = {
            (m.unit.target_topic, p): None
            for m, (_, metadata) in zip(todo, found, strict=True)
            if not metadata and not grow.get(m.unit.target_topic, False)
            for p in _partitions(m.unit, sizes)
        }
        starts: dict[str, dict[int, int]] = {
            topic: dict.fromkeys(range(sizes[topic]), 0)
            for topic in {m.unit.target_topic for m in todo}
            if grow.get(topic, False)
        }
        for (topic, partition), high in high_watermarks(kafka_config, list(fresh), admin).items():
            starts.setdefault(topic, {})[partition] = high
        for member, (done, _) in zip(todo, found, strict=True):
            member.committed = done
            if member.resumed_from is None:
                member.resumed_from = done
        progress.committed = sum(m.committed for m in members)
        progress.moved()
        txn = WorkTransaction(writer, plan.batch, on_commit)
        # the units' objects are fetched ahead of their decoding, a few at a time
        objects = [(o.key, o.size) for m in todo for o in m.unit.objects]
        with Prefetch(store, plan.bucket, objects) as ahead:
            reading = ahead.store()
            for member, (done, metadata), key in zip(todo, found, key_of, strict=True):
                unit, began = member.unit, time.monotonic()
                run = UnitRun(
                    plan,
                    unit,
                    txn,
                    sizes,
                    grow.get(unit.target_topic, False),
                    done,
                    metadata,
                    starts.get(unit.target_topic, {}),
                    member.committed_bytes,
                    member.resumed_from or 0,
                    key=key,
                )
                member_of[id(run)] = member
                callback = on_progress(unit) if on_progress else None
                try:
                    for source in unit_records(reading, plan, unit):
                        shutdown.raise_if_stopping()
                        run.add(source, callback)
                    result = run.finish(callback)
                except KbackupError as exc:
                    if fails_unit_alone(exc):
                        raise _UnitFailed(member, exc) from exc
                    raise
                result = result.model_copy(update={"seconds": round(time.monotonic() - began, 3)})
                if txn.holds(run):
                    finished[id(run)] = (member, result)
                else:
                    member.result = result
        txn.commit()
    except BaseException:
        writer.abort()
        raise
    finally:
        writer.close()


def _partitions(unit: RestoreUnit, sizes: dict[str, int]) -> list[int]:
    if unit.routing == "preserve" and unit.target_partition is not None:
        return [unit.target_partition]
    return list(range(sizes[unit.target_topic]))


@task(name="restore-work-unit", cache_policy=NO_CACHE, task_run_name="restore {name}", **RETRY_OPTIONS)
def restore_work_unit_task(
    plan: RestorePlan,
    units: list[RestoreUnit],
    slot: int,
    name: str,
    sizes: dict[str, int],
    grow: dict[str, bool],
) -> list[UnitResult]:
    from tasks.runtime.progress import flush_progress, report_progress
    from tasks.services.kafka.clients import client_config
    from tasks.services.object_store import open_store

    def on_progress(unit: RestoreUnit) -> ProgressCallback:
        total = sum(o.record_count or 0 for o in unit.objects)

        def report(records: int, written: int) -> None:
            report_progress(
                unit.target_topic, unit.source_partition or 0, records, max(total, records), written
            )

        return report

    try:
        return restore_work_unit(
            plan, units, slot, client_config(), open_store(), sizes, grow, on_progress, name=name
        )
    finally:
        flush_progress()


def restore_units(
    plan: RestorePlan, targets: Sequence[TargetInfo], *, choice: str, concurrency: int
) -> list[UnitOutcome]:
    """Fence earlier runs, then restore every work unit on the chosen task runner; one outcome
    (result or error) per unit of the plan, in the plan's order. A failed fencing fails every unit."""
    works = pack_units(plan, concurrency)
    sizes = {t.name: t.partitions for t in targets}
    try:
        fenced = fence_task(plan, len(works), sizes, frozenset(t.name for t in targets if t.created))
    except KbackupError as exc:
        return [exc for _ in plan.units]
    plan = plan.model_copy(update={"progress": fenced.progress})
    grow = {t.name: t.created for t in targets}
    announce(  # every partition waiting, in the display, until its unit reports it
        (u.target_topic, u.source_partition or 0, sum(o.record_count or 0 for o in u.objects))
        for u in plan.units
    )
    outcomes = run_tasks(
        restore_work_unit_task,
        [
            {
                "plan": plan,
                "units": list(work.items),
                "slot": slot,
                "name": work.name,
                "sizes": sizes,
                "grow": grow,
            }
            for slot, work in enumerate(works)
        ],
        choice=choice,
        concurrency=concurrency,
        records=sum(records_of(o) for unit in plan.units for o in unit.objects),
        description=f"Restore {plan.restore_id}: records produced",
    )
    by_unit: dict[tuple[str, str], UnitOutcome] = {}
    for work, outcome in zip(works, outcomes, strict=True):
        if isinstance(outcome, WorkUnitFailed):
            each: Sequence[UnitOutcome] = outcome.outcomes
        elif isinstance(outcome, BaseException):
            each = [outcome for _ in work.items]
        else:
            each = outcome
        for unit, unit_outcome in zip(work.items, each, strict=True):
            by_unit[(unit.target_topic, unit.unit_id)] = unit_outcome
    return [by_unit[(unit.target_topic, unit.unit_id)] for unit in plan.units]
