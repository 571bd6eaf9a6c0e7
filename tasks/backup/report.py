"""The backup's result and its report: the per-partition table and the summary, rendered once —
the same rows and text for the flow run's artifacts and the command line's output."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from layout.manifest import Manifest, PartitionEntry
from layout.schemas import describe
from tasks.backup.plan import BackupPlan
from tasks.backup.verify import VerifyReport


class BackupResult(BaseModel):
    manifest_key: str
    manifest: Manifest
    verification: VerifyReport


def retention_gaps(plan: BackupPlan) -> list[str]:
    """A warning per partition whose records retention deleted before they were backed up."""
    return [
        f"{w.topic}/{w.partition}: offsets {w.retention_gap.first}–{w.retention_gap.last} were deleted "
        "by retention before they were backed up"
        for w in plan.windows
        if w.retention_gap
    ]


def not_wire_format(partitions: list[PartitionEntry]) -> list[str]:
    """A warning per partition whose keys or values under converter avro were not in the wire format."""
    return [
        f"{entry.topic}[{entry.partition}]: {entry.not_wire_format} keys or values are not in the Confluent "
        "wire format (converter avro): kept byte for byte, with no schema id"
        for entry in partitions
        if entry.not_wire_format
    ]


def partition_rows(result: BackupResult) -> list[dict[str, Any]]:
    """The per-partition table: the `backup-partitions` artifact and the command line's table."""
    return [
        {
            "topic": p.topic,
            "partition": p.partition,
            "offsets": f"{p.start_offset}–{p.end_offset}",
            "records": p.record_count,
            "bytes": p.byte_count,
            "objects": len(p.objects),
            "gaps": len(p.gaps),
            "seconds": p.seconds,
            "MB/s": round(p.byte_count / 1e6 / p.seconds, 2) if p.seconds else "",
        }
        for p in result.manifest.partitions
    ]


def summary(result: BackupResult) -> str:
    """The summary in markdown (plain enough for a terminal): the `backup-summary` artifact and the
    command line's output."""
    manifest, verification = result.manifest, result.verification
    gaps = [
        f"- {p.topic}/{p.partition}: offsets {g.first}–{g.last} ({g.cause})"
        for p in manifest.partitions
        for g in p.gaps
    ]
    return "\n".join(
        [
            f"# Backup {manifest.backup_id}",
            f"- manifest: `{result.manifest_key}` (previous: {manifest.previous_backup_id or 'none'})",
            f"- format: {manifest.format}, lossless: {manifest.lossless}",
            f"- {manifest.record_count} records, {manifest.byte_count} bytes, "
            f"{sum(len(p.objects) for p in manifest.partitions)} objects",
            f"- verification ({verification.depth}): {verification.objects_checked} objects checked, "
            f"{verification.objects_decoded} decoded",
            *(["", "## Offset gaps", *gaps] if gaps else []),
            *(
                ["", "## Registry schemas", *(f"- {describe(s)}" for s in manifest.schemas)]
                if manifest.schemas
                else []
            ),
        ]
    )


def publish(result: BackupResult) -> None:
    """The result as the flow run's artifacts: the partition table and the summary."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    key = result.manifest.backup_id
    create_table_artifact(table=partition_rows(result), key="backup-partitions", description=f"Backup {key}")
    create_markdown_artifact(key="backup-summary", markdown=summary(result))
