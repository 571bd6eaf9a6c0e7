"""Terminal output for the commands: a progress line, tables, sizes. Plain text, no colours."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from core.errors import InputError
from tasks import progress

# The terminal log formatter moved to tasks.log_format (worker processes install it too); its old
# name stays here only until tests/unit/test_errors.py imports it from there.
from tasks.run_dir import run_dir


def human_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(count) < 1000 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    if not rows:
        return "(nothing)"
    columns = list(columns or rows[0].keys())
    cells = [[str(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += [
        "  ".join(
            v.rjust(w) if v.replace(".", "").isdigit() else v.ljust(w) for v, w in zip(r, widths, strict=True)
        )
        for r in cells
    ]
    return "\n".join(lines)


def _progress_line() -> str:
    parts = progress.snapshot()
    records = sum(p.records for p in parts.values())
    total = sum(p.total for p in parts.values())
    written = sum(p.bytes for p in parts.values())
    done = sum(1 for p in parts.values() if p.total and p.records >= p.total)
    width = 30
    filled = int(width * records / total) if total else 0
    bar = "#" * filled + "." * (width - filled)
    return f"[{bar}] {records}/{total} records  {human_bytes(written)}  {done}/{len(parts)} partitions"


@contextmanager
def progress_bar(enabled: bool | None = None) -> Iterator[None]:
    """Redraw a one-line progress bar on stderr while the body runs (only on a terminal). The body
    runs with a run directory of its own (tasks.run_dir): the tasks' progress comes through it,
    and a stop request reaches them through it, from whichever process they run in."""
    enabled = sys.stderr.isatty() if enabled is None else enabled
    with run_dir():
        progress.reset()
        with _redrawn(enabled):
            yield


@contextmanager
def _redrawn(enabled: bool) -> Iterator[None]:
    stop = threading.Event()

    def draw() -> None:
        while not stop.wait(0.5):
            sys.stderr.write("\r" + _progress_line())
            sys.stderr.flush()

    thread = threading.Thread(target=draw, daemon=True) if enabled else None
    if thread:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        if thread:
            thread.join()
            sys.stderr.write("\r" + _progress_line() + "\n")


class LocationError(InputError):
    """A command's location argument is not `s3://bucket[/prefix]` (or `bucket:prefix`)."""

    def __init__(self, url: str) -> None:
        self.url = url
        super().__init__(f"expected s3://bucket[/prefix], got {url!r}")


def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/prefix` (or `bucket:prefix`) → (bucket, prefix); LocationError if neither."""
    if url.startswith("s3://"):
        bucket, _, prefix = url[len("s3://") :].partition("/")
    else:
        bucket, _, prefix = url.partition(":")
    if not bucket:
        raise LocationError(url)
    return bucket, prefix.strip("/")
