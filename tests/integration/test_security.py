"""Backup and restore through Kafka's SASL_SSL listener (SCRAM-SHA-512 over TLS, ACLs) with
least-privilege users and bucket-scoped S3 identities; and what a user sees when a password, a CA,
an ACL or an S3 permission is wrong: the real cause, at once, never retried.

Runs against the session's own stack (`own_stack`: scripts/stack-up.sh in a temporary folder), so it
has the secured listener and identities whether or not the shared stack was started before them.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from flows.backup import BackupParameters, backup_flow
from flows.restore import RestoreFailed, RestoreParameters, restore_flow
from tasks.services.errors import (
    BrokerUnavailableError,
    KafkaAuthenticationError,
    KafkaAuthorizationError,
    KafkaTlsError,
    StorageAccessError,
    is_retryable,
)
from tasks.services.kafka.admin import connect
from tasks.services.kafka.clients import client_config
from tests.support.kafka import consume_all, create_topic, delete_topics, produce
from tests.support.secure import BACKUP_ACLS, RESTORE_ACLS, SecureStack
from tests.support.stack import free_port
from tests.support.topics import topic_digests, tricky_messages

pytestmark = pytest.mark.usefixtures("prefect_harness")

PARTITIONS = 2
# Failing "at once": well under one metadata timeout (30 s), let alone the retries of a task.
AT_ONCE_S = 15


@dataclass(frozen=True)
class Secured:
    """A topic of tricky records on the secured stack (`expected`: its records digest per
    partition), and backups and restores of it as the users this test connects as."""

    stack: SecureStack
    topic: str
    expected: dict[int, str]
    use_env: Callable[..., None]
    name: Callable[[str], str]

    def connect(self, user: str, password: str, s3_identity: str, ca_file: str | None = None) -> None:
        self.use_env(self.stack.kafka_env(user, password, ca_file=ca_file), self.stack.s3_env(s3_identity))

    def backup_user(self, s3_identity: str = "backup") -> tuple[str, str]:
        """A new user holding the backup ACLs on the topic, connected with that S3 identity."""
        user, password = self.stack.create_user(BACKUP_ACLS, topic=self.topic)
        self.connect(user, password, s3_identity)
        return user, password

    def backup(self, prefix: str | None = None, bucket: str | None = None) -> list[Any]:
        kcql = (
            f"INSERT INTO {bucket or self.stack.bucket}:{prefix or self.name('bk')} SELECT * FROM "
            f"`{self.topic}` STOREAS AVRO PROPERTIES('store.envelope'=true)"
        )
        return backup_flow(BackupParameters(kcql=kcql))

    def backed_up(self, prefix: str) -> None:
        """A backup under `prefix`, made as a least-privilege user."""
        self.backup_user()
        self.backup(prefix)

    def restore(self, target: str, prefix: str) -> Any:
        kcql = f"INSERT INTO `{target}` SELECT * FROM {self.stack.bucket}:{prefix}"
        return restore_flow(RestoreParameters(kcql=kcql))


@pytest.fixture
def secured(
    secure: SecureStack, use_env: Callable[..., None], unique_name: Callable[[str], str]
) -> Iterator[Secured]:
    admin = secure.admin()
    topic = unique_name("sec")
    create_topic(admin, topic, PARTITIONS, {})
    produce(secure.plaintext, topic, tricky_messages(partitions=PARTITIONS, random_per_partition=20))
    expected = topic_digests(consume_all(secure.plaintext, topic, PARTITIONS))
    yield Secured(secure, topic, expected, use_env, unique_name)
    delete_topics(admin, [topic])


def test_backup_and_restore_with_least_privilege_users(secured: Secured) -> None:
    prefix, target = secured.name("bk"), secured.name("dst")

    secured.backup_user()
    [result] = secured.backup(prefix)
    assert {p.partition: p.records_digest for p in result.manifest.partitions} == secured.expected

    restore_user, restore_password = secured.stack.create_user(RESTORE_ACLS, target=target)
    secured.connect(restore_user, restore_password, "restore")
    try:
        report = secured.restore(target, prefix)
        assert report.ok and report.records == result.manifest.record_count
        assert topic_digests(consume_all(secured.stack.plaintext, target, PARTITIONS)) == secured.expected
    finally:
        delete_topics(secured.stack.admin(), [target])


def test_wrong_password_fails_within_seconds_naming_authentication(secured: Secured) -> None:
    user, _password = secured.stack.create_user(BACKUP_ACLS, topic=secured.topic)
    secured.connect(user, "not-the-password", "backup")
    started = time.monotonic()
    with pytest.raises(KafkaAuthenticationError) as caught:
        secured.backup()
    assert time.monotonic() - started < AT_ONCE_S
    error = caught.value
    assert error.username == user and error.broker == secured.stack.env["KBACKUP_STACK_SASL_BOOTSTRAP"]
    assert str(error).startswith(f"SASL authentication failed for user {user!r} at {error.broker}: ")
    assert "invalid credentials" in error.reason and not is_retryable(error)


def test_user_without_acls_fails_at_once_naming_authorization(secured: Secured) -> None:
    prefix, target = secured.name("bk"), secured.name("dst")
    nobody, password = secured.stack.create_user()

    secured.connect(nobody, password, "backup")
    started = time.monotonic()
    with pytest.raises(KafkaAuthorizationError) as backup_denied:
        secured.backup(prefix)
    assert time.monotonic() - started < AT_ONCE_S
    assert backup_denied.value.operation == f"describe topic {secured.topic!r}"
    assert backup_denied.value.code == "TOPIC_AUTHORIZATION_FAILED"
    assert f"user {nobody!r} is not authorized" in str(backup_denied.value)

    secured.backed_up(prefix)
    secured.connect(nobody, password, "restore")
    started = time.monotonic()
    with pytest.raises(KafkaAuthorizationError) as restore_denied:
        secured.restore(target, prefix)
    assert time.monotonic() - started < AT_ONCE_S
    assert restore_denied.value.operation == f"create topic {target}"
    assert not is_retryable(restore_denied.value)


def test_restore_user_without_its_group_acl_fails_at_once_naming_authorization(secured: Secured) -> None:
    """Every restore ACL but Read on the restore's bookkeeping groups: the restore reads its
    progress through the admin API, which reports the missing ACL at once (a consumer's
    committed() only waited out its timeout, and the failure looked like an outage)."""
    prefix, target = secured.name("bk"), secured.name("dst")
    secured.backed_up(prefix)
    without_group = tuple(
        acl for acl in RESTORE_ACLS if acl[1] != "kbackup-restore-" or acl[0].name != "GROUP"
    )
    assert len(without_group) == len(RESTORE_ACLS) - 1
    user, password = secured.stack.create_user(without_group, target=target)
    secured.connect(user, password, "restore")
    started = time.monotonic()
    try:
        with pytest.raises(RestoreFailed) as failed:
            secured.restore(target, prefix)
        assert time.monotonic() - started < AT_ONCE_S
        denied = failed.value.cause
        assert isinstance(denied, KafkaAuthorizationError)
        assert denied.code == "GROUP_AUTHORIZATION_FAILED"
        assert "kbackup-restore-" in denied.operation
        assert f"user {user!r} is not authorized" in str(failed.value)
        assert not is_retryable(denied)
    finally:
        delete_topics(secured.stack.admin(), [target])


def test_untrusted_broker_certificate_fails_naming_tls(
    secured: Secured, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    import certifi  # public CAs: none of them signed the stack's broker certificate

    user, password = secured.stack.create_user(BACKUP_ACLS, topic=secured.topic)
    secured.connect(user, password, "backup", ca_file=certifi.where())
    started = time.monotonic()
    with caplog.at_level("WARNING", logger="kbackup.librdkafka"), pytest.raises(KafkaTlsError) as caught:
        secured.backup()
    assert time.monotonic() - started < AT_ONCE_S
    assert caught.value.broker == secured.stack.env["KBACKUP_STACK_SASL_BOOTSTRAP"]
    assert "certificate verify failed" in str(caught.value) and not is_retryable(caught.value)
    # librdkafka's own lines went through Python logging, not straight to stderr ("%3|<time>|FAIL|…").
    assert any(
        "SSL handshake failed" in r.getMessage() for r in caplog.records if r.name == "kbackup.librdkafka"
    )
    assert not re.search(r"^%\d\|\d+\.\d+\|", capfd.readouterr().err, re.MULTILINE)


def test_unreachable_broker_is_still_retried_and_says_unreachable(
    secure: SecureStack, use_env: Callable[..., None]
) -> None:
    from confluent_kafka.admin import AdminClient

    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    use_env({**secure.kafka_env("anyone", "anything"), "KBACKUP_KAFKA_BOOTSTRAP_SERVERS": address})
    config = client_config()
    with pytest.raises(BrokerUnavailableError) as caught:
        connect(AdminClient({**config, "log_level": 3}), config, timeout=3)
    assert is_retryable(caught.value)
    assert f"Kafka brokers at {address} are unreachable" in str(caught.value)
    assert "Connection refused" in str(caught.value)


def test_read_only_s3_identity_restores_but_cannot_back_up(secured: Secured) -> None:
    secured.backup_user("restore")
    started = time.monotonic()
    with pytest.raises(StorageAccessError) as caught:
        secured.backup()
    assert time.monotonic() - started < AT_ONCE_S  # not retried
    error = caught.value
    assert (error.bucket, error.operation) == (secured.stack.bucket, "PutObject")
    assert "AccessDenied" in error.reason and not is_retryable(error)
    assert f"s3://{secured.stack.bucket}/" in str(error)


def test_backup_s3_identity_is_limited_to_its_bucket(secured: Secured) -> None:
    other = secured.name("other")
    secured.stack.s3().create_bucket(Bucket=other)
    secured.backup_user()
    with pytest.raises(StorageAccessError) as caught:
        secured.backup("bk", bucket=other)
    assert caught.value.bucket == other and "AccessDenied" in caught.value.reason
