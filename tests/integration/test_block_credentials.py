"""User story: an operator keeps the credentials in Prefect blocks, not in the worker's
environment. A backup and a restore through Kafka's SASL_SSL listener (SCRAM users with the
README's minimal ACLs) and SeaweedFS's bucket-scoped identities get only the blocks' names as flow
parameters: an AwsCredentials block per S3 identity (with the endpoint), a Secret block holding the
backup user's password and one holding the restore user's librdkafka settings as a JSON object.
The environment holds no AWS credentials, no S3 endpoint and no SASL password. The restore's
records equal the source's (records digests), and no secret appears in any log line, artifact, flow-
or task-run parameter of those runs, read back from the Prefect API.

Runs against the session's own stack (`own_stack`), as tests/integration/test_security.py does: it
has the secured listener and identities whether or not the shared stack was started before them.
The backup's exports run on worker processes (`task_runner="processes"`), which load the blocks
themselves.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from core.connections import CredentialsBlockError
from flows.backup import BackupParameters, backup_flow
from flows.restore import RestoreParameters, restore_flow
from tests.support.kafka import consume_all, create_topic, delete_topics, produce
from tests.support.prefect_records import prefect_records
from tests.support.secure import BACKUP_ACLS, RESTORE_ACLS, SecureStack
from tests.support.topics import topic_digests, tricky_messages

pytestmark = pytest.mark.usefixtures("prefect_harness")

PARTITIONS = 2


def _no_credentials_in_the_environment(monkeypatch: pytest.MonkeyPatch, kafka: dict[str, str]) -> None:
    """Only how to reach the brokers and who logs in: no AWS_* (boto3's files and the instance
    metadata are ruled out too), no KBACKUP_S3_*, no SASL password."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "KBACKUP_S3_", "KBACKUP_KAFKA_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name, value in kafka.items():
        monkeypatch.setenv(name, value)


def test_backup_and_restore_with_credentials_from_prefect_blocks(
    secure: SecureStack, unique_name: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.blocks.system import Secret
    from prefect_aws import AwsCredentials

    admin = secure.admin()
    topic, target, prefix = unique_name("blk"), unique_name("dst"), unique_name("bk")
    create_topic(admin, topic, PARTITIONS, {})
    produce(secure.plaintext, topic, tricky_messages(partitions=PARTITIONS, random_per_partition=20))
    expected = topic_digests(consume_all(secure.plaintext, topic, PARTITIONS))

    backup_password = f"kbackup-block-backup-{uuid.uuid4().hex}"
    restore_password = f"kbackup-block-restore-{uuid.uuid4().hex}"
    backup_user, _ = secure.create_user(BACKUP_ACLS, password=backup_password, topic=topic)
    restore_user, _ = secure.create_user(RESTORE_ACLS, password=restore_password, target=target)
    blocks = {
        name: unique_name(name) for name in ("s3-backup", "s3-restore", "kafka-backup", "kafka-restore")
    }
    secrets = {
        "backup user's SASL password": backup_password,
        "restore user's SASL password": restore_password,
    }
    for identity in ("backup", "restore"):
        s3_env = secure.s3_env(identity)
        secrets[f"{identity} identity's AWS secret"] = s3_env["AWS_SECRET_ACCESS_KEY"]
        AwsCredentials(
            aws_access_key_id=s3_env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=s3_env["AWS_SECRET_ACCESS_KEY"],
            region_name=s3_env["AWS_REGION"],
            aws_client_parameters={"endpoint_url": s3_env["KBACKUP_S3_ENDPOINT_URL"]},
        ).save(blocks[f"s3-{identity}"], overwrite=True)
    Secret(value=backup_password).save(blocks["kafka-backup"], overwrite=True)
    Secret(value={"sasl.username": restore_user, "sasl.password": restore_password}).save(
        blocks["kafka-restore"], overwrite=True
    )
    kafka_env = secure.kafka_env(backup_user, "unused")
    del kafka_env["KBACKUP_KAFKA_SASL_PASSWORD"]

    started = datetime.now(UTC) - timedelta(seconds=5)
    try:
        _no_credentials_in_the_environment(monkeypatch, kafka_env)
        [result] = backup_flow(
            BackupParameters(
                kcql=f"INSERT INTO {secure.bucket}:{prefix} SELECT * FROM `{topic}` STOREAS PARQUET "
                "PROPERTIES('store.envelope'=true)",
                concurrency=PARTITIONS,
                task_runner="processes",
                s3_credentials_block=blocks["s3-backup"],
                kafka_password_block=blocks["kafka-backup"],
            ),
        )
        assert {p.partition: p.records_digest for p in result.manifest.partitions} == expected

        monkeypatch.delenv("KBACKUP_KAFKA_SASL_USERNAME")  # the restore's user is in its Secret
        report = restore_flow(
            RestoreParameters(
                kcql=f"INSERT INTO `{target}` SELECT * FROM {secure.bucket}:{prefix}",
                s3_credentials_block=blocks["s3-restore"],
                kafka_password_block=blocks["kafka-restore"],
            )
        )
        assert report.ok and report.records == result.manifest.record_count
        assert topic_digests(consume_all(secure.plaintext, target, PARTITIONS)) == expected
        assert "KBACKUP_S3_CREDENTIALS_BLOCK" not in os.environ  # the names were the runs' only
        assert "KBACKUP_KAFKA_PASSWORD_BLOCK" not in os.environ

        records = prefect_records(started)
        parameters = records["flow runs (parameters, states)"]
        assert blocks["s3-backup"] in parameters and blocks["kafka-restore"] in parameters  # the names are
        assert "tasks on processes" in records["run logs"]
        for kind, text in records.items():
            for what, secret in secrets.items():
                assert secret not in text, f"the {what} appears in the {kind}"
    finally:
        delete_topics(admin, [topic, target])


def test_a_missing_block_fails_at_once_naming_it(
    secure: SecureStack, unique_name: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = unique_name("no-such-block")
    plaintext = {"KBACKUP_KAFKA_BOOTSTRAP_SERVERS": secure.env["KBACKUP_KAFKA_BOOTSTRAP_SERVERS"]}
    _no_credentials_in_the_environment(monkeypatch, plaintext)
    started = time.monotonic()
    with pytest.raises(CredentialsBlockError) as failed:
        backup_flow(
            BackupParameters(
                kcql=f"INSERT INTO {secure.bucket}:{unique_name('bk')} SELECT * FROM `{unique_name('t')}`",
                s3_credentials_block=missing,
            ),
        )
    assert time.monotonic() - started < 15  # not retried
    assert (failed.value.block_type, failed.value.name) == ("AwsCredentials", missing)
    assert str(failed.value).startswith(f"Prefect AwsCredentials block {missing!r}: not found")


def test_the_passwords_of_users_to_create_come_from_a_secret_block(unique_name: Callable[[str], str]) -> None:
    """`restore.users`' passwords from a Secret block holding JSON user → password (the restore
    flow's `users_secret_block`), as a JSON object or as its text; a block holding anything else is
    refused without showing its value, a missing one names itself."""
    from prefect.blocks.system import Secret

    from tasks.restore.access import read_passwords
    from tasks.restore.errors import UserPasswordsError

    as_object, as_text, not_json = unique_name("pw-obj"), unique_name("pw-text"), unique_name("pw-bad")
    marker = f"kbackup-marker-{uuid.uuid4().hex}"
    Secret(value={"alice": marker, "bob": "b"}).save(as_object)
    Secret(value=f'{{"alice": "{marker}"}}').save(as_text)
    Secret(value=f"alice={marker}").save(not_json)

    assert read_passwords(as_object) == {"alice": marker, "bob": "b"}
    assert read_passwords(as_text) == {"alice": marker}
    with pytest.raises(UserPasswordsError) as refused:
        read_passwords(not_json)
    assert not_json in str(refused.value) and marker not in str(refused.value)
    with pytest.raises(CredentialsBlockError, match="missing-block"):
        read_passwords("missing-block")
