"""Per-partition progress of a run, written by its tasks wherever they run.

Exports and restores call `report_progress`; it writes one small JSON file per partition into the
run's directory (tasks.runtime.run_dir), replaced atomically and at most every REPORT_INTERVAL_S unless
the partition is done. The command line draws its progress bar from `snapshot()`, the flows
publish it as a Prefect progress artifact; `snapshot()` reads again only the files replaced since
its last call (a run of 600 partitions is polled every 0.5 s). Without a run directory (a worker of a remote Dask
cluster, a plain function call) reports are dropped: progress is never worth an error.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from tasks.runtime import run_dir

REPORT_INTERVAL_S = 0.25


@dataclass(frozen=True)
class PartitionProgress:
    records: int = 0
    total: int = 0
    bytes: int = 0


_lock = threading.Lock()
_last_report: dict[tuple[str, str, int], float] = {}
# snapshot()'s last reading of each file of one run's directory: the file's (inode, mtime, size),
# its partition and progress
_read: dict[str, tuple[tuple[int, int, int], tuple[str, int], PartitionProgress]] = {}
_read_in: list[Path | None] = [None]


def _file(directory: Path, topic: str, partition: int) -> Path:
    return directory / "progress" / f"{urllib.parse.quote(topic, safe='')}.{partition}.json"


def report_progress(topic: str, partition: int, records: int, total: int, written_bytes: int) -> None:
    directory = run_dir.current()
    if directory is None:
        return
    key = (str(directory), topic, partition)
    now = time.monotonic()
    with _lock:
        if records < total and now - _last_report.get(key, 0.0) < REPORT_INTERVAL_S:
            return
        _last_report[key] = now
    text = json.dumps(
        {"topic": topic, "partition": partition, "records": records, "total": total, "bytes": written_bytes}
    )
    # The directory may have gone (the run ended) or the disk be full: progress is optional.
    with contextlib.suppress(OSError):
        run_dir.write_atomically(_file(directory, topic, partition), text)


def snapshot(directory: Path | None = None) -> dict[tuple[str, int], PartitionProgress]:
    """Every partition's last report in the run's directory (this process's, by default)."""
    directory = directory or run_dir.current()
    if directory is None:
        return {}
    parts: dict[tuple[str, int], PartitionProgress] = {}
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
            parts[known[1]] = known[2]
            continue
        try:
            data = json.loads(Path(entry.path).read_text())
        except (OSError, ValueError):
            continue  # removed meanwhile
        where = (data["topic"], data["partition"])
        parts[where] = PartitionProgress(data["records"], data["total"], data["bytes"])
        with _lock:
            _read[entry.path] = (version, where, parts[where])
    return parts


def reset(directory: Path | None = None) -> None:
    """Forget the reports in the run's directory."""
    directory = directory or run_dir.current()
    if directory is None:
        return
    for path in (directory / "progress").glob("*.json"):
        path.unlink(missing_ok=True)
