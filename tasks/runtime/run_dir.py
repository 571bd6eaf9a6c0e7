"""The directory through which one run's tasks talk to the process that started the run, wherever
the tasks run: threads, a process pool, or the worker processes of a local Dask cluster.

Tasks find it through the environment variable KBACKUP_RUN_DIR (the process pool ships the
flow's environment with every task; the flow sets it on Dask workers). In it they write their
progress (tasks.runtime.progress) and poll for a stop file (tasks.runtime.shutdown). Every file is written to a
temporary name and renamed, so a reader never sees half a file. Workers that do not share the
disk (a remote Dask cluster) find no such directory: no progress bar, no stop file, never an error.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

ENV = "KBACKUP_RUN_DIR"


def current() -> Path | None:
    """This run's directory, if one is set up and exists here."""
    value = os.environ.get(ENV)
    if not value:
        return None
    path = Path(value)
    return path if path.is_dir() else None


def write_atomically(path: Path, text: str) -> None:
    """Write `text` to `path` so that a concurrent reader sees the old or the new content."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


@contextlib.contextmanager
def run_dir() -> Iterator[Path]:
    """The run's directory for the body: the one already set up (the command line makes it before
    the flow runs), else a new one, set in the environment and removed afterwards."""
    existing = current()
    if existing is not None:
        yield existing
        return
    previous = os.environ.get(ENV)
    path = Path(tempfile.mkdtemp(prefix="kbackup-run-"))
    (path / "progress").mkdir()
    os.environ[ENV] = str(path)
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = previous
        shutil.rmtree(path, ignore_errors=True)
