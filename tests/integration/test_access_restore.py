"""A restore brings back who may use what it restores (tasks/restore/access.py), on the stack's
SASL_SSL listener with the StandardAuthorizer: a topic with literal and prefixed bindings for a
producer and a consumer principal (and a consumer group with committed offsets and its binding) is
backed up; restored under a new name with `restore.acls` by a restore user holding RESTORE_ACLS
plus ALTER and DESCRIBE on the cluster, the consumer reads the restored topic with its (renamed)
group and the producer writes it, and the only bindings that changed are the ones created. The dry
run shows exactly that diff first and creates nothing; without the property no binding is touched;
a restore user without ALTER on the cluster fails before the target is created, naming ALTER;
`restore.users` creates a missing SCRAM user with the password from KBACKUP_RESTORE_USER_PASSWORDS
and lists one without a password.

ACLs and SCRAM users are made through the PLAINTEXT listener (a super user there) with unique
names, and removed at the end: the stack is shared, so the before/after comparison of every
binding is on those naming this test's principals or resources (others' tests may add or remove
theirs meanwhile).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
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
    UserScramCredentialAlteration,
    UserScramCredentialDeletion,
)

from flows.backup import BackupParameters, backup_flow
from flows.restore import RestoreParameters, restore_flow
from tasks.restore.access import PASSWORDS_ENV
from tasks.restore.errors import AccessPermissionError
from tests.support.kafka import create_topic, delete_topics, numbered_messages, produce
from tests.support.secure import RESTORE_ACLS, Acl, SecureStack

pytestmark = pytest.mark.usefixtures("prefect_harness")

TIMEOUT_S = 30
RECORDS, COMMITTED = 12, 5
Binding = tuple[str, str, str, str, str, str, str]
_LITERAL, _PREFIXED = ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED
CLUSTER = (ResourceType.BROKER, "kafka-cluster", _LITERAL)
_EVERY_BINDING = AclBindingFilter(
    ResourceType.ANY,
    None,  # type: ignore[arg-type]
    ResourcePatternType.ANY,
    None,  # type: ignore[arg-type]
    None,  # type: ignore[arg-type]
    AclOperation.ANY,
    AclPermissionType.ANY,
)


class Made:
    """What the test made on the shared stack, removed at its end: bindings by principal, SCRAM
    users, topics, consumer groups."""

    def __init__(self, stack: SecureStack) -> None:
        self.stack = stack
        self.users: set[str] = set()
        self.topics: list[str] = []
        self.groups: list[str] = []

    def user(self, acls: tuple[Acl, ...] = (), **names: str) -> tuple[str, str]:
        user, password = self.stack.create_user(acls, **names)
        self.users.add(user)
        return user, password

    def remove(self) -> None:
        admin = self.stack.admin()
        filters = [
            AclBindingFilter(
                ResourceType.ANY,
                None,  # type: ignore[arg-type]
                ResourcePatternType.ANY,
                f"User:{user}",
                None,  # type: ignore[arg-type]
                AclOperation.ANY,
                AclPermissionType.ANY,
            )
            for user in sorted(self.users)
        ]
        if filters:
            for future in admin.delete_acls(filters, request_timeout=TIMEOUT_S).values():
                future.result(timeout=TIMEOUT_S)
        if self.users:
            deletions: list[UserScramCredentialAlteration] = [
                UserScramCredentialDeletion(u, ScramMechanism.SCRAM_SHA_512) for u in sorted(self.users)
            ]
            for future in admin.alter_user_scram_credentials(deletions, request_timeout=TIMEOUT_S).values():
                future.exception(timeout=TIMEOUT_S)  # one already deleted by the test: fine
        if self.groups:
            for future in admin.delete_consumer_groups(self.groups, request_timeout=TIMEOUT_S).values():
                future.exception(timeout=TIMEOUT_S)  # best effort
        delete_topics(admin, self.topics)


@pytest.fixture
def stack(
    request: pytest.FixtureRequest, stack_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> SecureStack:
    """The shared stack's secured side when it has one (`.stack/env` names its SASL_SSL listener),
    else the session's own stack, which then serves the whole test (PLAINTEXT and S3 included)."""
    if stack_env.get("KBACKUP_STACK_SASL_BOOTSTRAP"):
        secure = SecureStack(dict(stack_env))
    else:
        secure = request.getfixturevalue("secure")
        for name, value in {
            "KBACKUP_KAFKA_BOOTSTRAP_SERVERS": secure.env["KBACKUP_KAFKA_BOOTSTRAP_SERVERS"],
            **secure.s3_env("admin"),
        }.items():
            monkeypatch.setenv(name, value)
    secure.ensure_bucket()
    return secure


@pytest.fixture
def made(stack: SecureStack) -> Iterator[Made]:
    things = Made(stack)
    yield things
    things.remove()


@pytest.fixture
def connect_as(stack: SecureStack, monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str], None]:
    """connect_as(user, password): the flows' Kafka clients are `user` on the SASL_SSL listener,
    their S3 client the bucket-scoped restore identity."""
    plaintext = {n: v for n, v in os.environ.items() if n.startswith("KBACKUP_KAFKA_")}

    def apply(user: str, password: str) -> None:
        for name in plaintext:
            monkeypatch.delenv(name)
        for name, value in {**stack.kafka_env(user, password), **stack.s3_env("restore")}.items():
            monkeypatch.setenv(name, value)

    return apply


def bindings(stack: SecureStack) -> set[Binding]:
    admin = stack.admin()  # held until the result is in: a collected client cancels its requests
    found = admin.describe_acls(_EVERY_BINDING, request_timeout=TIMEOUT_S).result(timeout=TIMEOUT_S)
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


def sasl_config(stack: SecureStack, user: str, password: str) -> dict[str, Any]:
    env = stack.kafka_env(user, password)
    return {
        "bootstrap.servers": env["KBACKUP_KAFKA_BOOTSTRAP_SERVERS"],
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": user,
        "sasl.password": password,
        "ssl.ca.location": env["KBACKUP_KAFKA_SSL_CA_LOCATION"],
    }


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
            msg = consumer.poll(TIMEOUT_S)
            assert msg is not None, f"no record nor end of {topic} within {TIMEOUT_S} s for group {group}"
            if msg.error():
                assert msg.error().code() == -191, msg.error()  # _PARTITION_EOF
                return offsets
            offsets.append(msg.offset())
    finally:
        consumer.close()


def test_access_rules_restored_on_request_after_a_dry_run_diff(
    stack: SecureStack, made: Made, connect_as: Callable[[str, str], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    token = uuid.uuid4().hex[:8]
    base = f"acr-{token}"
    topic, group, group_prefix = f"{base}-orders", f"{base}-readers", f"dr-{token}-"
    target, plain_target, refused_target = (f"acr-dst-{token}", f"acr-plain-{token}", f"acr-no-{token}")
    admin = stack.admin()
    create_topic(admin, topic, 1, {})
    made.topics += [topic, target, plain_target, refused_target]
    produce(stack.plaintext, topic, numbered_messages(RECORDS, partitions=1))
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, COMMITTED)])
    admin.alter_consumer_group_offsets([request], request_timeout=TIMEOUT_S)[group].result(timeout=TIMEOUT_S)
    made.groups += [group, f"{group_prefix}{group}"]

    producer, producer_password = made.user(
        (
            (ResourceType.TOPIC, "{topic}", _LITERAL, AclOperation.WRITE),
            (ResourceType.TOPIC, "{base}", _PREFIXED, AclOperation.DESCRIBE),
        ),
        topic=topic,
        base=base,
    )
    consumer, _ = made.user(
        (
            (ResourceType.TOPIC, "{topic}", _LITERAL, AclOperation.READ),
            (ResourceType.GROUP, "{group}", _LITERAL, AclOperation.READ),
        ),
        topic=topic,
        group=group,
    )
    auditor, _ = made.user(((ResourceType.TOPIC, "{topic}", _LITERAL, AclOperation.DESCRIBE),), topic=topic)
    translate = (ResourceType.GROUP, group_prefix, _PREFIXED, AclOperation.READ)
    restorer_acls: tuple[Acl, ...] = (
        *RESTORE_ACLS,
        (*CLUSTER, AclOperation.ALTER),
        (*CLUSTER, AclOperation.DESCRIBE),
        translate,
    )
    restorer, restorer_password = made.user(restorer_acls, target=target)
    plain_restorer, plain_password = made.user(
        (*RESTORE_ACLS, translate), target=plain_target
    )  # no cluster ACL
    weak, weak_password = made.user((*RESTORE_ACLS, (*CLUSTER, AclOperation.DESCRIBE)), target=refused_target)
    principals = {f"User:{u}" for u in made.users}

    def ours(binding: Binding) -> bool:
        return binding[3] in principals or token in binding[1]

    # the backup, as the PLAINTEXT listener's super user: it records the access rules
    prefix = f"access-restore-{token}"
    kcql = f"INSERT INTO {stack.bucket}:{prefix} SELECT * FROM `{topic}` STOREAS AVRO PROPERTIES('store.envelope'=true)"
    [backup] = backup_flow(BackupParameters(kcql=kcql, verify="quick"))
    assert backup.manifest.access is not None and backup.manifest.access.not_captured == ()

    # lost with the cluster's access rules: the consumer's and the auditor's SCRAM users and the
    # producer's prefixed binding (on the same cluster it would be found: `exists`, not `widening`)
    lost: list[UserScramCredentialAlteration] = [
        UserScramCredentialDeletion(u, ScramMechanism.SCRAM_SHA_512) for u in (consumer, auditor)
    ]
    for future in admin.alter_user_scram_credentials(lost, request_timeout=TIMEOUT_S).values():
        future.result(timeout=TIMEOUT_S)
    prefixed = AclBindingFilter(
        ResourceType.TOPIC,
        base,
        _PREFIXED,
        f"User:{producer}",
        "*",
        AclOperation.DESCRIBE,
        AclPermissionType.ALLOW,
    )
    [deleted] = admin.delete_acls([prefixed], request_timeout=TIMEOUT_S).values()
    assert len(deleted.result(timeout=TIMEOUT_S)) == 1

    def restore(into: str, dry_run: bool = False, **access: Any) -> Any:
        statement = f"INSERT INTO `{into}` SELECT * FROM {stack.bucket}:{prefix}"
        return restore_flow(
            RestoreParameters(kcql=statement, group_prefix=group_prefix, dry_run=dry_run, **access)
        )

    # a restore user without ALTER on the cluster: refused before the target is created
    connect_as(weak, weak_password)
    with pytest.raises(AccessPermissionError) as refused:
        restore(refused_target, acls="literal")
    assert refused.value.missing == ("ALTER",) and refused.value.principal == f"User:{weak}"
    assert f"'restore.acls' needs ALTER on the cluster: User:{weak} has DESCRIBE only" in str(refused.value)
    assert refused_target not in admin.list_topics(timeout=TIMEOUT_S).topics

    # without the property, no binding is read or touched (a restore user without any cluster ACL)
    before = {b for b in bindings(stack) if ours(b)}
    connect_as(plain_restorer, plain_password)
    plain = restore(plain_target)
    assert plain.records == RECORDS and plain.access is None
    assert {b for b in bindings(stack) if ours(b)} == before

    # the dry run: exactly the diff, nothing created
    connect_as(restorer, restorer_password)
    monkeypatch.setenv(PASSWORDS_ENV, json.dumps({consumer: f"pw-{uuid.uuid4().hex}"}))
    dry = restore(target, dry_run=True, acls="literal", users=True)
    assert dry.access is not None and not dry.access.applied
    expected = {
        ("TOPIC", target, "LITERAL", f"User:{producer}", "*", "WRITE", "ALLOW"),
        ("TOPIC", target, "LITERAL", f"User:{consumer}", "*", "READ", "ALLOW"),
        ("TOPIC", target, "LITERAL", f"User:{auditor}", "*", "DESCRIBE", "ALLOW"),
        ("GROUP", f"{group_prefix}{group}", "LITERAL", f"User:{consumer}", "*", "READ", "ALLOW"),
    }
    planned = {
        (r.resource_type, r.resource_name, r.pattern_type, r.principal, r.host, r.operation, r.permission)
        for r in dry.access.bindings_to_create
    }
    assert planned == expected
    ours_by_kind = {
        (c.captured.principal, c.kind) for c in dry.access.acls if c.captured.principal in principals
    }
    assert (f"User:{producer}", "widening") in ours_by_kind  # the prefixed binding: reported, not created
    users = {u.user: u.kind for u in dry.access.users}
    assert (users[consumer], users[producer], users[auditor]) == ("create", "exists", "no-password")
    assert {b for b in bindings(stack) if ours(b)} == before
    assert target not in admin.list_topics(timeout=TIMEOUT_S).topics

    # the restore: records, checked, the group translated, then exactly those bindings and the user
    new_password = f"pw-{uuid.uuid4().hex}"
    monkeypatch.setenv(PASSWORDS_ENV, json.dumps({consumer: new_password}))
    done = restore(target, acls="literal", users=True)
    assert done.records == RECORDS and done.ok
    assert done.access is not None and done.access.applied
    assert done.access.lines() == [
        line.replace("create:", "created:", 1) if line.startswith("create:") else line
        for line in dry.access.lines()
    ]
    after = {b for b in bindings(stack) if ours(b)}
    assert after - before == expected and before <= after  # nothing else created, nothing deleted
    described = admin.describe_user_scram_credentials([consumer, auditor], request_timeout=TIMEOUT_S)
    [credential] = described[consumer].result(timeout=TIMEOUT_S).scram_credential_infos
    assert (credential.mechanism, credential.iterations) == (ScramMechanism.SCRAM_SHA_512, 8192)
    assert described[auditor].exception(timeout=TIMEOUT_S) is not None  # no password: not created
    assert new_password not in json.dumps(done.model_dump(mode="json"))

    # the principals work with the recreated rules alone
    resumed = read_as(sasl_config(stack, consumer, new_password), target, f"{group_prefix}{group}")
    assert resumed == list(range(COMMITTED, RECORDS))
    assert produce(sasl_config(stack, producer, producer_password), target, [{"value": b"after"}]) == 1
