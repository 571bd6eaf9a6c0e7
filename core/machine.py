"""What the machine lends a run: the cores this process may use, which the task runner's workers
default to (`--concurrency`, the flows' `concurrency`)."""

from __future__ import annotations

import os

MAX_WORKERS = 64
"""The most workers a run takes (`concurrency`'s upper bound)."""


def available_cores() -> int:
    """The cores this process may run on: its CPU affinity (a container's or `taskset`'s cpuset),
    else the machine's core count, else 1. A CPU quota (cgroup cpu.max) is not counted."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def default_workers() -> int:
    """The task runner's workers when a run does not say: one per available core, at most MAX_WORKERS."""
    return max(1, min(available_cores(), MAX_WORKERS))
