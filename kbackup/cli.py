"""The `kbackup` command line: a thin argparse front over the flows.

Exit codes: 0 success, 1 a failed run, 2 bad input (see ../shared/spec/flows.md).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from kbackup import __version__

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2

# Explicit list of subcommand modules, in the order `--help` shows them.
_COMMAND_MODULES = ("backup", "restore", "verify", "ls", "kcql", "alerts")


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
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
