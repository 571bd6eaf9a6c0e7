"""The Prefect task runner a run's tasks (export units, restore units) run on.

`--task-runner` / the flows' `task_runner` parameter:
- `threads`: Prefect's ThreadPoolTaskRunner in the flow's process; starts at once.
- `processes`: Prefect's ProcessPoolTaskRunner, `concurrency` worker processes (spawned; each
  pays ~1.5 s of imports before its first task), so encoding and decoding use every core.
- `dask` / `dask=ADDRESS`: prefect-dask's DaskTaskRunner, on a local cluster of `concurrency`
  single-threaded worker processes, or on an existing scheduler's workers (then the cluster,
  not `concurrency`, decides how many tasks run at once).
- `auto` (the default): `threads` when the work is small (under AUTO_PROCESSES_MIN_RECORDS
  records, a single task, a single worker, or one core this process may use) — a worker
  process's start would cost more than it saves — else `processes`.

The workers (`concurrency`) default to the cores the run may use (core.machine.default_workers).

Within `shared_runners()` (a restore's work units and then its check), the runners `run_tasks`
starts stay open for the next `run_tasks` of the same kind: the check's tasks start in the worker
processes the work units used, instead of spawning a second pool (~5 s on two cores).

Wherever the tasks run, they report progress and see a stop request through the run's directory
(tasks.runtime.run_dir, tasks.runtime.progress, tasks.runtime.shutdown). On a stop, worker processes get STOP_GRACE_S to
abort their transactions and are then killed, not waited for. A killed run's workers end with it
(tasks.runtime.worker_start, tasks.runtime.parent_death; a local Dask cluster's, by distributed's
own pipe from the process that started them).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import signal
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal, TypeVar, cast

from prefect import get_run_logger
from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings
from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner

from core.machine import available_cores
from tasks.runtime import progress, run_dir, shutdown, worker_start
from tasks.runtime.overview import ROWS, Overview, overview

TASK_RUNNERS = ("auto", "threads", "processes", "dask", "dask=ADDRESS")
AUTO_PROCESSES_MIN_RECORDS = 100_000
# After a stop request: how long tasks have to end (abort their transactions) before the run
# stops waiting for them and kills the worker processes.
STOP_GRACE_S = 8.0
PROGRESS_ARTIFACT_EVERY_S = 2.0

Kind = Literal["threads", "processes", "dask"]
T = TypeVar("T")
RunnerKey = tuple[Kind, str | None, int]


class _Session:
    """The runners open in a `shared_runners()` block, by (kind, address, concurrency), and what
    closes them when it ends."""

    def __init__(self, stack: contextlib.ExitStack) -> None:
        self.stack = stack
        self.runners: dict[RunnerKey, TaskRunner[Any]] = {}


_session: contextvars.ContextVar[_Session | None] = contextvars.ContextVar("kbackup_runners", default=None)


@contextlib.contextmanager
def shared_runners() -> Iterator[None]:
    """Within the block, every `run_tasks` reuses the task runner an earlier one of the same kind
    and concurrency opened; all of them close (worker processes end) when the block ends."""
    with contextlib.ExitStack() as stack:
        token = _session.set(_Session(stack))
        try:
            yield
        finally:
            _session.reset(token)


def check_task_runner(choice: str) -> str:
    """`choice` if it names a task runner, else ValueError listing the valid ones."""
    if choice in ("auto", "threads", "processes", "dask") or (
        choice.startswith("dask=") and len(choice) > len("dask=")
    ):
        return choice
    raise ValueError(f"unknown task runner {choice!r}: expected one of {', '.join(TASK_RUNNERS)}")


def resolve(choice: str, concurrency: int, records: int, tasks: int) -> tuple[Kind, str | None]:
    """(kind, Dask scheduler address) for a choice and the size of the work."""
    check_task_runner(choice)
    if choice.startswith("dask"):
        return "dask", choice.partition("=")[2] or None
    if choice == "auto":
        small = records < AUTO_PROCESSES_MIN_RECORDS or tasks <= 1 or concurrency <= 1
        return ("threads" if small or available_cores() <= 1 else "processes"), None
    return ("threads" if choice == "threads" else "processes"), None


class StoppableProcessPool(ProcessPoolTaskRunner):
    """Prefect's process pool, whose exit after a stop request kills the workers still running
    after STOP_GRACE_S instead of waiting for them to finish their work."""

    def __init__(self, max_workers: int) -> None:
        super().__init__(max_workers=max_workers, initializer=worker_start.expected_errors_in_one_line)

    def duplicate(self) -> StoppableProcessPool:
        return type(self)(max_workers=self._max_workers)

    def __enter__(self) -> StoppableProcessPool:
        super().__enter__()
        if self._executor is not None:
            # Its workers, spawned at the first tasks, start with worker_start.first, which makes
            # them end with this process before they import Prefect's initializer (named, not
            # pickled). Private to concurrent.futures (3.11-3.13): read when a worker is spawned.
            executor: Any = self._executor
            executor._initargs = (
                os.getpid(),
                worker_start.qualified_name(executor._initializer),
                *executor._initargs,
            )
            executor._initializer = worker_start.first
        return self

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        if shutdown.stop_requested() and self._executor is not None:
            # Private to concurrent.futures (Python 3.14 adds terminate_workers()).
            processes = list(getattr(self._executor, "_processes", {}).values())
            self._executor.shutdown(wait=False, cancel_futures=True)
            deadline = time.monotonic() + STOP_GRACE_S
            for process in processes:
                process.join(max(0.0, deadline - time.monotonic()))
            for process in processes:
                if process.is_alive():
                    process.kill()
            for process in processes:
                process.join(5)
        super().__exit__(exc_type, exc_value, traceback)


def _start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker now, in this thread, keeping its signal mask.

    Starting it (which the first process pool or Dask cluster does) unblocks SIGINT and SIGTERM in
    the thread that starts it (Python 3.11 resource_tracker.ensure_running); kbackup's command line
    blocks them in every thread and takes them in one of its own, so a signal would then reach
    Prefect's handler, which kills the process instead of stopping the run."""
    from multiprocessing import resource_tracker

    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    try:
        resource_tracker.ensure_running()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


@contextlib.contextmanager
def _workers_use_this_api() -> Iterator[None]:
    """Point worker processes at the Prefect API this process records the run on.

    Without a configured API (a flow called from Python; `kbackup` always sets one), Prefect's
    ephemeral mode starts a temporary server for this process only. Worker processes, told no
    URL, would each start one of their own before their first task: a 1,000-record backup's
    export took 15-16 s on a process pool instead of 2.4-4 s (two-core test machine)."""
    server_module = sys.modules.get("prefect.server.api.server")
    if get_current_settings().api.url or server_module is None:
        yield
        return
    server = server_module.SubprocessASGIServer()
    if not server.running:
        yield
        return
    with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
        yield


def _set_run_dir(path: str) -> None:
    os.environ[run_dir.ENV] = path


def _forget_run_dir(path: str) -> None:
    if os.environ.get(run_dir.ENV) == path:
        del os.environ[run_dir.ENV]


def build(kind: Kind, address: str | None, concurrency: int) -> TaskRunner[Any]:
    if kind == "threads":
        return ThreadPoolTaskRunner(max_workers=concurrency)
    if kind == "processes":
        return StoppableProcessPool(max_workers=concurrency)
    from prefect_dask import DaskTaskRunner

    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": concurrency,
            "threads_per_worker": 1,
            "processes": True,
            "dashboard_address": None,
        }
    )


@contextlib.contextmanager
def _dask_workers_see(runner: TaskRunner[Any]) -> Iterator[None]:
    """Set up the Dask workers as the process pool's initializer does its workers: expected errors
    logged in one line, and the run's directory (a local cluster inherits it; an existing
    scheduler's workers are told, and find it only if they share this disk)."""
    directory = run_dir.current()
    client = getattr(runner, "client", None)
    if client is None:
        yield
        return
    client.run(worker_start.expected_errors_in_one_line)
    if directory is None:
        yield
        return
    client.run(_set_run_dir, str(directory))
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            client.run(_forget_run_dir, str(directory))


def progress_description(description: str, glance: Overview) -> str:
    """The progress artifact's description (markdown): what the run does, its totals and, past a
    few partitions, the slowest running ones — a few lines for 3 or 3,000 partitions."""
    lines = [description, "", glance.describe()]
    if glance.partitions > ROWS and glance.slowest:
        slowest = (f"{t}/{p} ({100 * glance.done_share((t, p)):.0f} %)" for t, p in glance.slowest)
        lines += ["", f"Slowest running: {', '.join(slowest)}"]
    return "\n".join(lines)


class _ProgressArtifact:
    """The run's progress in the Prefect UI: one progress artifact, updated in place from the run's
    directory every PROGRESS_ARTIFACT_EVERY_S: the percent of records done, and in its description
    the totals (partitions done of all, records, rate, ETA) and the slowest running partitions."""

    def __init__(self, total: int, description: str) -> None:
        self.total = total
        self.description = description
        self.artifact_id: Any = None
        self.updated = 0.0
        self.before: Mapping[tuple[str, int], progress.PartitionProgress] = {}

    def update(self, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.updated < PROGRESS_ARTIFACT_EVERY_S:
            return
        from prefect.artifacts import create_progress_artifact, update_progress_artifact

        parts = progress.snapshot()
        glance = overview(parts, self.before, now - self.updated if self.updated else 0.0)
        self.updated, self.before = now, parts
        done = glance.records
        percent = 100.0 if final else min(100.0, 100.0 * done / self.total) if self.total else 0.0
        text = progress_description(self.description, glance)
        try:
            if self.artifact_id is None:
                self.artifact_id = create_progress_artifact(percent, description=text)
            else:
                update_progress_artifact(self.artifact_id, percent, description=text)
        except Exception:  # noqa: BLE001 - the UI's progress is not worth failing a run
            get_run_logger().debug("could not publish the progress artifact", exc_info=True)


def run_tasks(
    task: Any,
    parameters: Sequence[dict[str, Any]],
    *,
    choice: str,
    concurrency: int,
    records: int,
    description: str,
) -> list[Any]:
    """Run `task` once per parameters on the chosen runner, at most `concurrency` at a time;
    returns each run's result or exception, in order. After a stop request, the tasks' own
    RunInterrupted, or RunInterrupted here when they did not end within STOP_GRACE_S."""
    kind, address = resolve(choice, concurrency, records, len(parameters))
    logger = get_run_logger()
    logger.info(
        "%s tasks on %s%s (%s at a time)",
        len(parameters),
        kind,
        f" at {address}" if address else "",
        concurrency if not address else "the cluster's workers",
    )
    artifact = _ProgressArtifact(records, description)
    session = _session.get()
    try:
        with contextlib.ExitStack() as own:
            runner = _open_runner((kind, address, concurrency), session, own)
            futures = [runner.submit(task, p) for p in parameters]
            try:
                _wait(futures, artifact)
            finally:
                if kind == "dask" and shutdown.stop_requested():
                    # Tasks not started yet never start; running ones stop at the stop file.
                    with contextlib.suppress(Exception):
                        getattr(runner, "client").cancel([f.wrapped_future for f in futures])  # noqa: B009
            # Inside: a Dask future's result needs its client.
            outcomes = [f.result(raise_on_failure=False) for f in futures]
    except BaseException as exc:
        if not isinstance(exc, Exception):
            # TerminationSignal (a cancelled deployment run), KeyboardInterrupt: the tasks stop too.
            shutdown.request_stop("the flow run was terminated")
        raise
    artifact.update(final=True)
    return outcomes


def _open_runner(key: RunnerKey, session: _Session | None, own: contextlib.ExitStack) -> TaskRunner[Any]:
    """The session's runner for `key`, or a new one (with what its workers need: this process's
    Prefect API, the run's directory on Dask workers) entered on the session's stack, or on `own`,
    the calling run_tasks', outside a session."""
    if session is not None and key in session.runners:
        return session.runners[key]
    stack = session.stack if session is not None else own
    kind, address, concurrency = key
    if kind != "threads":
        _start_resource_tracker()
        stack.enter_context(_workers_use_this_api())
    runner = stack.enter_context(build(kind, address, concurrency))
    if kind == "dask":
        stack.enter_context(_dask_workers_see(runner))
    if session is not None:
        session.runners[key] = runner
    return runner


def results_or_first_failure(outcomes: Sequence[T | BaseException]) -> list[T]:
    """run_tasks' outcomes when every task succeeded; else the first failure, raised (the others
    are in the run's logs)."""
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return cast(list[T], list(outcomes))


def _wait(futures: Sequence[Any], artifact: _ProgressArtifact) -> None:
    stop_deadline: float | None = None
    for future in futures:
        while not future.wrapped_future.done():  # both runners' futures wrap one with done()
            future.wait(0.25)
            artifact.update()
            if shutdown.stop_requested():
                stop_deadline = stop_deadline or time.monotonic() + STOP_GRACE_S
                if time.monotonic() > stop_deadline:
                    shutdown.raise_if_stopping()
