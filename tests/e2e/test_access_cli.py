"""User story: after losing a cluster's access rules, an operator restores a topic under a new name
with the installed `kbackup` and brings back who may use it: the dry run shows the diff against the
cluster first and changes nothing; the restore recreates the literal bindings for the new topic and
the renamed consumer group, reports the prefixed one instead of widening access, recreates the
deleted SCRAM user with the password the operator gives (which then appears in no output, log,
parameter or artifact), and the consumer and the producer principals work on the restored topic
with those rules alone. A restore principal without ALTER on the cluster is refused before
anything is created.

Runs on the session's own stack (`secure`): its SASL_SSL listener has the StandardAuthorizer.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import (
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
    ScramMechanism,
    UserScramCredentialDeletion,
)

from tests.support.cli import assert_clean_success, run_kbackup
from tests.support.kafka import create_topic, delete_topics, numbered_messages, produce
from tests.support.prefect_records import prefect_records
from tests.support.secure import RESTORE_ACLS, SecureStack

pytestmark = pytest.mark.usefixtures("prefect_harness")

Kbackup = Callable[..., subprocess.CompletedProcess[str]]
Binding = tuple[str, str, str, str, str, str, str]
_LITERAL, _PREFIXED = ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED
CLUSTER_ALTER_DESCRIBE = (
    (ResourceType.BROKER, "kafka-cluster", _LITERAL, AclOperation.ALTER),
    (ResourceType.BROKER, "kafka-cluster", _LITERAL, AclOperation.DESCRIBE),
)
RECORDS, COMMITTED = 12, 5


@pytest.fixture
def kbackup(tmp_path: Path) -> Kbackup:
    from prefect.settings import PREFECT_API_URL

    def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return run_kbackup(*args, cwd=tmp_path, env={"PREFECT_API_URL": str(PREFECT_API_URL.value()), **env})

    return run


def all_bindings(secure: SecureStack) -> set[Binding]:
    """Every ACL binding on the cluster, as names."""
    match_all = AclBindingFilter(
        ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY, AclPermissionType.ANY
    )
    admin = secure.admin()  # held while its future is awaited
    found = admin.describe_acls(match_all, request_timeout=30).result(timeout=30)
    return {
        (
            b.restype.name,
            b.name,
            b.resource_pattern_type.name,
            b.principal,
            b.host,
            b.operation.name,
            b.permission_type.name,
        )
        for b in found
    }


def sasl_config(secure: SecureStack, user: str, password: str) -> dict[str, Any]:
    env = secure.kafka_env(user, password)
    return {
        "bootstrap.servers": env["KBACKUP_KAFKA_BOOTSTRAP_SERVERS"],
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": user,
        "sasl.password": password,
        "ssl.ca.location": env["KBACKUP_KAFKA_SSL_CA_LOCATION"],
    }


def commit_offset(admin: Any, group: str, topic: str, offset: int) -> None:
    """Commit `group`'s offset on `topic`'s partition 0, asked again while a fresh broker's group
    coordinator is still loading (the request then succeeds with an error on the partition)."""
    deadline = time.monotonic() + 60
    while True:
        done = admin.alter_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, offset)])], request_timeout=30
        )[group].result(timeout=30)
        errors = [tp.error for tp in done.topic_partitions if tp.error is not None]
        if not errors:
            return
        assert time.monotonic() < deadline, errors
        time.sleep(0.5)


def read_as(config: dict[str, Any], topic: str, group: str) -> list[int]:
    """The offsets a consumer of `group` reads from `topic`'s partition 0 until it has caught up."""
    consumer = Consumer(
        {
            **config,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    offsets: list[int] = []
    try:
        consumer.subscribe([topic])
        while True:
            msg = consumer.poll(30)
            assert msg is not None, f"no record nor end of {topic} within 30 s for group {group}"
            if msg.error():
                assert msg.error().code() == -191, msg.error()  # _PARTITION_EOF
                return offsets
            offsets.append(msg.offset())
    finally:
        consumer.close()


def test_access_rules_come_back_with_the_restored_topic(
    secure: SecureStack, unique_name: Callable[[str], str], kbackup: Kbackup, own_stack: Any
) -> None:
    admin = secure.admin()
    topic, target, prefix = unique_name("acl-src"), unique_name("acl-dst"), unique_name("bk")
    group, group_prefix = f"{unique_name('grp')}", "dr-"
    create_topic(admin, topic, 1, {})
    produce(secure.plaintext, topic, numbered_messages(RECORDS, partitions=1))
    commit_offset(admin, group, topic, COMMITTED)
    producer, producer_password = secure.create_user(
        (
            (ResourceType.TOPIC, "{topic}", _LITERAL, AclOperation.WRITE),
            (ResourceType.TOPIC, "{stem}", _PREFIXED, AclOperation.DESCRIBE),
        ),
        topic=topic,
        stem=topic[:8],
    )
    consumer, _ = secure.create_user(
        (
            (ResourceType.TOPIC, "{topic}", _LITERAL, AclOperation.READ),
            (ResourceType.GROUP, "{group}", _LITERAL, AclOperation.READ),
        ),
        topic=topic,
        group=group,
    )
    restorer_acls = (
        *RESTORE_ACLS,
        *CLUSTER_ALTER_DESCRIBE,
        (ResourceType.GROUP, group_prefix, _PREFIXED, AclOperation.READ),
    )
    restorer, restorer_password = secure.create_user(restorer_acls, target=target)
    weak, weak_password = secure.create_user(
        (*RESTORE_ACLS, (ResourceType.BROKER, "kafka-cluster", _LITERAL, AclOperation.DESCRIBE)),
        target=target,
    )
    new_password = f"kbackup-marker-user-{uuid.uuid4().hex}"
    plaintext_env = {
        "KBACKUP_KAFKA_BOOTSTRAP_SERVERS": own_stack.env["KBACKUP_KAFKA_BOOTSTRAP_SERVERS"],
        **secure.s3_env("backup"),
    }
    restore_env = {**secure.kafka_env(restorer, restorer_password), **secure.s3_env("restore")}
    restore = [
        "restore",
        "--kcql",
        f"INSERT INTO `{target}` SELECT * FROM {secure.bucket}:{prefix}",
        "--group-prefix",
        group_prefix,
        "--acls",
    ]
    started = datetime.now(UTC) - timedelta(seconds=5)
    try:
        backup = kbackup(
            "backup",
            "--kcql",
            f"INSERT INTO {secure.bucket}:{prefix} SELECT * FROM `{topic}` STOREAS AVRO PROPERTIES('store.envelope'=true)",
            env=plaintext_env,
        )
        assert_clean_success(backup)
        details = kbackup("ls", f"s3://{secure.bucket}/{prefix}", "--details", env=plaintext_env)
        assert_clean_success(details)
        for name in (f"User:{producer}", f"User:{consumer}", topic, group, "SCRAM-SHA-512"):
            assert name in details.stdout, f"{name} missing from:\n{details.stdout}"
        # the cluster loses its access rules: the principals' bindings, the consumer's SCRAM user
        _delete(secure, [b for b in all_bindings(secure) if b[3] in {f"User:{producer}", f"User:{consumer}"}])
        admin.alter_user_scram_credentials(
            [UserScramCredentialDeletion(consumer, ScramMechanism.SCRAM_SHA_512)], request_timeout=30
        )[consumer].result(timeout=30)

        refused = kbackup(*restore, env={**secure.kafka_env(weak, weak_password), **secure.s3_env("restore")})
        assert refused.returncode != 0
        assert "ALTER" in refused.stderr and f"User:{weak}" in refused.stderr, refused.stderr
        assert target not in admin.list_topics(timeout=30).topics  # refused before anything was created

        before = all_bindings(secure)
        dry = kbackup(*restore, "--dry-run", env=restore_env)
        assert_clean_success(dry)
        assert all_bindings(secure) == before
        assert target not in admin.list_topics(timeout=30).topics
        expected = {
            ("TOPIC", target, "LITERAL", f"User:{producer}", "*", "WRITE", "ALLOW"),
            ("TOPIC", target, "LITERAL", f"User:{consumer}", "*", "READ", "ALLOW"),
            ("GROUP", f"{group_prefix}{group}", "LITERAL", f"User:{consumer}", "*", "READ", "ALLOW"),
        }
        for rtype, name, _, principal, _, op, _ in expected:
            assert f"create: {principal} ALLOW {op} on {rtype} {name} (literal) from *" in dry.stdout, (
                dry.stdout
            )
        assert "ACL bindings: 3 would be created" in dry.stdout, dry.stdout
        # the prefixed binding would widen access on a cluster without it: reported, not created
        assert (
            f"widening: User:{producer} ALLOW DESCRIBE on TOPIC {topic[:8]} (prefixed) from *" in dry.stdout
        )

        done = kbackup(
            *restore,
            "--users",
            env={**restore_env, "KBACKUP_RESTORE_USER_PASSWORDS": json.dumps({consumer: new_password})},
        )
        assert_clean_success(done)
        for rtype, name, _, principal, _, op, _ in expected:
            assert f"created: {principal} ALLOW {op} on {rtype} {name} (literal) from *" in done.stdout
        assert f"created: user {consumer} SCRAM-SHA-512" in done.stdout, done.stdout
        assert all_bindings(secure) - before == expected
        assert before <= all_bindings(secure)  # nothing deleted

        # the principals work with the recreated rules alone: the consumer (its new password) resumes
        # where its group was, the producer writes
        resumed = read_as(sasl_config(secure, consumer, new_password), target, f"{group_prefix}{group}")
        assert resumed == list(range(COMMITTED, RECORDS))
        assert produce(sasl_config(secure, producer, producer_password), target, [{"value": b"after"}]) == 1

        places = {"restore stdout": done.stdout, "restore stderr": done.stderr, **prefect_records(started)}
        leaks = [where for where, text in places.items() if new_password in text]
        assert not leaks, leaks
    finally:
        delete_topics(admin, [topic, target])
        principals = {f"User:{u}" for u in (producer, consumer, restorer, weak)}
        _delete(secure, [b for b in all_bindings(secure) if b[3] in principals])


def _delete(secure: SecureStack, bindings: list[Binding]) -> None:
    filters = [
        AclBindingFilter(
            ResourceType[rtype],
            name,
            ResourcePatternType[pattern],
            principal,
            host,
            AclOperation[operation],
            AclPermissionType[permission],
        )
        for rtype, name, pattern, principal, host, operation, permission in bindings
    ]
    admin = secure.admin()
    if filters:
        for future in admin.delete_acls(filters, request_timeout=30).values():
            future.result(timeout=30)
