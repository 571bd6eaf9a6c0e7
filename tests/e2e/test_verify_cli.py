"""`kbackup verify` as a user runs it, on backups whose objects went missing: it exits 1 and
names each missing object as `s3://bucket/key` (as restore does), never with a bare `NoSuchKey`;
and an object that answers a HEAD under its manifest key but that a listing of the prefix shows
under another name (what restore discovers objects by) is reported by that key too."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tasks.services.manifest_store import read_chain
from tests.e2e.conftest import Kbackup
from tests.support.cli import assert_clean_success
from tests.support.kafka import produce

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _backup(
    kafka_config: dict, create_topic: Any, bucket: str, kbackup: Kbackup, partition_by: str = ""
) -> None:
    topic = create_topic("ver", partitions=2)
    produce(
        kafka_config,
        topic,
        ({"key": f"k{i}".encode(), "value": b'{"v": "a"}', "partition": i % 2} for i in range(40)),
    )
    assert_clean_success(
        kbackup(
            "backup",
            "--kcql",
            f"INSERT INTO {bucket}:nightly SELECT * FROM `{topic}` {partition_by} STOREAS AVRO "
            "PROPERTIES('store.envelope'=true, 'partition.include.keys'=true)",
        )
    )
    assert_clean_success(kbackup("verify", f"s3://{bucket}/nightly", "--deep"))


@pytest.mark.parametrize("deep", [False, True], ids=["quick", "deep"])
def test_deleted_object_is_named_by_bucket_and_key(
    deep: bool, kafka_config: dict, create_topic: Any, bucket: str, s3: Any, store: Any, kbackup: Kbackup
) -> None:
    _backup(kafka_config, create_topic, bucket, kbackup)
    [manifest] = read_chain(store, bucket, "nightly")
    key = manifest.partitions[1].objects[0].key
    s3.delete_object(Bucket=bucket, Key=key)

    verify = kbackup("verify", f"s3://{bucket}/nightly", *(["--deep"] if deep else []))
    assert verify.returncode == 1, verify.stdout + verify.stderr
    assert "NoSuchKey" not in verify.stderr
    # What kbackup itself prints last (Prefect's log of the failed flow run comes before it):
    assert verify.stderr.rstrip().endswith(
        f"kbackup verify: backup {manifest.backup_id} in s3://{bucket} failed verification:\n"
        f"  s3://{bucket}/{key} is listed in manifest {manifest.backup_id} but missing from the bucket"
    ), verify.stderr[-2000:]


def test_manifest_key_missing_from_the_listing_is_named(
    kafka_config: dict, create_topic: Any, bucket: str, s3: Any, store: Any, kbackup: Kbackup
) -> None:
    """What an unescaped `\\` in a key did: the store keeps `v=a\\b/…` as `v=a/b/…`, so a HEAD of
    the manifest's key finds the object, but no listing (and so no restore) ever shows that key."""
    _backup(kafka_config, create_topic, bucket, kbackup, "PARTITIONBY _value.v")
    [manifest] = read_chain(store, bucket, "nightly")
    good = manifest.partitions[0].objects[0].key
    assert "/v=a/" in good
    bad = good.replace("/v=a/", "/v=a\\b/")
    s3.copy_object(
        Bucket=bucket, Key=bad, CopySource={"Bucket": bucket, "Key": good}, MetadataDirective="COPY"
    )
    assert s3.head_object(Bucket=bucket, Key=bad)["ContentLength"] > 0  # the store answers for it …
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="nightly/")["Contents"]]
    assert bad not in listed  # … but lists it under another name
    manifest_key = f"nightly/_manifests/{manifest.backup_id}.json"
    text = s3.get_object(Bucket=bucket, Key=manifest_key)["Body"].read().decode()
    assert json.dumps(good) in text
    s3.put_object(
        Bucket=bucket, Key=manifest_key, Body=text.replace(json.dumps(good), json.dumps(bad)).encode()
    )

    verify = kbackup("verify", f"s3://{bucket}/nightly")
    assert verify.returncode == 1, verify.stdout + verify.stderr
    assert (
        f"s3://{bucket}/{bad} is listed in manifest {manifest.backup_id} but not in a listing"
        in verify.stderr
    )
