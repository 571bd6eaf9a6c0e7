"""A run's stop request. The command line's SIGINT/SIGTERM handler sets it; every long loop of the
export, the restore and the checks reads it, so that a run ends within seconds of a signal —
open transactions aborted, no manifest written — instead of running on in its worker threads."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from prefect.exceptions import TerminationSignal

from tasks.errors import KbackupError

_stop = threading.Event()
_reason: list[str] = []


class RunInterrupted(KbackupError):
    """The run was asked to stop (a signal); never retried."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"stopped: {reason}")


def request_stop(reason: str) -> None:
    """Ask every loop of this process to stop at its next check."""
    if not _stop.is_set():
        _reason.append(reason)
        _stop.set()


def stop_requested() -> bool:
    return _stop.is_set()


def raise_if_stopping() -> None:
    """Raise RunInterrupted once a stop was requested; a cheap check for hot loops."""
    if _stop.is_set():
        raise RunInterrupted(_reason[0] if _reason else "stop requested")


def sleep(seconds: float) -> None:
    """time.sleep that a stop request cuts short (with RunInterrupted)."""
    if _stop.wait(seconds):
        raise_if_stopping()


def clear() -> None:
    """Forget a stop request (tests running several flows in one process)."""
    _stop.clear()
    _reason.clear()


@contextlib.contextmanager
def stop_tasks_when_terminated() -> Iterator[None]:
    """Around a flow's body: when Prefect's SIGTERM bridge raises TerminationSignal in it (a worker
    cancelling the run, or a SIGTERM to a flow-run process), ask the task threads to stop too.
    Otherwise the task runner's exit waits for them to finish all their work. (kbackup's command
    line takes the signals itself and never gets here.)"""
    try:
        yield
    except TerminationSignal:
        request_stop("the flow run was terminated")
        raise
