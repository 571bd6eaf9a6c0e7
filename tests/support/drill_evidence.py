"""Drill evidence documents made by hand (layout/drills.py), for the tests of what reads them
(`kbackup status`, `kbackup ls`) without running a drill."""

from __future__ import annotations

from datetime import datetime, timedelta

from layout.drills import DrillEvidence, DrillPartition, DrillTopic, scratch_prefix
from layout.manifest import Manifest


def evidence(
    bucket: str,
    prefix: str,
    manifest: Manifest,
    finished_at: datetime,
    seconds: float = 12.5,
    result: str = "passed",
    drill_id: str | None = None,
) -> DrillEvidence:
    """A drill of `manifest`'s restore point that restored each of its topics whole, in `seconds`."""
    drill_id = drill_id or finished_at.strftime("%Y%m%dT%H%M%SZ-") + "abc123"
    ok = result == "passed"
    topics = tuple(
        DrillTopic(
            topic=topic.name,
            scratch_topic=f"{scratch_prefix(drill_id)}{topic.name}",
            records=sum(p.record_count for p in manifest.partitions if p.topic == topic.name),
            bytes=sum(p.byte_count for p in manifest.partitions if p.topic == topic.name),
            seconds=seconds,
            records_per_second=100.0,
            partitions=tuple(
                DrillPartition(
                    partition=p.partition,
                    expected_records=p.record_count,
                    restored_records=p.record_count,
                    expected_digest=p.records_digest,
                    restored_digest=p.records_digest if ok else "sha256:" + "0" * 64,
                    ok=ok,
                    problem=None if ok else "digest differs",
                )
                for p in manifest.partitions
                if p.topic == topic.name
            ),
        )
        for topic in manifest.topics
    )
    return DrillEvidence(
        drill_id=drill_id,
        bucket=bucket,
        prefix=prefix,
        backup_id=manifest.backup_id,
        manifest_key=f"{prefix}/_manifests/{manifest.backup_id}.json",
        manifest_sha256="0" * 64,
        started_at=finished_at - timedelta(seconds=seconds),
        finished_at=finished_at,
        seconds=seconds,
        records=manifest.record_count,
        records_per_second=manifest.record_count / seconds,
        cluster="127.0.0.1:9092",
        scratch_prefix=scratch_prefix(drill_id),
        sample="all",
        result="passed" if ok else "failed",
        problem=None if ok else f"{manifest.partitions[0].topic}/0: digest differs",
        topics=topics,
    )
