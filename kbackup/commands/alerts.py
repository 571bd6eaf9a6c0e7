"""`kbackup alerts setup --webhook URL`: alert a webhook when backup or restore runs fail."""

from __future__ import annotations

import argparse
import sys

from kbackup.cli import EXIT_FAILED, EXIT_OK


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("alerts", help="set up failure alerts on the Prefect server")
    actions = parser.add_subparsers(dest="alerts_command", metavar="ACTION", required=True)
    setup = actions.add_parser(
        "setup", help="create the webhook block and the automation (PREFECT_API_URL must be set)"
    )
    setup.add_argument("--webhook", required=True, help="URL that receives a JSON POST {subject, body}")
    setup.set_defaults(handler=run_setup)


def run_setup(args: argparse.Namespace) -> int:
    from prefect.settings import PREFECT_API_URL

    from kbackup.alerts import setup_alerts

    if not PREFECT_API_URL.value():
        print(
            "kbackup alerts: set PREFECT_API_URL to the Prefect server that runs the deployments",
            file=sys.stderr,
        )
        return EXIT_FAILED
    block_id, automation_id = setup_alerts(args.webhook)
    print(
        f"alerts: webhook block {block_id} and automation {automation_id} created on {PREFECT_API_URL.value()}"
    )
    return EXIT_OK
