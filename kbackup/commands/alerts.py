"""`kbackup alerts setup --webhook URL [--rpo 2h] [--deployment backup/backup ...]`: alert a webhook
when a backup, restore or drill run fails, and when a backup deployment commits no restore point
within its RPO (kbackup/alerts.py)."""

from __future__ import annotations

import argparse
import sys

from kbackup.cli import EXIT_FAILED, EXIT_OK


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("alerts", help="set up failure and RPO alerts on the Prefect server")
    actions = parser.add_subparsers(dest="alerts_command", metavar="ACTION", required=True)
    setup = actions.add_parser(
        "setup",
        help="create the webhook block and the automations (PREFECT_API_URL must be set)",
        description="Create or replace the webhook block, the automation that alerts on failed, crashed "
        "or timed-out runs, and one automation per backup deployment that alerts when it has committed "
        "no restore point within its RPO: --rpo, else the deployment's rpo parameter, else twice its schedule's "
        "interval. A deployment with no active schedule and no RPO gets no RPO alert (said on stderr).",
    )
    setup.add_argument("--webhook", required=True, help="URL that receives a JSON POST {subject, body}")
    setup.add_argument(
        "--rpo",
        metavar="DURATION",
        help="the recovery point objective of every backup deployment set up: 45s, 90m, 2h, 1d, 1w "
        "(default: the deployment's rpo parameter, else twice its schedule's interval)",
    )
    setup.add_argument(
        "--deployment",
        action="append",
        default=[],
        metavar="NAME",
        help="a backup deployment to alert on, FLOW/DEPLOYMENT (backup/backup); repeatable "
        "(default: every deployment of the backup flow)",
    )
    setup.set_defaults(handler=run_setup)


def run_setup(args: argparse.Namespace) -> int:
    from uuid import UUID

    from prefect.settings import PREFECT_API_URL

    from kbackup.alerts import (
        AUTOMATION_NAME,
        RPO_AUTOMATION_PREFIX,
        plan_rpo_alerts,
        setup_alerts,
        setup_rpo_alerts,
    )
    from kbackup.console import table
    from kbackup.rpo import format_duration

    if not PREFECT_API_URL.value():
        print(
            "kbackup alerts: set PREFECT_API_URL to the Prefect server that runs the deployments",
            file=sys.stderr,
        )
        return EXIT_FAILED
    # The deployments and their RPOs first: an unknown deployment or a bad RPO (exit 2) is said
    # before anything is created.
    planned = plan_rpo_alerts(args.deployment, args.rpo)
    block_id, automation_id = setup_alerts(args.webhook)
    print(
        f"alerts: webhook block {block_id} and automation {AUTOMATION_NAME} {automation_id} "
        f"created on {PREFECT_API_URL.value()}"
    )
    alerts = setup_rpo_alerts(UUID(block_id), planned)
    rows = [
        {
            "deployment": alert.deployment,
            "RPO": format_duration(alert.choice.rpo) if alert.choice.rpo else "-",
            "from": alert.choice.why,
            "automation": f"{RPO_AUTOMATION_PREFIX}{alert.deployment} {alert.automation_id}"
            if alert.automation_id
            else "none",
        }
        for alert in alerts
    ]
    if rows:
        print("RPO alerts:")
        print(table(rows))
    else:
        print("RPO alerts: no deployment of the backup flow on the server")
    for alert in alerts:
        if alert.automation_id is None:
            print(f"kbackup alerts: no RPO alert for {alert.deployment}: {alert.choice.why}", file=sys.stderr)
    return EXIT_OK
