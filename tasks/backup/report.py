"""The backup's result and its report: the per-partition table and the summary, rendered once —
the same rows and text for the flow run's artifacts and the command line's output."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from layout.access import describe_capture
from layout.manifest import Manifest, PartitionEntry
from layout.schemas import describe
from tasks.backup.plan import BackupPlan
from tasks.backup.verify import VerifyReport
from tasks.runtime.overview import MANY_ROWS, TOP_ROWS, Condensed, condensed


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


def condensed_rows(result: BackupResult) -> Condensed | None:
    """Past MANY_ROWS partitions, the table for reading: per-topic totals and the slowest and
    largest partitions (None: the whole table reads well)."""
    return condensed(
        partition_rows(result),
        topic=lambda row: str(row["topic"]),
        sums=("records", "bytes", "objects", "gaps", "seconds"),
        largest="records",
        slowest="seconds",
    )


def summary(result: BackupResult) -> str:
    """The summary in markdown (plain enough for a terminal): the `backup-summary` artifact and the
    command line's output."""
    manifest, verification = result.manifest, result.verification
    gaps = [
        f"- {p.topic}/{p.partition}: offsets {g.first}–{g.last} ({g.cause})"
        for p in manifest.partitions
        for g in p.gaps
    ]
    if len(gaps) > MANY_ROWS:  # a compacted topic: gaps in every partition
        partitions = sum(1 for p in manifest.partitions if p.gaps)
        left_out = len(gaps) - TOP_ROWS
        gaps = [
            *gaps[:TOP_ROWS],
            f"- … {left_out} more gaps, {len(gaps)} in {partitions} partitions (all in the manifest)",
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
            f"- access rules: {describe_capture(manifest.access)}",
            *(["", "## Offset gaps", *gaps] if gaps else []),
            *(
                ["", "## Registry schemas", *(f"- {describe(s)}" for s in manifest.schemas)]
                if manifest.schemas
                else []
            ),
        ]
    )


def publish(result: BackupResult) -> None:
    """The result as the flow run's artifacts: the partition table, past MANY_ROWS partitions the
    slowest and largest of them, and the summary."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    key = result.manifest.backup_id
    create_table_artifact(table=partition_rows(result), key="backup-partitions", description=f"Backup {key}")
    if (short := condensed_rows(result)) is not None:
        create_table_artifact(
            table=short.rows,
            key="backup-partitions-slowest-largest",
            description=f"Backup {key}: the slowest and largest {len(short.rows)} of {short.of} partitions "
            "(all of them: the backup-partitions artifact)",
        )
    create_markdown_artifact(key="backup-summary", markdown=summary(result))
