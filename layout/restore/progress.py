"""Where a restore keeps each unit's progress: which consumer group, and which of its offsets,
holds the number of records a unit has restored so far (committed with them, in one
transaction: tasks.restore.writer).

Two layouts, recorded for the whole restore when it first runs (tasks.restore.fence):
- `units`, as restores begun before this layout existed keep it: every unit's progress is the
  offset of its own group (`unit_group`) on partition 0 of its target (`ANCHOR_PARTITION`);
- `shared`: a unit that alone writes its target partition (routed `preserve` into one partition
  that no other unit of the restore writes) keeps its progress as the offset of the restore's
  progress group (`progress_group`) on that very partition, so that one transaction commits the
  progress of all such units it holds in one `send_offsets_to_transaction`. Units that share a
  target partition (re-partitioned restores, several sources into one partition) keep their own
  group, as in `units`.

Pure: `progress_keys` decides for every unit of a plan at once, from the plan alone, so every
run of a restore (grouped into whatever work units) decides the same way; `progress_layout`
decides the layout from what the restore's own group recorded.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, NamedTuple

from layout.restore.plan import ProgressLayout, RestorePlan, RestoreUnit

ANCHOR_PARTITION = 0  # the target partition a unit's own group commits its progress on


class ProgressKey(NamedTuple):
    """Where one unit's progress is committed: the offset of `group` on (`topic`, `partition`)."""

    group: str
    topic: str
    partition: int


def unit_group(plan: RestorePlan, unit: RestoreUnit) -> str:
    """A unit's own group (and, before work units, its transactional id)."""
    return f"kbackup-restore-{plan.restore_id}-{unit.target_topic}-{unit.unit_id}"


def progress_group(plan: RestorePlan) -> str:
    """The group whose offsets are the progress of the units that alone write their partition."""
    return f"kbackup-restore-{plan.restore_id}-progress"


def restore_group(plan: RestorePlan) -> str:
    """The restore's own group: its offsets say where the restore began in each target
    partition; their metadata on `anchor(plan)` how many slots its runs used and the progress
    layout (tasks.restore.fence)."""
    return f"kbackup-restore-{plan.restore_id}"


def anchor(plan: RestorePlan) -> tuple[str, int]:
    """The target partition on which the restore group's metadata is recorded."""
    return min(target.name for target in plan.targets), ANCHOR_PARTITION


def unit_key(plan: RestorePlan, unit: RestoreUnit) -> ProgressKey:
    """The unit's own group on its target's anchor partition (the `units` layout)."""
    return ProgressKey(unit_group(plan, unit), unit.target_topic, ANCHOR_PARTITION)


def alone_in_partition(plan: RestorePlan) -> set[tuple[str, str]]:
    """(target topic, unit id) of the units that alone write their target partition: routed
    `preserve` into one partition, into a target no unit routes any other way, and no other unit
    preserves into the same partition."""
    writers: Counter[tuple[str, int]] = Counter()
    spread: set[str] = set()  # targets some unit writes every partition of
    for unit in plan.units:
        if unit.routing == "preserve" and unit.target_partition is not None:
            writers[(unit.target_topic, unit.target_partition)] += 1
        else:
            spread.add(unit.target_topic)
    return {
        (unit.target_topic, unit.unit_id)
        for unit in plan.units
        if unit.routing == "preserve"
        and unit.target_partition is not None
        and unit.target_topic not in spread
        and writers[(unit.target_topic, unit.target_partition)] == 1
    }


def progress_keys(plan: RestorePlan) -> dict[tuple[str, str], ProgressKey]:
    """Where each unit of the plan commits its progress, by (target topic, unit id), under the
    layout the plan records (`plan.progress`, decided when the restore first ran). No two units
    share a key."""
    if plan.progress is None:
        raise ValueError(f"restore {plan.restore_id}: its progress layout is not decided yet")
    alone = alone_in_partition(plan) if plan.progress == "shared" else set()
    shared = progress_group(plan)
    keys: dict[tuple[str, str], ProgressKey] = {}
    for unit in plan.units:
        name = (unit.target_topic, unit.unit_id)
        if name in alone and unit.target_partition is not None:
            keys[name] = ProgressKey(shared, unit.target_topic, unit.target_partition)
        else:
            keys[name] = unit_key(plan, unit)
    return keys


def progress_layout(recorded: dict[str, Any] | None, older_progress: bool = True) -> ProgressLayout:
    """The layout of a restore whose own group's anchor records `recorded` (its metadata; None:
    nothing recorded). A run of this version records `progress`; a run of the version before
    recorded slots only and kept every unit's progress in its own group. With nothing recorded,
    no run under work units began: `shared`, unless a version before them left progress in the
    units' own groups (`older_progress`; readers that did not look assume it did — the shared
    group holds nothing before the layout is recorded)."""
    if recorded is not None and recorded.get("progress") in ("shared", "units"):
        return "shared" if recorded["progress"] == "shared" else "units"
    if recorded is not None and "slots" in recorded:
        return "units"
    return "units" if older_progress else "shared"
