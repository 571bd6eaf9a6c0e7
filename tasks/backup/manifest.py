"""Assembling and writing a backup's manifest once every partition is exported."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import task
from prefect.cache_policies import NO_CACHE

from kcql import render
from layout.manifest import Manifest, PartitionEntry, protection_of
from layout.schemas import Side, StoredSchema
from layout.spec_bridge import is_lossless
from tasks.backup.plan import BackupPlan
from tasks.runtime.retry import RETRY_OPTIONS
from tasks.services.manifest_store import write_manifest


def build_manifest(
    plan: BackupPlan,
    partitions: list[PartitionEntry],
    extension: str,
    schemas: tuple[StoredSchema, ...] = (),
) -> Manifest:
    spec = plan.spec
    return Manifest(
        backup_id=plan.backup_id,
        previous_backup_id=plan.previous_backup_id,
        chain_id=plan.chain_id,
        chain_suffix=plan.chain_suffix,
        started_at=plan.started_at,
        finished_at=datetime.now(UTC),
        kcql=render(spec),
        spec=spec.model_dump(mode="json"),
        format=spec.format.value,
        extension=extension,
        lossless=is_lossless(spec),
        cluster_id=plan.cluster_id,
        topics=plan.topics,
        partitions=tuple(sorted(partitions, key=lambda p: (p.topic, p.partition))),
        consumer_groups=plan.consumer_groups,
        schemas=schemas,
        protection=protection_of(spec.protection, plan.backup_id),
    )


def registry_schema_ids(partitions: list[PartitionEntry]) -> dict[Side, list[int]]:
    """The registry schema ids the exported records name, by side (none unless a converter is
    `avro`): the schemas the manifest keeps, with those they reference."""
    ids: dict[Side, set[int]] = {}
    for entry in partitions:
        for side, side_ids in entry.schema_ids.items():
            ids.setdefault("key" if side == "key" else "value", set()).update(side_ids)
    return {side: sorted(side_ids) for side, side_ids in ids.items()}


@task(name="write-manifest", cache_policy=NO_CACHE, **RETRY_OPTIONS)
def write_manifest_task(manifest: Manifest, bucket: str, prefix: str) -> str:
    from tasks.services.object_store import open_store

    return write_manifest(open_store(), bucket, prefix, manifest)
