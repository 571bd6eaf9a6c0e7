"""The run directory carries progress and the stop request between a run's processes (a process
pool's workers, a local Dask cluster's): reports written in a spawned process are read here, and
a stop requested here is seen there. Without a run directory, both are silently absent."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from tasks.runtime import progress, run_dir, shutdown


def _report(topic: str, partition: int, records: int, total: int) -> None:
    """A report, and the end of its task (which writes it at once)."""
    progress.report_progress(topic, partition, records, total, records * 10)
    progress.flush_progress()


def _stopped() -> str | None:
    try:
        shutdown.raise_if_stopping()
    except shutdown.RunInterrupted as stop:
        return stop.reason
    return None


@pytest.fixture
def pool() -> Iterator[ProcessPoolExecutor]:
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as executor:
        yield executor


def test_progress_from_worker_processes_reaches_the_snapshot(pool: ProcessPoolExecutor) -> None:
    with run_dir.run_dir() as directory:
        # The pool's workers are spawned now, with the run directory in their environment.
        done = [pool.submit(_report, "a/b ü", p, 5 * (p + 1), 10) for p in range(2)]
        done.append(pool.submit(_report, "other", 0, 7, 7))
        for future in done:
            future.result()
        assert progress.snapshot() == {
            ("a/b ü", 0): progress.PartitionProgress(5, 10, 50),
            ("a/b ü", 1): progress.PartitionProgress(10, 10, 100),
            ("other", 0): progress.PartitionProgress(7, 7, 70),
        }
        assert not list(directory.glob("progress/.*"))  # no temporary file left behind
        progress.reset()
        assert progress.snapshot() == {}
    assert not directory.exists()
    assert os.environ.get(run_dir.ENV) is None


def test_a_stop_requested_here_is_seen_in_worker_processes(pool: ProcessPoolExecutor) -> None:
    try:
        with run_dir.run_dir():
            assert pool.submit(_stopped).result() is None
            shutdown.request_stop("SIGINT received")
            time.sleep(2 * shutdown.STOP_POLL_S)  # workers look at the stop file this often
            assert pool.submit(_stopped).result() == "SIGINT received"
    finally:
        shutdown.clear()


def test_without_a_run_directory_reports_and_stop_checks_do_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(run_dir.ENV, str(tmp_path / "elsewhere"))  # a remote worker: not on this disk
    progress.report_progress("t", 0, 1, 2, 3)
    assert progress.snapshot() == {}
    assert not shutdown.stop_requested()
    monkeypatch.delenv(run_dir.ENV)
    progress.report_progress("t", 0, 1, 2, 3)
    assert progress.snapshot() == {}


def test_a_threads_reports_are_one_file_throttled_until_its_task_ends() -> None:
    with run_dir.run_dir() as directory:
        progress.report_progress("t", 0, 1, 10, 0)
        progress.report_progress("t", 0, 2, 10, 0)  # within REPORT_INTERVAL_S: kept, not written
        progress.report_progress("t", 1, 10, 10, 0)
        assert progress.snapshot() == {("t", 0): progress.PartitionProgress(1, 10, 0)}
        progress.flush_progress()  # the task's end
        assert progress.snapshot() == {
            ("t", 0): progress.PartitionProgress(2, 10, 0),
            ("t", 1): progress.PartitionProgress(10, 10, 0),
        }
        assert len(list(directory.glob("progress/*.json"))) == 1  # one file for the thread's partitions


def test_the_snapshot_reads_again_only_what_was_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    with run_dir.run_dir():
        _report("t", 0, 1, 10)
        other = threading.Thread(target=lambda: [_report("t", p, 1, 10) for p in (1, 2)])
        other.start()
        other.join()
        assert progress.snapshot()[("t", 2)] == progress.PartitionProgress(1, 10, 10)
        reads: list[str] = []
        real = Path.read_text

        def counted(self: Path, *args: object, **kwargs: object) -> str:
            reads.append(self.name)
            return real(self, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(Path, "read_text", counted)
        assert progress.snapshot()[("t", 2)] == progress.PartitionProgress(1, 10, 10)
        assert reads == []  # nothing replaced: nothing read
        _report("t", 0, 10, 10)  # this thread's file replaced; the other thread's is not read again
        parts = progress.snapshot()
        assert len(reads) == 1
        assert parts == {
            ("t", 0): progress.PartitionProgress(10, 10, 100),
            ("t", 1): progress.PartitionProgress(1, 10, 10),
            ("t", 2): progress.PartitionProgress(1, 10, 10),
        }
        progress.reset()
        assert progress.snapshot() == {}


def test_announced_partitions_wait_until_their_task_moves_them() -> None:
    with run_dir.run_dir():
        progress.announce([("t", p, 10) for p in range(3)])
        mover = threading.Thread(target=lambda: _report("t", 1, 4, 10))
        mover.start()
        mover.join()
        assert progress.snapshot() == {
            ("t", 0): progress.PartitionProgress(0, 10, 0),
            ("t", 1): progress.PartitionProgress(4, 10, 40),  # the furthest report wins, whichever file
            ("t", 2): progress.PartitionProgress(0, 10, 0),
        }
