"""`kbackup ls s3://bucket/prefix`: the backups under a prefix, their windows, topics and sizes,
the registry schemas they hold, and the restore drills of its restore points with their results
and recovery-time trend; with `--details [--point ID]`, the access rules a restore point (default:
the newest) captured: its ACL bindings, principals, SCRAM users, the brokers' dynamic configs, what
was not captured and why."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from kbackup.cli import EXIT_BAD_INPUT, EXIT_OK
from kbackup.console import human_bytes, parse_s3_url, table

if TYPE_CHECKING:
    from layout.access import AccessCapture
    from layout.drills import DrillEvidence
    from layout.manifest import Manifest
    from layout.schemas import StoredSchema


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("ls", help="list the backups under a prefix")
    parser.add_argument("location", help="s3://bucket/prefix")
    parser.add_argument("--objects", action="store_true", help="also list every object of every backup")
    parser.add_argument(
        "--details",
        action="store_true",
        help="also print the access rules a restore point captured (ACL bindings, principals, SCRAM "
        "users, brokers' dynamic configs)",
    )
    parser.add_argument(
        "--point", metavar="ID", help="with --details: the restore point (backup id); default: the newest"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from layout.schemas import merged
    from layout.status import drill_rows
    from tasks.services.drill_store import read_drills
    from tasks.services.manifest_store import read_chain
    from tasks.services.object_store import open_store

    # A KbackupError (a bad location, a missing bucket, a bad manifest) is reported by kbackup.cli.
    bucket, prefix = parse_s3_url(args.location)
    store = open_store()
    store.check_bucket(bucket)
    manifests = read_chain(store, bucket, prefix)
    point_id = getattr(args, "point", None)
    if point_id and not any(m.backup_id == point_id for m in manifests):
        known = ", ".join(m.backup_id for m in manifests[-5:]) or "none"
        print(
            f"kbackup ls: no restore point {point_id!r} under {args.location} (newest: {known})",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    drills = read_drills(store, bucket, prefix)
    print(table(restore_points(manifests, drills)))
    if drills:
        print()
        print(table(drill_rows(drills)))
    schemas = merged(*(m.schemas for m in manifests))
    if schemas:
        print()
        print(table([_schema_row(s, manifests) for s in schemas]))
    if args.objects and manifests:
        objects = [
            {
                "backup": m.backup_id,
                "object": f"s3://{bucket}/{o.key}",
                "offsets": f"{o.first_offset}-{o.last_offset}",
                "records": o.record_count,
                "size": human_bytes(o.size),
            }
            for m in manifests
            for p in m.partitions
            for o in p.objects
        ]
        print()
        print(table(objects))
    if (getattr(args, "details", False) or point_id) and manifests:
        point = next((m for m in manifests if m.backup_id == point_id), manifests[-1])
        print()
        print(details(point))
    return EXIT_OK


def details(manifest: Manifest) -> str:
    """The access rules a restore point captured, in plain text: bindings, principals, SCRAM users,
    the brokers' dynamic configs (listed, not restored), what was not captured and why, and the
    notes on client quotas and SCRAM secrets."""
    from layout.access import BROKER_CONFIGS, SCRAM_USERS, describe_capture

    capture = manifest.access
    title = f"Access rules of restore point {manifest.backup_id}"
    if capture is None:
        return f"{title}: none captured (the backup was written before kbackup recorded them)"
    lines = [f"{title}, captured {capture.captured_at:%Y-%m-%d %H:%M:%S} UTC: {describe_capture(capture)}"]
    lines += ["", "ACL bindings:", _bindings_text(capture)]
    lines += ["", f"Principals: {', '.join(capture.principals) or '(none)'}"]
    users = [
        {"user": u.user, "mechanism": c.mechanism, "iterations": c.iterations}
        for u in capture.scram_users
        for c in u.credentials
    ]
    lines += [
        "",
        "SCRAM users (names, mechanisms and iterations; never a secret):",
        _or_not(capture, SCRAM_USERS, users),
    ]
    configs = [
        {
            "broker": c.broker,
            "config": c.name,
            "value": "(sensitive)" if c.value is None else c.value,
            "source": c.source,
        }
        for c in capture.broker_configs
    ]
    lines += [
        "",
        "Brokers' dynamic configs (listed, not restored):",
        _or_not(capture, BROKER_CONFIGS, configs),
    ]
    if capture.not_captured:
        lines += ["", "Not captured:", *(f"- {line}" for line in capture.not_captured)]
    lines += ["", f"Client quotas: {capture.client_quotas}", f"SCRAM secrets: {capture.scram_secrets}"]
    return "\n".join(lines)


def _or_not(capture: AccessCapture, part: str, rows: list[dict[str, Any]]) -> str:
    """The rows of a part as a table; `(not captured)` or `(none)` without rows."""
    from layout.access import part_captured

    if not part_captured(capture, part):
        return "(not captured)"
    return table(rows) if rows else "(none)"


def _bindings_text(capture: AccessCapture) -> str:
    from layout.access import ACL_BINDINGS

    return _or_not(
        capture,
        ACL_BINDINGS,
        [
            {
                "principal": r.principal,
                "permission": r.permission,
                "operation": r.operation,
                "resource type": r.resource_type,
                "name": r.resource_name,
                "pattern": r.pattern,
                "host": r.host,
            }
            for r in capture.acls
        ],
    )


def restore_points(manifests: list[Manifest], drills: Sequence[DrillEvidence] = ()) -> list[dict[str, Any]]:
    """One row per restore point: when, its chain (the full backup it continues, and how many
    backups restoring it reads), what it adds per topic, its size and the chain's, how the
    objects are protected, and its last drill's result (with drills under the prefix)."""
    from layout.chains import ChainError, chain_of
    from layout.status import last_drills

    drilled = last_drills(drills)

    rows = []
    for m in manifests:
        try:
            chain = chain_of(manifests, m.backup_id)
            chain_text = f"{chain[0].backup_id} ({len(chain)})" if len(chain) > 1 else "full"
            restore_size = human_bytes(sum(c.byte_count for c in chain))
        except ChainError:
            chain_text, restore_size = "broken", "-"
        offsets: dict[str, list[str]] = {}
        for p in m.partitions:
            offsets.setdefault(p.topic, []).append(f"{p.partition}:{p.start_offset}-{p.end_offset}")
        rows.append(
            {
                "restore point": m.backup_id,
                "finished": m.finished_at.strftime("%Y-%m-%d %H:%M:%S"),
                "chain": chain_text,
                "offsets": "; ".join(
                    f"{t} {' '.join(parts[:4])}{f' … ({len(parts)} partitions)' if len(parts) > 4 else ''}"
                    for t, parts in list(offsets.items())[:4]
                )
                + (f"; … ({len(offsets)} topics)" if len(offsets) > 4 else ""),
                "records": m.record_count,
                "size": human_bytes(m.byte_count),
                "restore size": restore_size,
                "format": m.format,
                "schemas": len(m.schemas),
                "protection": m.protection.describe() if m.protection else "-",
            }
        )
        if drills:
            last = drilled.get(m.backup_id)
            rows[-1]["last drill"] = f"{last.result} {last.finished_at:%Y-%m-%d %H:%M}" if last else "-"
    return rows


def _schema_row(schema: StoredSchema, manifests: list[Manifest]) -> dict[str, Any]:
    return {
        "schema id": schema.id,
        "type": schema.schema_type,
        "subjects": ", ".join(f"{v.subject} v{v.version}" for v in schema.versions) or "-",
        "used by": "/".join(schema.used_by),
        "references": ", ".join(r.name for r in schema.references) or "-",
        "backups": sum(1 for m in manifests if any(s.id == schema.id for s in m.schemas)),
    }
