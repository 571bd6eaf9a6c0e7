"""A worker ends with the run's process (tasks.runtime.parent_death): at once when the run is
already gone when it starts, and when the run is SIGKILLed later; it takes SIGTERM, which a
worker inherits blocked from kbackup.

A "run" here is a small Python process that blocks SIGINT and SIGTERM as kbackup does and starts
a "worker" (another), which inherits that signal mask as a process pool's workers do."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.runtime.parent_death import ORPHAN_EXIT_STATUS, parent_is_gone

REPO = Path(__file__).resolve().parents[2]
GONE_WITHIN_S = 10

# The worker: ends with the run `argv[1]`, says "ready", then answers each line with "pong".
WORKER = """
import sys
from tasks.runtime.parent_death import end_with_parent
end_with_parent(int(sys.argv[1]))
print("ready", flush=True)
for line in sys.stdin:
    print("pong", flush=True)
"""

# The run: starts the worker on its own stdin and stdout, prints the worker's pid, waits.
RUN = """
import os, signal, subprocess, sys, time
if sys.argv[2] == "blocks":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
worker = subprocess.Popen([sys.executable, "-c", sys.argv[1], str(os.getpid())])
print(worker.pid, flush=True)
time.sleep(600)
"""


def _environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _signal_masks(pid: int) -> dict[str, int]:
    """The main thread's SigBlk and SigCgt masks (bit n-1: signal n)."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {
        k: int(v, 16) for k, _, v in (line.partition(":\t") for line in lines) if k in ("SigBlk", "SigCgt")
    }


def _gone(worker: int) -> bool:
    """Whether `worker` is gone within GONE_WITHIN_S."""
    deadline = time.monotonic() + GONE_WITHIN_S
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _alive(worker)


@pytest.fixture(params=["blocks"])
def run(request: pytest.FixtureRequest) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """(the run, its worker's pid), once the worker is ready; both SIGKILLed at the end. The run
    blocks SIGINT and SIGTERM as kbackup's command line does, unless parametrized "keeps" (as a
    deployment's flow-run process)."""
    process = subprocess.Popen(
        [sys.executable, "-c", RUN, WORKER, request.param],
        env=_environment(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    worker = int(process.stdout.readline())
    try:
        assert process.stdout.readline() == "ready\n"
        yield process, worker
    finally:
        process.kill()
        process.wait(30)
        if _alive(worker):
            os.kill(worker, signal.SIGKILL)


def test_the_parent_is_gone_once_the_process_has_another() -> None:
    assert not parent_is_gone(os.getppid())
    assert parent_is_gone(os.getpid())


def test_a_worker_whose_run_is_already_gone_exits_at_once() -> None:
    # Told a run that is not its parent (this process is): as if the run died while it imported.
    gone = os.getppid()
    worker = subprocess.run(
        [sys.executable, "-c", WORKER, str(gone)],
        env=_environment(),
        input="",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert worker.returncode == ORPHAN_EXIT_STATUS, worker.stderr
    assert "ready" not in worker.stdout
    assert f"the run's process {gone} is gone; exiting" in worker.stderr


def test_a_worker_takes_sigterm_and_ignores_it_while_its_run_lives(
    run: tuple[subprocess.Popen[str], int],
) -> None:
    process, worker = run
    masks = _signal_masks(worker)
    term = 1 << (signal.SIGTERM - 1)
    assert masks["SigCgt"] & term and not masks["SigBlk"] & term, masks
    os.kill(worker, signal.SIGTERM)
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write("ping\n")
    process.stdin.flush()
    assert process.stdout.readline() == "pong\n"  # still there: the run decides when it stops


@pytest.mark.parametrize("run", ["blocks", "keeps"], indirect=True)
def test_a_worker_ends_when_its_run_is_killed(run: tuple[subprocess.Popen[str], int]) -> None:
    process, worker = run
    process.kill()
    process.wait(30)
    assert _gone(worker), f"the worker outlived its killed run by {GONE_WITHIN_S} s"


@pytest.mark.parametrize("run", ["keeps"], indirect=True)
def test_a_worker_of_a_run_that_keeps_sigterm_ends_on_it(run: tuple[subprocess.Popen[str], int]) -> None:
    """A deployment's flow-run process does not block SIGTERM; a cancel signals its process group,
    and its workers end at once, as they did before they watched their run."""
    _process, worker = run
    assert not _signal_masks(worker)["SigCgt"] & (1 << (signal.SIGTERM - 1))
    os.kill(worker, signal.SIGTERM)
    assert _gone(worker), "the worker outlived a SIGTERM its run did not block"
