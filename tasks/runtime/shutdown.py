"""A run's stop request. The command line's SIGINT/SIGTERM handler sets it; every long loop of the
export, the restore and the checks reads it, so that a run ends within seconds of a signal —
open transactions aborted, no manifest written — instead of running on in its workers.

The request is a flag in the process that receives it and a file `stop` in the run's directory
(tasks.runtime.run_dir), which tasks in other processes (a process pool, a local Dask cluster's workers)
see at their next check, at most STOP_POLL_S later."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from prefect.exceptions import TerminationSignal

from core.errors import KbackupError
from tasks.runtime import run_dir

STOP_FILE = "stop"
STOP_POLL_S = 0.2

_stop = threading.Event()
_reason: list[str] = []
# The stop file's last look: (run directory, when, its reason or None).
_seen: list[tuple[str, float, str | None]] = [("", 0.0, None)]


class RunInterrupted(KbackupError):
    """The run was asked to stop (a signal); never retried."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"stopped: {reason}")


def request_stop(reason: str) -> None:
    """Ask every loop of this run to stop at its next check, in this process and the run's others."""
    if not _stop.is_set():
        _reason.append(reason)
        _stop.set()
    directory = run_dir.current()
    if directory is not None:
        # Failing, the run is ending anyway; this process's own loops stop on the flag.
        with contextlib.suppress(OSError):
            run_dir.write_atomically(directory / STOP_FILE, reason)


def _stop_file_reason() -> str | None:
    """The reason in the run directory's stop file; looked at no more than every STOP_POLL_S."""
    key, when, reason = _seen[0]
    now = time.monotonic()
    value = os.environ.get(run_dir.ENV, "")
    if key == value and (reason is not None or now - when < STOP_POLL_S):
        return reason  # (hot loops call this: not even a stat of the directory in between)
    directory = run_dir.current()
    if directory is None:
        return None
    try:
        reason = (directory / STOP_FILE).read_text() or "stop requested"
    except OSError:
        reason = None
    _seen[0] = (value, now, reason)
    return reason


def _reason_to_stop() -> str | None:
    if _stop.is_set():
        return _reason[0] if _reason else "stop requested"
    return _stop_file_reason()


def stop_requested() -> bool:
    return _reason_to_stop() is not None


def raise_if_stopping() -> None:
    """Raise RunInterrupted once a stop was requested; a cheap check for hot loops."""
    reason = _reason_to_stop()
    if reason is not None:
        raise RunInterrupted(reason)


def sleep(seconds: float) -> None:
    """time.sleep that a stop request cuts short (with RunInterrupted)."""
    deadline = time.monotonic() + seconds
    while True:
        raise_if_stopping()
        left = deadline - time.monotonic()
        if left <= 0:
            return
        _stop.wait(min(left, STOP_POLL_S))


def clear() -> None:
    """Forget a stop request (tests running several flows in one process)."""
    _stop.clear()
    _reason.clear()
    _seen[0] = ("", 0.0, None)
    directory = run_dir.current()
    if directory is not None:
        Path(directory / STOP_FILE).unlink(missing_ok=True)


@contextlib.contextmanager
def stop_tasks_when_terminated() -> Iterator[None]:
    """Around a flow's body: when Prefect's SIGTERM bridge raises TerminationSignal in it (a worker
    cancelling the run, or a SIGTERM to a flow-run process), ask the tasks to stop too.
    Otherwise the task runner's exit waits for them to finish all their work. (kbackup's command
    line takes the signals itself and never gets here.)"""
    try:
        yield
    except TerminationSignal:
        request_stop("the flow run was terminated")
        raise
