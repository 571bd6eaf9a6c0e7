"""Backups made before issue 12's columnar export and restore (commit 20b06be, by that commit's own
`kbackup backup`) still verify and restore byte-identically: the records digest did not change.

Each backup of tests/fixtures/kbackup-before-columns/ (see its README) is uploaded, key for key, to
a fresh bucket of the real S3 server, verified deep (the verify flow that `kbackup verify --deep`
runs: every object decoded, every partition digest recomputed), restored into a fresh topic of the
real broker, and the restored topic is read back: per partition, the digest of the records each
manifest of the chain covers equals that manifest's digest, and the whole partition's digest and
count equal what was read from the source topic when the fixture was made (expected.json).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from formats import RecordsDigest
from tests.support.kafka import consume_all

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "kbackup-before-columns"
EXPECTED: dict[str, Any] = json.loads((FIXTURE / "expected.json").read_text())
BACKUPS = sorted(EXPECTED["backups"])
CREATE_TIME, LOG_APPEND_TIME = 1, 2


def _upload(s3: Any, bucket: str, name: str) -> int:
    """Every stored object of backup `name` under its own key (its path below the fixture folder)."""
    paths = sorted(p for p in (FIXTURE / name).rglob("*") if p.is_file())
    for path in paths:
        s3.put_object(Bucket=bucket, Key=path.relative_to(FIXTURE).as_posix(), Body=path.read_bytes())
    return len(paths)


def _manifests(name: str) -> list[dict[str, Any]]:
    """The backup's manifests, oldest first, checked to form one chain."""
    manifests = [json.loads(p.read_text()) for p in sorted((FIXTURE / name / "_manifests").glob("*.json"))]
    previous = None
    for manifest in manifests:
        assert manifest["previous_backup_id"] == previous, f"{name}: not one chain"
        previous = manifest["backup_id"]
    return manifests


def _digest(messages: list[Any], source_timestamp_type: int) -> str:
    """The records digest of consumed messages, with the source topic's timestamp type: a
    LogAppendTime source is restored into a CreateTime target with the same timestamps (README)."""
    digest = RecordsDigest()
    for message in messages:
        ts_type, ts = message.timestamp()
        assert ts_type == CREATE_TIME, f"offset {message.offset()}: timestamp type {ts_type}"
        digest.update(
            message.key(), message.value(), tuple(message.headers() or ()), ts, source_timestamp_type
        )
    return digest.hexdigest()


def test_fixture_is_complete():
    """Every object a manifest names is stored, and nothing else but the manifests."""
    for name in BACKUPS:
        manifests = _manifests(name)
        named = {o["key"] for m in manifests for p in m["partitions"] for o in p["objects"]}
        named |= {f"{name}/_manifests/{m['backup_id']}.json" for m in manifests}
        stored = {p.relative_to(FIXTURE).as_posix() for p in (FIXTURE / name).rglob("*") if p.is_file()}
        assert stored == named, name
        assert all(m["lossless"] for m in manifests), name


@pytest.mark.parametrize("name", BACKUPS)
def test_backup_made_before_columns_verifies_and_restores(
    name, prefect_harness, kafka_config, s3, admin, bucket, unique_name
):
    from flows.restore import RestoreParameters, restore_flow
    from flows.verify import VerifyParameters, verify_flow

    expected = EXPECTED["backups"][name]
    manifests = _manifests(name)
    partitions = expected["partitions"]
    source_type = LOG_APPEND_TIME if expected["timestamp_type"] == "LogAppendTime" else CREATE_TIME
    _upload(s3, bucket, name)

    reports = verify_flow(VerifyParameters(bucket=bucket, prefix=name, deep=True))
    assert [r.backup_id for r in reports] == [m["backup_id"] for m in manifests]
    for report, manifest in zip(reports, manifests, strict=True):
        assert report.depth == "full" and report.problems == []
        objects = sum(len(p["objects"]) for p in manifest["partitions"])
        assert (report.objects_checked, report.objects_decoded) == (objects, objects)
        assert report.records_decoded == sum(p["record_count"] for p in manifest["partitions"])

    target = unique_name("restored")
    try:
        report = restore_flow(
            RestoreParameters(
                kcql=f"INSERT INTO `{target}` SELECT * FROM {bucket}:{name} "
                "PROPERTIES('restore.preflight'='full')"
            )
        )
        assert report.ok, report.model_dump_json(indent=2)
        assert report.backup_ids == [m["backup_id"] for m in manifests]
        total = sum(d["records"] for d in expected["digests"].values())
        assert report.records == total

        restored = consume_all(kafka_config, target, partitions)
        for partition in range(partitions):
            messages = sorted((m for m in restored if m.partition() == partition), key=lambda m: m.offset())
            want = expected["digests"][str(partition)]
            assert len(messages) == want["records"], f"partition {partition}"
            assert _digest(messages, source_type) == want["digest"], f"partition {partition}"
            start = 0
            for manifest in manifests:  # each backup of the chain: its slice of the partition
                [entry] = [p for p in manifest["partitions"] if p["partition"] == partition]
                piece = messages[start : start + entry["record_count"]]
                start += entry["record_count"]
                assert len(piece) == entry["record_count"]
                assert _digest(piece, source_type) == entry["records_digest"], (
                    f"{manifest['backup_id']} partition {partition}"
                )
            assert start == len(messages)
    finally:
        admin.delete_topics([target])
