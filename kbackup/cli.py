"""The `kbackup` command line: a thin argparse front over the flows.

Exit codes: 0 success, 1 a failed run, 2 bad input, 128 + the signal's number when SIGINT (130)
or SIGTERM (143) stopped the run.

An expected failure is a core.errors.KbackupError: it is said in one message on stderr, never with
a traceback, and exits 2 when it is an InputError (nothing ran), else 1. Any other exception is a
bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from core.errors import InputError, KbackupError
from kbackup import __version__

if TYPE_CHECKING:
    from prefect import State
    from pydantic import ValidationError

    from kbackup.temporary_api import TemporaryApi

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2

# Explicit list of subcommand modules, in the order `--help` shows them.
_COMMAND_MODULES = ("backup", "restore", "drill", "verify", "prune", "ls", "status", "kcql", "alerts")
# The commands that run a Prefect flow (and so need a Prefect API).
_FLOW_COMMANDS = ("backup", "restore", "drill", "verify", "prune")
# After the first SIGINT/SIGTERM the run has this long to abort its transactions and stop its
# tasks; then (or at a second signal) the process exits at once.
STOP_GRACE_S = 20.0


def exit_code_of(error: KbackupError) -> int:
    """2 when the input was not valid (an InputError: nothing ran), else 1 (a failed run)."""
    return EXIT_BAD_INPUT if isinstance(error, InputError) else EXIT_FAILED


def report_error(command: str, error: KbackupError, what: str = "") -> int:
    """Say an expected error on stderr as `kbackup COMMAND: WHAT<its message>`, never with a
    traceback; returns its exit code."""
    print(f"kbackup {command}: {what}{error}", file=sys.stderr)
    return exit_code_of(error)


def failed_run(command: str, state: State[Any], what: str, failed: str = "") -> int:
    """The exit code of a flow run that did not complete: the expected error that failed it (a
    KbackupError) said in one line as `kbackup COMMAND: FAILED<its message>`; any other exception
    is a bug and is raised, with its traceback. A run that ended without one (cancelled, crashed)
    is said as `kbackup COMMAND: WHAT ended <its state>`."""
    try:
        state.result()  # raises what failed the run
    except KbackupError as error:
        return report_error(command, error, failed)
    print(f"kbackup {command}: {what} ended {state.name}", file=sys.stderr)
    return EXIT_FAILED


def invalid_parameters(error: ValidationError) -> str:
    """A run's parameters that pydantic refused, on one line: `field: reason; …`."""
    return "; ".join(
        f"{'.'.join(str(part) for part in e['loc']) or 'parameters'}: {e['msg'].removeprefix('Value error, ')}"
        for e in error.errors()
    )


def add_concurrency_argument(parser: argparse.ArgumentParser, work: str) -> None:
    """`--concurrency`: the task runner's workers, by default the cores this process may use."""
    from core.machine import default_workers

    cores = default_workers()
    parser.add_argument(
        "--concurrency",
        type=int,
        default=cores,
        help=f"workers: {work} at once (default: the cores this process may use, {cores} here)",
    )


def add_task_runner_argument(parser: argparse.ArgumentParser) -> None:
    """`--task-runner`: where the per-partition tasks run (tasks/runtime/task_runners.py; checked with the
    other parameters, so that building the parser imports nothing heavy)."""
    parser.add_argument(
        "--task-runner",
        default="auto",
        metavar="auto|threads|processes|dask[=ADDRESS]",
        help="where partitions are processed: threads, a process pool, a local Dask cluster or a Dask "
        "scheduler's address (default auto: threads for small runs, processes otherwise)",
    )


def add_full_table_argument(parser: argparse.ArgumentParser) -> None:
    """`--full-table`: the report's per-partition table in full; by default, past 20 partitions,
    per-topic totals and the slowest and largest partitions (tasks/runtime/overview.py)."""
    parser.add_argument(
        "--full-table",
        action="store_true",
        help="print a row per partition in the report however many there are (default: past 20, "
        "per-topic totals and the slowest and largest partitions)",
    )


def add_credentials_block_arguments(parser: argparse.ArgumentParser) -> None:
    """The names of Prefect blocks holding the credentials (README, "Credentials from Prefect
    blocks"): names only, never a secret."""
    parser.add_argument(
        "--s3-credentials-block",
        metavar="NAME",
        help="name of a prefect-aws AwsCredentials block for S3 (instead of AWS_*)",
    )
    parser.add_argument(
        "--kafka-password-block",
        metavar="NAME",
        help="name of a Prefect Secret block: the Kafka SASL password, or librdkafka settings as JSON",
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
        return run_handler(args)
    # First of all, as its start takes seconds: a temporary Prefect API, unless one is configured.
    server = start_temporary_api()

    def stop_server() -> None:
        if server is not None:
            server.stop()

    try:
        # The signals are taken before the flow's modules are imported: threads that native
        # libraries start (pyarrow's jemalloc) must inherit their blocking.
        with stop_on_signals(on_exit=stop_server) as stopped_by:
            server = use_prefect_api(args.command, server)
            from tasks.runtime.log_format import expected_errors_without_traceback

            expected_errors_without_traceback()  # Prefect's logs of a failed run: one line, no traceback
            with server_settings(server):
                code = EXIT_FAILED if stopped_by else run_handler(args)
    finally:
        # Nothing of the run's objects is needed any more: without this, the interpreter's last
        # garbage collection walks them all at exit (about 1 s after a flow run, measured).
        gc.freeze()
    if stopped_by:
        print(f"kbackup {args.command}: stopped by {stopped_by[0].name}", file=sys.stderr)
        return 128 + stopped_by[0]
    return code


def run_handler(args: argparse.Namespace) -> int:
    """The command's exit code; an expected error it did not report itself is reported here."""
    try:
        return int(args.handler(args))
    except KbackupError as error:
        return report_error(args.command, error)


def start_temporary_api() -> TemporaryApi | None:
    """Start a temporary Prefect API server, without waiting for it, unless the environment or the
    profiles file names an API (a cheap guess: `use_prefect_api` asks Prefect's settings). Its start
    takes seconds (the server's imports), which overlap this process's own imports this way."""
    from kbackup.temporary_api import TemporaryApi, api_maybe_configured

    if api_maybe_configured():
        return None
    server = TemporaryApi()
    server.start()  # registers its own stop at exit
    return server


def use_prefect_api(command: str, server: TemporaryApi | None) -> TemporaryApi | None:
    """The Prefect API of this run: the configured one (PREFECT_API_URL, from the environment or a
    Prefect profile; a temporary server started for nothing is stopped), else the temporary API,
    once it answers. Meanwhile the command's flow is imported and the run warmed up. The
    temporary API stops at exit, after Prefect has sent the run's last logs and events."""
    from kbackup.temporary_api import TemporaryApi

    importlib.import_module(f"flows.{command}")
    from prefect.settings import get_current_settings

    if get_current_settings().api.url:
        if server is not None:
            server.stop()
        return None
    if server is None:
        server = TemporaryApi()
        server.start()
    _warm_up()
    server.wait_ready()
    from prefect.context import refresh_global_settings_context

    # In the environment (the task runner's worker processes inherit it) and in Prefect's settings,
    # which were read when Prefect was imported.
    os.environ["PREFECT_API_URL"] = server.api_url
    refresh_global_settings_context()
    print(
        f"kbackup: no PREFECT_API_URL; this run is recorded by a temporary Prefect API on {server.address}",
        file=sys.stderr,
    )
    return server


def _warm_up() -> None:
    """While the temporary API starts: what the run would otherwise do first once it is up and that
    needs no API — the modules Prefect imports on a flow's first call, and the S3 client's service
    model (boto3 caches it for the clients the tasks create)."""
    for name in (
        "prefect.flow_engine",
        "prefect.task_engine",
        "prefect.utilities.visualization",
        "fastapi.encoders",
    ):
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    from tasks.services.object_store import open_store

    with contextlib.suppress(Exception):  # a bad setting is reported by the run itself
        open_store()


def server_settings(server: TemporaryApi | None) -> contextlib.AbstractContextManager[Any]:
    """Prefect settings for a run on the temporary API: no flow-run heartbeats. They exist for a
    server's automations to notice a run that died; the temporary API dies with the run, and a
    heartbeat thread costs up to 1 s at the end of every flow (it sleeps in 1 s steps)."""
    if server is None:
        return contextlib.nullcontext()
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    return temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})


_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


@contextlib.contextmanager
def stop_on_signals(on_exit: Callable[[], None]) -> Iterator[list[signal.Signals]]:
    """SIGINT and SIGTERM ask the run to stop (tasks.runtime.shutdown): loops end, open transactions are
    aborted, no manifest is written, and the flow fails as it would on an error. A second signal,
    or STOP_GRACE_S without the run ending, exits at once after `on_exit`.

    The signals are blocked in every thread and taken by one thread of ours with sigtimedwait, so
    that a stop request is made the moment a signal arrives, whatever handlers Prefect installs
    while a flow runs (its SIGTERM handler would otherwise unwind the flow first and wait for the
    task threads to finish their work). Yields the list the first signal is appended to."""
    from tasks.runtime.shutdown import request_stop

    received: list[signal.Signals] = []
    done = threading.Event()

    def exit_now(signum: int) -> None:
        on_exit()
        os._exit(128 + signum)

    def watch() -> None:
        while not done.is_set():
            info = signal.sigtimedwait(_STOP_SIGNALS, 0.05)  # the join at the end waits up to this long
            if info is None or info.si_signo not in _STOP_SIGNALS:
                continue  # a wait a tracer (py-spy) interrupted can return a zeroed or junk siginfo
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
