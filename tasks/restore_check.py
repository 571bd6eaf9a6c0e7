"""The restore's check, where several units wrote one target partition, and what a failed restore
committed. (A partition one unit alone wrote is compared record for record by digest:
tasks/restore_target.py `check_unit`.)

Plain functions with thin tasks at the bottom.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.kafka_clients import client_config
from tasks.restore_plan import RestorePlan, RestoreUnit
from tasks.restore_produce import UnitResult
from tasks.restore_target import PartitionCheck, read_restored
from tasks.restore_writer import CommittedProgress, committed_progress
from tasks.retry import RETRY_OPTIONS

Shared = dict[tuple[str, int], list[UnitResult]]


def split_by_writers(results: Sequence[UnitResult]) -> tuple[list[UnitResult], Shared]:
    """The units that alone wrote every target partition they wrote (checked by digest), and the
    target partitions that several units wrote, with those units (checked by count)."""
    writers: Shared = {}
    for result in results:
        for partition in result.partitions:
            writers.setdefault((result.target_topic, partition), []).append(result)
    alone = [r for r in results if all(len(writers[(r.target_topic, p)]) == 1 for p in r.partitions)]
    shared = {where: units for where, units in sorted(writers.items()) if len(units) > 1}
    return alone, shared


def check_shared(kafka_config: dict[str, Any], shared: Shared) -> list[PartitionCheck]:
    """Per target partition several units wrote: the records in it since the first of them began,
    against the sum they restored."""
    checks = []
    for (topic, partition), units in shared.items():
        start = min(u.partitions[partition].start_offset for u in units)
        expected = sum(u.partitions[partition].records for u in units)
        count, _, _, end = read_restored(kafka_config, topic, partition, start, None)
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


# --- tasks -----------------------------------------------------------------------------------


@task(name="check-shared-partitions", cache_policy=NO_CACHE, **RETRY_OPTIONS)
def check_shared_task(shared: Shared) -> list[PartitionCheck]:
    return check_shared(client_config(), shared)


# Not retried: it runs after a failure, and the cluster may be what failed; the report then says
# "unknown" at once instead of after the retries' back-off.
@task(name="read-committed-progress", cache_policy=NO_CACHE)
def committed_progress_task(plan: RestorePlan, units: Sequence[RestoreUnit]) -> dict[str, CommittedProgress]:
    return committed_progress(client_config(), plan, units)
