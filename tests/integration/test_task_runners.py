"""Backups and restores on each kind of task runner: a process pool, and a real Dask cluster
(`distributed.LocalCluster`, two worker processes) reached by its scheduler's address, as a
cluster too large for one machine would be. The restored records equal the source's."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import pytest
from prefect import flow

from flows.backup import BackupParameters, backup_flow
from flows.restore import RestoreParameters, restore_flow
from tasks.runtime.task_runners import run_tasks, shared_runners
from tests.support.kafka import consume_all
from tests.support.topics import topic_digests, tricky_messages
from tests.support.worker_tasks import worker_pid

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture(scope="module")
def dask_scheduler() -> Iterator[str]:
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        yield cluster.scheduler_address


@pytest.mark.parametrize(
    "runner", ["dask", "processes"], ids=["on-an-existing-dask-cluster", "on-a-process-pool"]
)
def test_backup_and_restore(
    runner: str,
    request: pytest.FixtureRequest,
    kafka_config: dict[str, Any],
    filled_topic: Any,
    bucket: str,
    target_topic: Any,
) -> None:
    task_runner = f"dask={request.getfixturevalue('dask_scheduler')}" if runner == "dask" else runner
    source = filled_topic("src", 4, tricky_messages(partitions=4, random_per_partition=50))
    expected = topic_digests(consume_all(kafka_config, source, 4))

    [backup] = backup_flow(
        BackupParameters(
            kcql=f"INSERT INTO {bucket}:bk SELECT * FROM `{source}` STOREAS PARQUET PROPERTIES('store.envelope'=true, 'flush.count'=20)",
            verify="full",
            concurrency=2,
            task_runner=task_runner,
        ),
    )
    assert {p.partition: p.records_digest for p in backup.manifest.partitions} == expected

    target = target_topic()
    report = restore_flow(
        RestoreParameters(
            kcql=f"INSERT INTO `{target}` SELECT * FROM {bucket}:bk",
            concurrency=2,
            task_runner=task_runner,
        )
    )
    assert report.ok and report.records == backup.manifest.record_count
    assert all(c.digest_compared for c in report.checks)
    assert topic_digests(consume_all(kafka_config, target, 4)) == expected


def test_an_unknown_task_runner_is_refused_with_the_valid_names() -> None:
    with pytest.raises(ValueError, match="threads, processes, dask, dask=ADDRESS"):
        RestoreParameters(kcql="INSERT INTO t SELECT * FROM b:p", task_runner="gpu")


@flow(name="two-phases")
def _two_phases(shared: bool) -> tuple[set[int], set[int]]:
    # one worker process: which pool ran a phase's tasks is then its one pid, whatever the order
    # in which a pool's workers start and take tasks
    def phase() -> set[int]:
        outcomes = run_tasks(
            worker_pid,
            [{"index": i} for i in range(4)],
            choice="processes",
            concurrency=1,
            records=4,
            description="pids",
        )
        return set(outcomes)

    with shared_runners() if shared else contextlib.nullcontext():
        return phase(), phase()


def test_within_shared_runners_the_second_phase_runs_in_the_first_phases_worker_processes() -> None:
    first, second = _two_phases(shared=True)
    assert len(first) == 1 and second == first and os.getpid() not in first
    first, second = _two_phases(shared=False)
    assert not first & second  # without it, every phase spawns its own pool
