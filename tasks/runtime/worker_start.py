"""What a process pool's worker runs first, before it imports Prefect.

A spawned worker imports every module its initializer and that initializer's arguments name
before it runs anything, and Prefect's own initializer names Prefect: 1-2 s of imports, 40 s
seen on a loaded two-core machine. A run killed meanwhile left its workers waiting on their task
queue forever. So the pool's initializer is `first`, in this module, which imports nothing heavy:
it makes the worker end with the run's process (tasks.runtime.parent_death), and only then
imports and runs Prefect's initializer, which it is given by name.
"""

from __future__ import annotations

import importlib
import signal
from collections.abc import Callable
from typing import Any

from tasks.runtime.parent_death import end_with_parent


def qualified_name(function: Callable[..., Any]) -> str:
    """`module:qualname` of a module-level function, for `first`."""
    return f"{function.__module__}:{function.__qualname__}"


def first(run_pid: int, initializer: str, *initargs: Any) -> None:
    """The pool's initializer: end with the run's process `run_pid` however it dies; stop only
    through the run's stop file while it lives (a Ctrl-C reaches the whole terminal's process
    group, and kbackup decides); then run `initializer` (`module:qualname`) with `initargs`."""
    end_with_parent(run_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    module, _, name = initializer.partition(":")
    getattr(importlib.import_module(module), name)(*initargs)


def expected_errors_in_one_line() -> None:
    """In a worker process, which prints its own Prefect logs: a task failing with an expected
    error (a KbackupError) is logged on the terminal without its traceback (tasks.runtime.log_format),
    as in the process that started the run."""
    from prefect.logging.configuration import ensure_logging_setup

    from tasks.runtime.log_format import expected_errors_without_traceback

    ensure_logging_setup()  # the terminal handlers to format: Prefect's, set up on its import
    expected_errors_without_traceback()
