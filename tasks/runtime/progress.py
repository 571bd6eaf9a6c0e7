"""Per-partition progress of a run, written by its tasks wherever they run.

Exports and restores call `report_progress` for each partition they move; each thread that
reports (a work unit's task, one at a time) keeps its partitions' last reports and writes them
as one small JSON file into the run's directory (tasks.runtime.run_dir), replaced atomically at
most every REPORT_INTERVAL_S, and at once on `flush_progress()` (a task's end). So a unit of 1,500
partitions writes one file, not 1,500. The command line draws its progress bar from
`snapshot()`, the flows publish it as a Prefect progress artifact; `snapshot()` reads again only
the files replaced since its last call. Without a run directory (a worker of a remote Dask
cluster, a plain function call) reports are dropped: progress is never worth an error.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tasks.runtime import run_dir

REPORT_INTERVAL_S = 0.25
PARTS_PER_INTERVAL = 250  # past this many partitions in a file, its interval grows with them

Where = tuple[str, int]
"""(topic, partition)."""


@dataclass(frozen=True)
class PartitionProgress:
    records: int = 0
    total: int = 0
    bytes: int = 0


_lock = threading.Lock()
# Each reporting thread's partitions (per run directory), and when it last wrote its file.
_reports: dict[tuple[str, int], dict[Where, PartitionProgress]] = {}
_last_write: dict[tuple[str, int], float] = {}
# snapshot()'s last reading of each file of one run's directory: the file's (inode, mtime, size)
# and its partitions' progress
_read: dict[str, tuple[tuple[int, int, int], dict[Where, PartitionProgress]]] = {}
_read_in: list[Path | None] = [None]


def report_progress(topic: str, partition: int, records: int, total: int, written_bytes: int) -> None:
    folder = os.environ.get(run_dir.ENV)
    if not folder:
        return
    writer = (folder, threading.get_ident())
    with _lock:
        parts = _reports.setdefault(writer, {})
        parts[(topic, partition)] = PartitionProgress(records, total, written_bytes)
        # a thread reporting many partitions writes less often: its file grows with them
        interval = REPORT_INTERVAL_S * max(1.0, len(parts) / PARTS_PER_INTERVAL)
        if time.monotonic() - _last_write.get(writer, 0.0) < interval:
            return
    _write(writer)


def flush_progress() -> None:
    """Write this thread's last reports now (a task calls it as it ends)."""
    writer = (os.environ.get(run_dir.ENV, ""), threading.get_ident())
    if writer in _reports:
        _write(writer)


def _write(writer: tuple[str, int]) -> None:
    directory = run_dir.current()
    if directory is None or str(directory) != writer[0]:
        return  # not on this disk (a remote Dask worker), or the run ended
    with _lock:
        _last_write[writer] = time.monotonic()
        parts = _reports.get(writer, {})
        text = json.dumps([[t, p, r.records, r.total, r.bytes] for (t, p), r in parts.items()])
    # The directory may have gone (the run ended) or the disk be full: progress is optional.
    with contextlib.suppress(OSError):
        run_dir.write_atomically(directory / "progress" / f"{os.getpid()}-{writer[1]}.json", text)


def snapshot(directory: Path | None = None) -> dict[Where, PartitionProgress]:
    """Every partition's last report in the run's directory (this process's, by default)."""
    directory = directory or run_dir.current()
    if directory is None:
        return {}
    parts: dict[Where, PartitionProgress] = {}
    with _lock:
        if _read_in[0] != directory:  # another run: forget the last one's files
            _read.clear()
            _read_in[0] = directory
    try:
        entries = list(os.scandir(directory / "progress"))
    except OSError:
        return {}
    for entry in entries:
        if entry.name.startswith(".") or not entry.name.endswith(".json"):
            continue  # a report being written
        try:
            stat = entry.stat()
        except OSError:
            continue  # removed meanwhile
        version = (stat.st_ino, stat.st_mtime_ns, stat.st_size)  # a report replaces the file
        known = _read.get(entry.path)
        if known is not None and known[0] == version:
            _merge(parts, known[1])
            continue
        try:
            rows = json.loads(Path(entry.path).read_text())
        except (OSError, ValueError):
            continue  # removed meanwhile
        found = {(t, p): PartitionProgress(r, total, b) for t, p, r, total, b in rows}
        _merge(parts, found)
        with _lock:
            _read[entry.path] = (version, found)
    return parts


def _merge(parts: dict[Where, PartitionProgress], found: dict[Where, PartitionProgress]) -> None:
    """A partition reported in several files (announced, then moved by its task; a retried unit
    on another thread) is as far as the furthest says: progress only grows."""
    for where, progress in found.items():
        known = parts.get(where)
        if known is None or progress.records >= known.records:
            parts[where] = progress


def announce(partitions: Iterable[tuple[str, int, int]]) -> None:
    """Every partition the run will move, as (topic, partition, records), at 0: so that the
    display counts those not started yet as waiting."""
    for topic, partition, total in partitions:
        report_progress(topic, partition, 0, total, 0)
    flush_progress()


def reset(directory: Path | None = None) -> None:
    """Forget the reports in the run's directory."""
    directory = directory or run_dir.current()
    if directory is None:
        return
    with _lock:
        for writer in [w for w in _reports if w[0] == str(directory)]:
            del _reports[writer]
            _last_write.pop(writer, None)
    for path in (directory / "progress").glob("*.json"):
        path.unlink(missing_ok=True)
