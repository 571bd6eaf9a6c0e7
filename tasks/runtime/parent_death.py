"""A worker process (a process pool's, a local Dask cluster's) ends when the run's process dies,
however it dies: nothing of a killed run stays behind, orphaned.

`end_with_parent(parent_pid)`, called first thing in the worker:
- asks Linux for SIGKILL when its parent dies (PR_SET_PDEATHSIG). It fires when the *thread* that
  started the worker ends, not only the process: Prefect's process pool starts its workers from
  its resolver threads, which live until the pool's own shutdown; a SIGKILLed run ends them all;
- exits at once when the parent is already gone: a run killed while its workers import (1-2 s
  each, before they get here) would leave them waiting on their task queue forever, the signal
  asked for too late to fire;
- watches the parent from a thread (every PARENT_POLL_S): the parent-death signal's complement
  where it does not apply (another thread started the worker, not Linux);
- takes SIGTERM: a worker inherits kbackup's signal mask, which blocks SIGINT and SIGTERM (kbackup
  takes them in a thread of its own, kbackup.cli.stop_on_signals), so it ignored `kill`. Now a
  SIGTERM ends a worker whose run is gone; while the run lives, the run decides (its stop file,
  tasks.runtime.shutdown), as it does for a Ctrl-C. Where the run did not block SIGTERM (a
  deployment's flow-run process, which Prefect's worker signals on a cancel) it keeps its default:
  it ends the worker at once.

multiprocessing's resource tracker, which ignores SIGINT and SIGTERM by design, exits when the
last process holding its pipe (the run's process and its workers) is gone.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from types import FrameType

PARENT_POLL_S = 0.5
_PR_SET_PDEATHSIG = 1
# How a worker whose run is gone exits: as if killed by SIGTERM.
ORPHAN_EXIT_STATUS = 128 + signal.SIGTERM


def parent_is_gone(parent_pid: int) -> bool:
    """True once this process's parent is no longer `parent_pid` (it died: the process was
    re-parented to init or a subreaper)."""
    return os.getppid() != parent_pid


def _exit_orphaned(parent_pid: int) -> None:
    with contextlib.suppress(Exception):  # the terminal may be gone with the run
        print(
            f"kbackup worker {os.getpid()}: the run's process {parent_pid} is gone; exiting",
            file=sys.stderr,
            flush=True,
        )
    os._exit(ORPHAN_EXIT_STATUS)


def _watch(parent_pid: int, poll_s: float) -> None:
    while not parent_is_gone(parent_pid):
        time.sleep(poll_s)
    _exit_orphaned(parent_pid)


def end_with_parent(parent_pid: int, poll_s: float = PARENT_POLL_S) -> None:
    """In a worker process, from its main thread: end when `parent_pid` (the run's process) dies."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if parent_is_gone(parent_pid):
        _exit_orphaned(parent_pid)

    # Started before SIGTERM is unblocked below, so that the thread keeps it blocked and the signal
    # interrupts the main thread.
    threading.Thread(
        target=_watch, args=(parent_pid, poll_s), name="kbackup-parent-watch", daemon=True
    ).start()
    if signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, []):
        # Not blocked by the run (a deployment's flow-run process, not kbackup's command line):
        # SIGTERM keeps its default and ends the worker, as a cancel from the UI expects.
        return

    def on_sigterm(_signum: int, _frame: FrameType | None) -> None:
        if parent_is_gone(parent_pid):
            _exit_orphaned(parent_pid)

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
