"""What a run of a restore does before any of its work units starts: fence what earlier runs
left open, and record where the restore began, how many slots its runs use and where its units
keep their progress.

A run's work units produce under their slots' transactional ids (tasks.restore.writer.slot_id,
slots 0..N-1). A rerun may group the units differently (another --concurrency, another task
runner), so a slot the earlier run used may now hold other units, or not exist at all, and no
producer of the rerun would fence it: the open transaction of a killed run would hold its target
partitions' last stable offset, and its units' committed offsets (UNSTABLE_OFFSET_COMMIT), until
the broker's transaction timeout. So the restore keeps the largest slot count any of its runs
used in its own consumer group (restore_group: the metadata of its offset on partition 0 of its
first target, layout.restore.progress.anchor), recorded before any work unit of a run starts,
and every run begins with `init_transactions` of a throwaway producer under each slot id
recorded (in parallel threads, bounded), which aborts what a killed run left open. Slots beyond
the recorded count were never used: a work unit's own producer fences its slot when it starts.

The same metadata records the restore's progress layout (layout.restore.progress), decided by
its first run: `shared` (the units that alone write their partition keep their progress in one
progress group) for a restore this version begins; `units` (every unit in its own group) for one
an earlier version began: it recorded slots without a layout, or, before work units, left
progress in the units' own groups. Every later run reads and keeps it, so a restore resumes from
what it committed, wherever that is.

The same group's offsets say where in each target partition the restore began: the high
watermarks before its first run produced, recorded once. A unit's progress says where the unit
began only from its first commit on (tasks.restore.produce), so after a run killed in its first
transactions, these tell the pre-flight (tasks.restore.target.refuse_foreign_records) that the
aborted records there are the restore's own, not someone else's.

Restores made before work units produced under one transactional id per unit
(tasks.restore.writer.unit_names). The first run under work units (no slot count recorded yet)
into targets it did not create also fences the ids of the units whose offsets an open
transaction holds, and of those that began (such a run may have produced records before it sent
their offsets), so that a restore killed by an older kbackup resumes.

`fence_earlier_runs` is the plain function; `fence_task` its thin retryable task.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from confluent_kafka import KafkaException, Producer, TopicPartition
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from layout.restore.plan import ProgressLayout, RestorePlan
from layout.restore.progress import anchor, progress_layout, restore_group, unit_key
from tasks.restore.committed import read_progress, restore_group_offsets
from tasks.restore.writer import producer_config, slot_id, unit_names
from tasks.runtime.retry import RETRY_OPTIONS
from tasks.services.kafka.admin import (
    admin_client,
    commit_group_offsets,
    kafka_failure,
    partition_offsets,
)
from tasks.services.kafka.calls import (
    LOOKUP_TIMEOUT_S,
    TXN_TIMEOUT_S,
    WATCHDOG_GRACE_S,
    CallStalledError,
    abandon,
    bounded_call,
    dispose,
)

FENCE_THREADS = 8  # transactional ids fenced at once


class Fenced(BaseModel):
    """What a run fenced before its work units started."""

    slots: int = Field(description="The slot count recorded for the restore (the largest any run used).")
    transactional_ids: list[str] = Field(default_factory=list, description="The ids fenced.")
    progress: ProgressLayout = Field(
        description="Where the units keep their progress (layout.restore.progress), as recorded."
    )


def fence_earlier_runs(
    kafka_config: dict[str, Any],
    plan: RestorePlan,
    slots: int,
    sizes: dict[str, int],
    created: frozenset[str] = frozenset(),
) -> Fenced:
    """Fence every transactional id an earlier run of the restore may have left a transaction open
    under, and record that this run uses `slots` slots and where the restore begins in the target
    partitions it writes (`sizes`: each target's partition count; see the module's docstring).
    `created`: the targets this run created: no earlier run wrote to them, and they begin at 0
    (a partition of a topic created a moment ago may not answer ListOffsets yet)."""
    admin = admin_client(kafka_config)
    first = anchor(plan)
    partitions = [first, *_written(plan, sizes)]
    recorded = restore_group_offsets(admin, kafka_config, plan, partitions)
    metadata = recorded[first][1] if first in recorded else None
    used = _slots_of(recorded.get(first))
    ids = [slot_id(plan, slot) for slot in range(used or 0)]
    older: list[str] = []
    if used is None and not created >= {target.name for target in plan.targets}:
        older = _units_begun_before_work_units(admin, kafka_config, plan)
    layout = progress_layout(metadata, older_progress=bool(older))
    ids += older
    fence(kafka_config, ids)
    missing = [where for where in dict.fromkeys(partitions) if where not in recorded]
    if missing or slots > (used or 0) or (metadata or {}).get("progress") != layout:
        starts = {where: offset for where, (offset, _) in recorded.items()}
        asked = [where for where in missing if where[0] not in created]
        starts.update({where: 0 for where in missing if where[0] in created})
        starts.update(partition_offsets(admin, kafka_config, asked, "latest"))
        _record(admin, kafka_config, plan, first, starts, missing, max(slots, used or 0), layout)
    return Fenced(slots=max(slots, used or 0), transactional_ids=ids, progress=layout)


def _written(plan: RestorePlan, sizes: dict[str, int]) -> list[tuple[str, int]]:
    """The target partitions the plan's units write (all of a target's, unless 'preserve')."""
    written: set[tuple[str, int]] = set()
    for unit in plan.units:
        if unit.routing == "preserve" and unit.target_partition is not None:
            written.add((unit.target_topic, unit.target_partition))
        else:
            written.update((unit.target_topic, p) for p in range(sizes.get(unit.target_topic, 0)))
    return sorted(written)


def _slots_of(recorded: tuple[int, dict[str, Any]] | None) -> int | None:
    """The recorded slot count; None when no run under work units has recorded one."""
    if recorded is None or "slots" not in recorded[1]:
        return None
    return int(recorded[1]["slots"])


def _units_begun_before_work_units(admin: Any, config: dict[str, Any], plan: RestorePlan) -> list[str]:
    """The per-unit transactional ids of units whose offsets an open transaction holds, or that
    began: what a restore by an older kbackup may have left open."""
    reads = [unit_key(plan, unit) for unit in plan.units]
    found = read_progress(admin, config, reads, require_stable=True)
    return [
        unit_names(plan, unit)[0]
        for unit, progress in zip(plan.units, found, strict=True)
        if progress is None or progress[1]
    ]


def _record(
    admin: Any,
    config: dict[str, Any],
    plan: RestorePlan,
    first: tuple[str, int],
    starts: dict[tuple[str, int], int],
    missing: list[tuple[str, int]],
    slots: int,
    layout: ProgressLayout,
) -> None:
    """Commit the restore group's offsets: the missing starts, and the anchor's with the slots
    and the progress layout."""
    group = restore_group(plan)
    slot_metadata = json.dumps({"slots": slots, "progress": layout}, separators=(",", ":"))
    offsets = [TopicPartition(t, p, starts[(t, p)]) for t, p in missing if (t, p) != first]
    offsets.append(TopicPartition(*first, starts[first], metadata=slot_metadata))
    commit_group_offsets(admin, config, {group: offsets}, LOOKUP_TIMEOUT_S)


def fence(config: dict[str, Any], transactional_ids: Sequence[str]) -> None:
    """`init_transactions` under each id (FENCE_THREADS at a time): the coordinator aborts the
    transaction an earlier producer left open and fences that producer."""
    if not transactional_ids:
        return
    with ThreadPoolExecutor(min(FENCE_THREADS, len(transactional_ids)), "kbackup: fence") as pool:
        for future in [pool.submit(_fence_one, config, tid) for tid in transactional_ids]:
            future.result()


def _fence_one(config: dict[str, Any], transactional_id: str) -> None:
    operation = f"fence transactional id {transactional_id}"
    try:
        producer = Producer(producer_config(config, transactional_id))
    except KafkaException as exc:
        raise kafka_failure(operation, config, exc) from exc
    try:
        bounded_call(
            operation, lambda: producer.init_transactions(TXN_TIMEOUT_S), TXN_TIMEOUT_S + WATCHDOG_GRACE_S
        )
    except CallStalledError:
        abandon(producer)
        raise
    except KafkaException as exc:
        dispose(producer)
        raise kafka_failure(operation, config, exc) from exc
    dispose(producer)


@task(name="fence-earlier-runs", cache_policy=NO_CACHE, **RETRY_OPTIONS)
def fence_task(plan: RestorePlan, slots: int, sizes: dict[str, int], created: frozenset[str]) -> Fenced:
    from prefect import get_run_logger

    from tasks.services.kafka.clients import client_config

    fenced = fence_earlier_runs(client_config(), plan, slots, sizes, created)
    if fenced.transactional_ids:
        get_run_logger().info(
            "fenced %d transactional ids earlier runs of restore %s used (%s)",
            len(fenced.transactional_ids),
            plan.restore_id,
            ", ".join(fenced.transactional_ids[:8]) + (", ..." if len(fenced.transactional_ids) > 8 else ""),
        )
    return fenced
