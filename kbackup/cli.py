"""The `kbackup` command line: a thin argparse front over the flows.

Exit codes: 0 success, 1 a failed run, 2 bad input, 128 + the signal's number when SIGINT (130)
or SIGTERM (143) stopped the run.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from kbackup import __version__

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2

# Explicit list of subcommand modules, in the order `--help` shows them.
_COMMAND_MODULES = ("backup", "restore", "verify", "ls", "kcql", "alerts")
# The commands that run a Prefect flow (and so need a Prefect API, unless --no-flow).
_FLOW_COMMANDS = ("backup", "restore", "verify")
# After the first SIGINT/SIGTERM the run has this long to abort its transactions and stop its
# tasks; then (or at a second signal) the process exits at once.
STOP_GRACE_S = 20.0


def add_task_runner_argument(parser: argparse.ArgumentParser) -> None:
    """`--task-runner`: where the per-partition tasks run (flows/runners.py; checked with the
    other parameters, so that building the parser imports nothing heavy)."""
    parser.add_argument(
        "--task-runner",
        default="auto",
        metavar="auto|threads|processes|dask[=ADDRESS]",
        help="where partitions are processed: threads, a process pool, a local Dask cluster or a Dask "
        "scheduler's address (default auto: threads for small runs, processes otherwise)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kbackup",
        description="Back up Apache Kafka topics to S3 and restore them, configured with KCQL.",
    )
    parser.add_argument("--version", action="version", version=f"kbackup {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(f"kbackup.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"kbackup.commands.{name}":
                raise
            continue  # subcommand not built yet
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Without PREFECT_API_URL a run starts a temporary Prefect server; its 20 s default start
    # timeout is too short on a busy two-core machine. An explicit setting still wins.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    # The temporary server would try to send usage telemetry; production sites often have no route
    # out, and its failure is logged as an ERROR on an otherwise clean run.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    if args.command not in _FLOW_COMMANDS:
        return int(args.handler(args))
    server = start_prefect_api() if not getattr(args, "no_flow", False) else None
    with stop_on_signals(on_exit=server.stop if server else lambda: None) as stopped_by:
        code = int(args.handler(args))
    if stopped_by:
        print(f"kbackup {args.command}: stopped by {stopped_by[0].name}", file=sys.stderr)
        return 128 + stopped_by[0]
    return code


def start_prefect_api() -> Any:
    """A temporary Prefect API for this run when none is configured (PREFECT_API_URL, from the
    environment or a Prefect profile); it stops at exit, after Prefect has sent its last logs."""
    from prefect.settings import get_current_settings

    if get_current_settings().api.url:
        return None
    from kbackup.temporary_api import TemporaryApi

    server = TemporaryApi()
    server.start()  # registers its own stop at exit
    os.environ["PREFECT_API_URL"] = server.api_url
    return server


_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


@contextlib.contextmanager
def stop_on_signals(on_exit: Callable[[], None]) -> Iterator[list[signal.Signals]]:
    """SIGINT and SIGTERM ask the run to stop (tasks.shutdown): loops end, open transactions are
    aborted, no manifest is written, and the flow fails as it would on an error. A second signal,
    or STOP_GRACE_S without the run ending, exits at once after `on_exit`.

    The signals are blocked in every thread and taken by one thread of ours with sigtimedwait, so
    that a stop request is made the moment a signal arrives, whatever handlers Prefect installs
    while a flow runs (its SIGTERM handler would otherwise unwind the flow first and wait for the
    task threads to finish their work). Yields the list the first signal is appended to."""
    from tasks.shutdown import request_stop

    received: list[signal.Signals] = []
    done = threading.Event()

    def exit_now(signum: int) -> None:
        on_exit()
        os._exit(128 + signum)

    def watch() -> None:
        while not done.is_set():
            info = signal.sigtimedwait(_STOP_SIGNALS, 0.2)
            if info is None:
                continue
            sig = signal.Signals(info.si_signo)
            if received:
                print(f"kbackup: {sig.name} again: exiting now", file=sys.stderr, flush=True)
                exit_now(received[0])
            received.append(sig)
            request_stop(f"{sig.name} received")
            print(
                f"kbackup: {sig.name} received: stopping (open transactions are aborted, no manifest "
                "is written); send it again to exit at once",
                file=sys.stderr,
                flush=True,
            )
            timer = threading.Timer(STOP_GRACE_S, exit_now, args=(sig,))
            timer.daemon = True
            timer.start()

    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    watcher = threading.Thread(target=watch, name="kbackup-signals", daemon=True)
    watcher.start()
    try:
        yield received
    finally:
        done.set()
        watcher.join()
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


if __name__ == "__main__":
    sys.exit(main())
