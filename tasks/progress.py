"""Per-partition progress, shared by the tasks of one process.

Exports and restores report here; the command line draws its progress bar from it and the
flows publish it as a Prefect progress artifact. Thread-safe (tasks run in a thread pool).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass
class PartitionProgress:
    records: int = 0
    total: int = 0
    bytes: int = 0


_lock = threading.Lock()
_progress: dict[tuple[str, int], PartitionProgress] = {}


def report_progress(topic: str, partition: int, records: int, total: int, written_bytes: int) -> None:
    with _lock:
        _progress[(topic, partition)] = PartitionProgress(records, total, written_bytes)


def snapshot() -> dict[tuple[str, int], PartitionProgress]:
    with _lock:
        return {key: PartitionProgress(p.records, p.total, p.bytes) for key, p in _progress.items()}


def reset() -> None:
    with _lock:
        _progress.clear()
