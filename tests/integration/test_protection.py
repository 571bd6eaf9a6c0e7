"""Encryption at rest and immutable backups against the real SeaweedFS (README, "Encryption and
immutability"): every object and the manifest of a backup are written with the KCQL's server-side
encryption (SSE-S3 and SSE-KMS, the multipart path too) and Object Lock retention, read back
from the store; verify and restore need nothing more; prune leaves what the store retains and
says until when, and deletes it once the retention has passed.

The stack's SeaweedFS encrypts with the key scripts/stack-up.sh gives it (WEED_S3_SSE_KEY) and
the local KMS provider of its s3 config. Every bucket locked here is emptied afterwards
(GOVERNANCE with the bypass the admin identity may use; COMPLIANCE only seconds long)."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from flows.backup import BackupParameters, backup_flow
from flows.restore import RestoreParameters, restore_flow
from flows.verify import VerifyParameters, verify_flow
from kbackup.commands.ls import restore_points
from layout.manifest import Manifest, Protection, manifest_key
from tasks.lifecycle.prune import prune, summary
from tasks.services.errors import StorageAccessError, TransientStorageError
from tasks.services.manifest_store import list_backup_ids, read_chain
from tasks.services.object_store import SINGLE_PUT_LIMIT
from tests.support.buckets import empty_and_delete
from tests.support.kafka import consume_all, numbered_messages
from tests.support.topics import topic_digests

KMS_KEY = "kbackup-test-key"  # the local KMS provider creates a key on first use


@pytest.fixture
def lock_bucket(s3: Any, unique_name: Callable[[str], str]) -> Iterator[str]:
    """A fresh bucket with Object Lock (and so versioning) enabled, emptied and deleted afterwards."""
    name = unique_name("lock")
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    yield name
    empty_and_delete(s3, name)


@pytest.fixture
def sse_bucket(s3: Any, bucket: str) -> str:
    """The test's bucket, once the store has shown it encrypts (a stack started before
    scripts/stack-up.sh gave SeaweedFS its SSE key answers 500 to every encrypted upload)."""
    try:
        s3.put_object(Bucket=bucket, Key="sse-probe", Body=b"x", ServerSideEncryption="AES256")
    except ClientError as exc:
        pytest.fail(
            f"the stack's S3 server does not encrypt ({exc}); it was started without "
            "WEED_S3_SSE_KEY: restart it with `make down && make up`"
        )
    s3.delete_object(Bucket=bucket, Key="sse-probe")
    return bucket


def _object_keys(manifest: Manifest) -> list[str]:
    return [o.key for p in manifest.partitions for o in p.objects]


def _protection_read_back(s3: Any, bucket: str, key: str) -> Protection:
    head = s3.head_object(Bucket=bucket, Key=key)
    until = head.get("ObjectLockRetainUntilDate")
    return Protection(
        sse=head.get("ServerSideEncryption"),
        kms_key_id=head.get("SSEKMSKeyId"),
        lock_mode=head.get("ObjectLockMode"),
        retain_until=until.astimezone(UTC) if until else None,
    )


SSE_CASES = {
    "AES256": ("'sse'='AES256'", Protection(sse="AES256")),
    "aws:kms": (
        f"'sse'='aws:kms', 'sse.kms.key.id'='{KMS_KEY}'",
        Protection(sse="aws:kms", kms_key_id=KMS_KEY),
    ),
}


@pytest.mark.parametrize("sse", list(SSE_CASES))
def test_encrypted_backup_every_object_and_manifest_verifies_and_restores(
    sse: str, kafka_config: dict, s3: Any, store: Any, sse_bucket: str, filled_topic: Any, target_topic: Any
) -> None:
    properties, expected = SSE_CASES[sse]
    source = filled_topic("enc", 2, numbered_messages(300, partitions=2, value=200))
    kcql = (
        f"INSERT INTO {sse_bucket}:enc SELECT * FROM `{source}` STOREAS AVRO "
        f"PROPERTIES('store.envelope'=true, 'flush.count'=60, {properties})"
    )
    [result] = backup_flow(BackupParameters(kcql=kcql, verify="full"))
    manifest = result.manifest
    assert manifest.protection == expected
    stored = Manifest.model_validate_json(
        s3.get_object(Bucket=sse_bucket, Key=manifest_key("enc", manifest.backup_id))["Body"].read()
    )
    assert stored.protection == expected
    keys = _object_keys(manifest)
    assert len(keys) >= 6
    for key in [*keys, manifest_key("enc", manifest.backup_id)]:
        assert _protection_read_back(s3, sse_bucket, key) == expected, key
    [row] = restore_points(read_chain(store, sse_bucket, "enc"))
    assert row["protection"] == (f"aws:kms ({KMS_KEY})" if sse == "aws:kms" else "AES256")

    [report] = verify_flow(VerifyParameters(bucket=sse_bucket, prefix="enc", deep=True))
    assert report.ok and report.records_decoded == 300
    target = target_topic("enc-dst")
    restored = restore_flow(RestoreParameters(kcql=f"INSERT INTO `{target}` SELECT * FROM {sse_bucket}:enc"))
    assert restored.ok and restored.records == 300
    expected_digests = topic_digests(consume_all(kafka_config, source, 2))
    assert topic_digests(consume_all(kafka_config, target, 2)) == expected_digests
    assert expected_digests == {p.partition: p.records_digest for p in manifest.partitions}


@pytest.mark.parametrize("sse", list(SSE_CASES))
def test_multipart_uploads_carry_encryption_and_retention(
    s3: Any, store: Any, lock_bucket: str, sse: str
) -> None:
    """An object above SINGLE_PUT_LIMIT goes through the transfer manager's multipart upload: the
    same arguments reach it. And the conditional put of a retried export still recognises its own
    object in a versioned, locked bucket (the single PUT's If-None-Match and the multipart HEAD)."""
    until = (datetime.now(UTC) + timedelta(minutes=10)).replace(microsecond=0)
    protection = SSE_CASES[sse][1].model_copy(update={"lock_mode": "GOVERNANCE", "retain_until": until})
    big = os.urandom(1024 * 1024) * (SINGLE_PUT_LIMIT // (1024 * 1024) + 2)
    small = b"small object"
    assert store.put_once(lock_bucket, "big", big, {}, protection=protection)
    assert store.put_once(lock_bucket, "small", small, {}, protection=protection)
    head = s3.head_object(Bucket=lock_bucket, Key="big")
    assert head["ETag"].strip('"').endswith("-5")  # 66 MiB in 16 MiB parts: a multipart upload
    for key, data in (("big", big), ("small", small)):
        assert _protection_read_back(s3, lock_bucket, key) == protection, key
        body = s3.get_object(Bucket=lock_bucket, Key=key)["Body"].read()
        assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
        assert not store.put_once(lock_bucket, key, data, {}, protection=protection)  # a retry: already there
    # A later backup finding the same bytes there (a full backup of offsets an older one holds)
    # retains them as long as itself.
    later = protection.model_copy(update={"retain_until": until + timedelta(minutes=5)})
    assert not store.put_once(lock_bucket, "small", small, {}, protection=later)
    assert _protection_read_back(s3, lock_bucket, "small") == later
    del big


def _two_chains(
    kafka_config: dict, admin: Any, source: str, kcql: str
) -> tuple[Manifest, Manifest, dict[int, str]]:
    """Two full backups (two chains) of a one-partition topic sharing no object: between them
    the topic's records up to the first backup's end are deleted, so the second starts after it."""
    from confluent_kafka import TopicPartition

    from tests.support.kafka import produce

    [first] = backup_flow(BackupParameters(kcql=kcql))
    first_digests = topic_digests(consume_all(kafka_config, source, 1))
    end = first.manifest.partitions[0].end_offset
    produce(kafka_config, source, numbered_messages(20, partitions=1, key="later{i}"))
    for future in admin.delete_records([TopicPartition(source, 0, end)]).values():
        future.result(timeout=30)
    [second] = backup_flow(BackupParameters(kcql=kcql, full=True))
    assert not set(_object_keys(first.manifest)) & set(_object_keys(second.manifest))
    return first.manifest, second.manifest, first_digests


def test_governance_backup_is_retained_and_prune_says_until_when(
    kafka_config: dict,
    admin: Any,
    s3: Any,
    store: Any,
    lock_bucket: str,
    filled_topic: Any,
    target_topic: Any,
) -> None:
    source = filled_topic("gov", 1, numbered_messages(50, partitions=1))
    kcql = (
        f"INSERT INTO {lock_bucket}:gov SELECT * FROM `{source}` "
        "STOREAS AVRO PROPERTIES('store.envelope'=true, 'flush.count'=20, 'sse'='AES256', 'object.lock.mode'='GOVERNANCE', "
        "'object.lock.retention'='1d')"
    )
    first, second, first_digests = _two_chains(kafka_config, admin, source, kcql)
    assert first.protection is not None and first.protection.retain_until is not None
    assert first.protection.lock_mode == "GOVERNANCE"
    assert first.protection.retain_until - first.started_at < timedelta(days=1, seconds=1)

    for key in [*_object_keys(first), manifest_key("gov", first.backup_id)]:
        assert _protection_read_back(s3, lock_bucket, key) == first.protection, key

    report = prune(store, lock_bucket, "gov", keep_last=1)
    assert report.dropped == [first.backup_id] and report.deleted_manifests == []
    until = f"{first.protection.retain_until:%Y-%m-%d %H:%M:%S} UTC, governance"
    assert report.not_deleted == [
        f"{manifest_key('gov', first.backup_id)} AccessDenied: Access Denied. (retained until {until})"
    ]
    assert "## Not deleted yet" in summary(report) and f"retained until {until}" in summary(report)
    assert report.deleted_objects == 0  # the refused point keeps its chain and its objects
    # Still a restore point, and it restores.
    assert [m.backup_id for m in read_chain(store, lock_bucket, "gov")] == [first.backup_id, second.backup_id]
    target = target_topic("gov-dst")
    restored = restore_flow(
        RestoreParameters(
            kcql=f"INSERT INTO `{target}` SELECT * FROM {lock_bucket}:gov "
            f"PROPERTIES('restore.point'='{first.backup_id}')"
        )
    )
    assert restored.ok and topic_digests(consume_all(kafka_config, target, 1)) == first_digests
    # A credential that may delete cannot remove a retained version either; a delete without a
    # version id only hides the point behind a delete marker, and deleting the marker brings it back.
    key = manifest_key("gov", first.backup_id)
    [version] = s3.list_object_versions(Bucket=lock_bucket, Prefix=key)["Versions"]
    with pytest.raises(ClientError, match="AccessDenied"):
        s3.delete_object(Bucket=lock_bucket, Key=key, VersionId=version["VersionId"])
    marker = s3.delete_object(Bucket=lock_bucket, Key=key)
    assert marker["DeleteMarker"] and list_backup_ids(store, lock_bucket, "gov") == [second.backup_id]
    s3.delete_object(Bucket=lock_bucket, Key=key, VersionId=marker["VersionId"])
    assert list_backup_ids(store, lock_bucket, "gov") == [first.backup_id, second.backup_id]


def test_compliance_retention_passes_then_prune_deletes(
    kafka_config: dict, admin: Any, s3: Any, store: Any, lock_bucket: str, filled_topic: Any
) -> None:
    source = filled_topic("comp", 1, numbered_messages(30, partitions=1))
    kcql = (
        f"INSERT INTO {lock_bucket}:comp SELECT * FROM `{source}` "
        "STOREAS AVRO PROPERTIES('store.envelope'=true, 'flush.count'=10, 'object.lock.mode'='COMPLIANCE', 'object.lock.retention'='40s')"
    )
    first, second, _ = _two_chains(kafka_config, admin, source, kcql)
    assert first.protection is not None and first.protection.retain_until is not None
    assert _protection_read_back(s3, lock_bucket, _object_keys(first)[0]) == first.protection

    early = prune(store, lock_bucket, "comp", keep_last=1)
    assert early.deleted_manifests == [] and len(early.not_deleted) == 1
    assert "retained until" in early.not_deleted[0] and "compliance" in early.not_deleted[0]

    time.sleep(max(0.0, (first.protection.retain_until - datetime.now(UTC)).total_seconds()) + 2)
    late = prune(store, lock_bucket, "comp", keep_last=1)
    assert late.deleted_manifests == [first.backup_id] and late.not_deleted == []
    assert [m.backup_id for m in read_chain(store, lock_bucket, "comp")] == [second.backup_id]
    left = {v["Key"] for v in s3.list_object_versions(Bucket=lock_bucket, Prefix="comp/").get("Versions", [])}
    assert manifest_key("comp", first.backup_id) not in left  # every version of it
    assert late.deleted_objects == len(_object_keys(first)) == 3
    assert not left & set(_object_keys(first))


def test_object_lock_on_a_bucket_without_it_fails_before_any_upload(
    s3: Any, store: Any, bucket: str, filled_topic: Any
) -> None:
    source = filled_topic("nolock", 1, numbered_messages(10, partitions=1))
    kcql = (
        f"INSERT INTO {bucket}:p SELECT * FROM `{source}` "
        "PROPERTIES('object.lock.mode'='GOVERNANCE', 'object.lock.retention'='7d')"
    )
    state = backup_flow(BackupParameters(kcql=kcql), return_state=True)
    assert state.is_failed()
    message = str(state.result(raise_on_failure=False))
    assert f"Object Lock is not enabled on bucket {bucket!r}" in message
    assert "--object-lock-enabled-for-bucket" in message
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="p/").get("Contents", [])
    assert [o["Key"] for o in listed if source in o["Key"]] == []  # no object (only the lock's lease)
    assert list_backup_ids(store, bucket, "p") == []


def test_an_encryption_the_store_refuses_fails_saying_what_was_asked(store: Any, bucket: str) -> None:
    """SeaweedFS has no dual-layer KMS encryption: 400 InvalidArgument, not retried, naming the
    bucket, the key and the arguments the upload sent."""
    with pytest.raises(StorageAccessError) as raised:
        # model_construct: a mode the KCQL would refuse, which is what the store is asked here
        store.put_once(bucket, "p/x", b"x", {}, protection=Protection.model_construct(sse="aws:kms:dsse"))
    assert not isinstance(raised.value, TransientStorageError)
    message = str(raised.value)
    assert f"S3 PutObject (ServerSideEncryption=aws:kms:dsse) of s3://{bucket}/p/x at " in message
    assert "InvalidArgument" in message
