"""Where a unit that alone writes its target partition really is, before it resumes: the
partition's committed records since the unit began, against the unit's committed progress.

A unit's records and its progress are committed by one transaction (tasks.restore.writer), so
they agree as long as the broker writes that transaction's markers to every partition it
touched. Kafka 4.3 does not always: a broker killed between two of a commit's markers and
started again within its session timeout comes back fenced (DUPLICATE_BROKER_REGISTRATION), and
its transaction coordinator, completing the commit it finds prepared, finds no leader for the
partitions still waiting and skips them ("these partitions are likely deleted already and hence
can be skipped") before writing the commit as complete. Seen on a CI stack: a transaction's
records committed in the target, its progress offset never, then dropped by the next abort of
that producer; the restore resumed 500 records early and produced them twice. The other order
loses records the progress counts.

So when a unit alone writes its partition, the partition itself says how far the unit got: one
read_committed pass over the partitions of a work unit's units that begun, from where each
began (its progress's metadata; before its first commit, where the restore began there,
recorded by tasks.restore.fence). A difference of at most one transaction (`plan.batch`
records) is the broker's: the unit resumes after what the partition holds, with a warning. A
larger one is not (records another producer wrote): the progress stands, and the restore's
check compares every partition afterwards. Units that share a partition keep their committed
progress: their records cannot be told apart there.

`reconcile` is the pure decision; `reconciled_progress` reads and applies it for a work unit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from layout.restore.plan import RestorePlan, RestoreUnit
from layout.restore.progress import alone_in_partition
from tasks.restore.check import ReadBack, read_restored_together
from tasks.restore.committed import Progress, restore_group_offsets
from tasks.runtime import shutdown
from tasks.services.errors import KafkaOperationError
from tasks.services.kafka.admin import partition_offsets
from tasks.services.kafka.calls import LOOKUP_TIMEOUT_S

log = logging.getLogger(__name__)


def began_at(progress: Progress, partition: int, recorded: int | None) -> int | None:
    """Where in its target partition a unit began: its first commit's `starts`; for a unit
    without progress, where the restore began there (`recorded`); else unknown (progress an
    older version committed without `starts`: the restore's record may be younger than it)."""
    done, metadata = progress
    starts = metadata.get("starts") or {}
    if str(partition) in starts:
        return int(starts[str(partition)])
    return recorded if done == 0 and not metadata else None


def reconcile(
    progress: Progress, partition: int, start: int, held: int, batch: int
) -> tuple[Progress, str | None]:
    """A unit's progress given that its target partition holds `held` committed records from
    `start`, and what to say about it (None: they agree)."""
    done, metadata = progress
    if held == done:
        return progress, None
    if abs(held - done) > max(1, batch):
        return progress, (
            f"its target partition holds {held} committed records from offset {start}, its committed "
            f"progress says {done}: more than one transaction ({batch} records) apart, so not left by a "
            f"broker's lost markers; resuming after {done} (the restore's check compares the partition)"
        )
    kept = metadata if metadata.get("starts") else {**metadata, "starts": {str(partition): start}}
    what = (
        "committed records whose progress offset was not"
        if held > done
        else "progress whose records were not"
    )
    return (held, kept), (
        f"its target partition holds {held} committed records from offset {start}, its committed progress "
        f"says {done}: the broker committed {what} (a transaction's markers lost in a broker restart); "
        f"resuming after the {held} records the partition holds"
    )


def committed_since(
    kafka_config: dict[str, Any], admin: Any, starts: dict[tuple[str, int], int]
) -> dict[tuple[str, int], int]:
    """The committed records of each (topic, partition) from its start to its end, once no open
    transaction holds its last stable offset back (asked again for a while; then retryable)."""
    if not starts:
        return {}
    deadline = time.monotonic() + LOOKUP_TIMEOUT_S
    while True:
        high = partition_offsets(admin, kafka_config, list(starts), "latest")
        stable = partition_offsets(admin, kafka_config, list(starts), "latest", "read_committed")
        open_ = [where for where in starts if stable[where] < high[where]]
        if not open_:
            break
        if time.monotonic() >= deadline:
            topic, partition = open_[0]
            raise KafkaOperationError(
                f"count the restored records of {topic}[{partition}]",
                f"an open transaction holds its last stable offset at {stable[open_[0]]} (end {high[open_[0]]})",
                retryable=True,
            )
        shutdown.sleep(0.5)
    reads = [
        ReadBack(topic, partition, start, max(0, high[(topic, partition)] - start))
        for (topic, partition), start in starts.items()
    ]
    read_restored_together(kafka_config, reads)
    return {(read.topic, read.partition): read.records for read in reads}


def reconciled_progress(
    kafka_config: dict[str, Any],
    admin: Any,
    plan: RestorePlan,
    units: Sequence[RestoreUnit],
    found: Sequence[Progress],
) -> list[Progress]:
    """`found` (each unit's committed progress) with the progress of every unit that alone
    writes its target partition reconciled with what that partition holds (see the module)."""
    alone = alone_in_partition(plan)
    mine = [
        (index, unit)
        for index, unit in enumerate(units)
        if (unit.target_topic, unit.unit_id) in alone and unit.target_partition is not None
    ]
    result = list(found)
    if not mine:
        return result
    where_of = {index: (unit.target_topic, int(unit.target_partition or 0)) for index, unit in mine}
    recorded = restore_group_offsets(admin, kafka_config, plan, list(where_of.values()))
    starts: dict[tuple[str, int], int] = {}
    for index, where in where_of.items():
        began = recorded.get(where)
        start = began_at(found[index], where[1], began[0] if began else None)
        if start is not None:
            starts[where] = start
    held = committed_since(kafka_config, admin, starts)
    for index, unit in mine:
        where = where_of[index]
        if where not in held:
            continue
        result[index], note = reconcile(found[index], where[1], starts[where], held[where], plan.batch)
        if note:
            log.warning("restore of %s into %s[%d]: %s", unit.unit_id, where[0], where[1], note)
    return result
