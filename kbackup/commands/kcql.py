"""`kbackup kcql check "<statements>"` (or `--connector-config FILE`): parsed specs as JSON, or the error."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from kbackup.cli import EXIT_BAD_INPUT, EXIT_OK


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("kcql", help="work with KCQL statements")
    actions = parser.add_subparsers(dest="kcql_command", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check", help="parse statements and print the specs as JSON (exit 2 on an error)"
    )
    check.add_argument("text", nargs="?", help="KCQL statements")
    check.add_argument("--connector-config", type=Path, help="a Kafka Connect S3 sink .properties file")
    check.add_argument(
        "--restore",
        action="store_true",
        help="parse as restore statements (INSERT INTO topic SELECT * FROM bucket)",
    )
    check.set_defaults(handler=run_check)


def run_check(args: argparse.Namespace) -> int:
    from kcql import KcqlError, parse_backup, parse_connector_config, parse_restore

    output: dict[str, Any] | list[dict[str, Any]]
    try:
        if args.connector_config:
            config = parse_connector_config(args.connector_config.read_text())
            output = {
                "specs": [{"kind": "backup", **s.model_dump(mode="json")} for s in config.specs],
                "topics": list(config.topics),
                "transforms": [t.model_dump(mode="json") for t in config.transforms],
            }
        elif args.text:
            specs = parse_restore(args.text) if args.restore else parse_backup(args.text)
            output = [
                {"kind": "restore" if args.restore else "backup", **s.model_dump(mode="json")} for s in specs
            ]
        else:
            print("kbackup kcql check: give KCQL text or --connector-config FILE", file=sys.stderr)
            return EXIT_BAD_INPUT
    except (KcqlError, OSError) as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_BAD_INPUT
    print(json.dumps(output, indent=2))
    return EXIT_OK
