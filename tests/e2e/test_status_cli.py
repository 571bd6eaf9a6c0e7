"""`kbackup status` as a user runs it: the installed script, from a folder outside the repository,
after a real `kbackup backup` — the status table and `--json` per topic (restore point and its age,
newest record, no lag), a drill's evidence in the bucket showing in status and in `kbackup ls`,
and an empty prefix said so with exit code 1."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tasks.services.drill_store import write_drill
from tasks.services.manifest_store import read_chain
from tests.e2e.conftest import Kbackup
from tests.support.cli import assert_clean_success
from tests.support.drill_evidence import evidence
from tests.support.kafka import produce

pytestmark = pytest.mark.usefixtures("prefect_harness")

NEWEST_MS = 1_765_100_000_000


def test_status_after_a_backup_and_a_drill(
    kafka_config: dict, create_topic: Any, bucket: str, store: Any, kbackup: Kbackup
) -> None:
    topic = create_topic("status", partitions=2)
    produce(
        kafka_config,
        topic,
        ({"value": b'{"n": 1}', "partition": i % 2, "timestamp": NEWEST_MS - 1000 * i} for i in range(30)),
    )
    location = f"s3://{bucket}/nightly"
    assert_clean_success(
        kbackup(
            "backup",
            "--kcql",
            f"INSERT INTO {bucket}:nightly SELECT * FROM `{topic}` STOREAS AVRO PROPERTIES('store.envelope'=true)",
        )
    )
    [manifest] = read_chain(store, bucket, "nightly")

    status = kbackup("status", location)
    assert_clean_success(status)
    header, _, row = status.stdout.splitlines()
    assert header.split()[:3] == ["topic", "restore", "point"]
    assert row.split()[:2] == [topic, manifest.backup_id]
    assert " never " in row  # no drill yet

    document = json.loads(kbackup("status", location, "--json").stdout)
    [entry] = document["topics"]
    assert (entry["topic"], entry["restore_point"]) == (topic, manifest.backup_id)
    assert (entry["lag_records"], entry["lag_bytes_estimated"]) == (0, 0)
    assert datetime.fromisoformat(entry["newest_record_at"]) == datetime.fromtimestamp(NEWEST_MS / 1000, UTC)
    assert 0 <= entry["restore_point_age_s"] < 600
    assert entry["last_drill"] is None

    drill = evidence(bucket, "nightly", manifest, datetime.now(UTC) - timedelta(minutes=3), seconds=8.5)
    write_drill(store, bucket, "nightly", drill)

    [entry] = json.loads(kbackup("status", location, "--json").stdout)["topics"]
    assert entry["last_drill"]["drill_id"] == drill.drill_id
    assert (entry["last_drill"]["result"], entry["last_drill"]["recovery_s"]) == ("passed", 8.5)
    row = kbackup("status", location).stdout.splitlines()[2]
    assert drill.drill_id in row and " passed " in row and "3 min" in row

    listing = kbackup("ls", location)
    assert_clean_success(listing)
    points, drills = listing.stdout.split("\n\n")[:2]
    assert "last drill" in points.splitlines()[0] and "passed" in points.splitlines()[2]
    [drill_row] = drills.splitlines()[2:]
    assert drill_row.split()[:2] == [drill.drill_id, manifest.backup_id]
    assert "8.5 s" in drill_row and " passed " in drill_row

    empty = kbackup("status", f"s3://{bucket}/elsewhere")
    assert empty.returncode == 1, empty.stdout + empty.stderr
    assert empty.stderr.strip() == f"kbackup status: no backup under s3://{bucket}/elsewhere"
