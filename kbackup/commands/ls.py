"""`kbackup ls s3://bucket/prefix`: the backups under a prefix, their windows, topics and sizes,
the registry schemas they hold, and the restore drills of its restore points with their results
and recovery-time trend."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from kbackup.cli import EXIT_OK
from kbackup.console import human_bytes, parse_s3_url, table

if TYPE_CHECKING:
    from layout.drills import DrillEvidence
    from layout.manifest import Manifest
    from layout.schemas import StoredSchema


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("ls", help="list the backups under a prefix")
    parser.add_argument("location", help="s3://bucket/prefix")
    parser.add_argument("--objects", action="store_true", help="also list every object of every backup")
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
    return EXIT_OK


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
