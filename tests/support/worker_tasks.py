"""Tasks for the task-runner tests: importable by name in a worker process."""

from __future__ import annotations

import os

from prefect import task
from prefect.cache_policies import NO_CACHE


@task(name="worker-pid", cache_policy=NO_CACHE)
def worker_pid(index: int) -> int:
    """The process the task ran in (`index` only tells the task runs apart)."""
    del index
    return os.getpid()
