"""Freshness against the real broker and S3 server: a backup records, per topic, the newest
timestamp it backed up (records produced with explicit timestamps) and no lag when nothing was
produced meanwhile; the log ends read for real count what was produced after the snapshot; the
status flow reads it back and publishes the `kbackup-status` artifact."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from flows.backup import BackupParameters, backup_flow
from flows.status import ARTIFACT_KEY, StatusParameters, status_flow
from tasks.backup.freshness import measure_freshness
from tasks.backup.plan import plan_backup
from tasks.services.manifest_store import read_chain
from tests.support.kafka import produce

pytestmark = pytest.mark.usefixtures("prefect_harness")

BASE_MS = 1_765_000_000_000


def test_a_backup_records_its_newest_record_and_no_lag(
    kafka_config: dict, create_topic: Any, bucket: str, store: Any
) -> None:
    orders = create_topic("orders", partitions=3)
    quiet = create_topic("quiet", partitions=2)
    stamps = [BASE_MS + 7_919 * ((i * 37) % 60) for i in range(60)]  # out of order across partitions
    produce(
        kafka_config,
        orders,
        (
            {"value": f"v{i}".encode(), "partition": i % 3, "timestamp": stamp}
            for i, stamp in enumerate(stamps)
        ),
    )
    [result] = backup_flow(BackupParameters(kcql=_kcql(bucket, "fresh", orders), verify="quick"))

    [manifest] = read_chain(store, bucket, "fresh")
    assert manifest.freshness == result.manifest.freshness
    [entry] = manifest.freshness
    assert entry.topic == orders
    assert entry.newest_record_ms == max(stamps)
    assert (entry.lag_records, entry.lag_bytes) == (0, 0)
    assert entry.snapshot_at == manifest.started_at <= entry.measured_at
    # a topic with no record: nothing backed up, nothing behind
    [empty] = backup_flow(BackupParameters(kcql=_kcql(bucket, "quiet", quiet), verify="quick"))
    [entry] = empty.manifest.freshness
    assert (entry.topic, entry.newest_record_ms, entry.lag_records, entry.lag_bytes) == (quiet, None, 0, 0)


def _kcql(bucket: str, prefix: str, topic: str) -> str:
    return f"INSERT INTO {bucket}:{prefix} SELECT * FROM `{topic}` STOREAS AVRO PROPERTIES('store.envelope'=true)"


def test_the_lag_counts_what_was_produced_after_the_snapshot(
    kafka_config: dict, create_topic: Any, bucket: str, store: Any
) -> None:
    topic = create_topic("lagging", partitions=2)
    produce(kafka_config, topic, ({"value": b"x" * 90, "partition": i % 2} for i in range(40)))
    kcql = f"INSERT INTO {bucket}:lag SELECT * FROM `{topic}` STOREAS AVRO PROPERTIES('store.envelope'=true)"
    [result] = backup_flow(BackupParameters(kcql=kcql, verify="quick"))
    manifest = result.manifest
    produce(kafka_config, topic, ({"value": b"y" * 90, "partition": i % 2} for i in range(15)))

    plan = plan_backup(_spec(kcql), kafka_config, store)  # what the flow hands the measure
    [entry] = measure_freshness(plan, list(manifest.partitions), kafka_config, logging.getLogger(__name__))
    assert entry.lag_records == 15
    per_record = manifest.byte_count / manifest.record_count
    assert entry.lag_bytes == round(15 * per_record)


def _spec(kcql: str) -> Any:
    from kcql import parse_backup

    [spec] = parse_backup(kcql)
    return spec


def test_the_status_flow_publishes_the_table(kafka_config: dict, create_topic: Any, bucket: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    topic = create_topic("shown", partitions=1)
    produce(kafka_config, topic, ({"value": b"v", "timestamp": BASE_MS + i} for i in range(5)))
    backup_flow(
        BackupParameters(
            kcql=f"INSERT INTO {bucket}:shown SELECT * FROM `{topic}` STOREAS JSON", verify="quick"
        )
    )

    status = status_flow(StatusParameters(bucket=bucket, prefix="shown"))

    [row] = status.topics
    assert (row.topic, row.lag_records, row.last_drill) == (topic, 0, None)
    assert row.newest_record_at is not None and row.newest_record_at.timestamp() * 1000 == BASE_MS + 4
    with get_client(sync_client=True) as client:
        [artifact] = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[ARTIFACT_KEY])), limit=5
        )
    table = artifact.data if isinstance(artifact.data, list) else json.loads(str(artifact.data))
    assert [r["topic"] for r in table] == [topic]
    assert table[0]["last drill"] == "never"
