"""A backup records the access rules of what it holds (tasks/backup/access.py), read from the real
broker with the StandardAuthorizer: the literal, prefixed and wildcard bindings of its topic, the
binding of a group whose offsets it holds, the restore's transactional-id binding, the principals
and SCRAM users they name — and not an unrelated topic's binding. A least-privilege backup user on
the SASL_SSL listener (no DESCRIBE on the cluster) still backs up, and its manifest says what was
not captured and why.

ACLs and SCRAM users are made through the PLAINTEXT listener (a super user there) with unique
names, and removed at the end of each test: the stack is shared.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import (
    AclBinding,
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
from tasks.services.kafka.acls import acl_rule
from tasks.services.manifest_store import read_chain
from tasks.services.object_store import open_store
from tests.support.kafka import create_topic, delete_topics, produce
from tests.support.secure import BACKUP_ACLS, SecureStack

pytestmark = pytest.mark.usefixtures("prefect_harness")

TIMEOUT_S = 30


class Cleanup:
    """What a test made on the shared stack, removed at its end: ACLs by principal, SCRAM users,
    topics, consumer groups."""

    def __init__(self, stack: SecureStack) -> None:
        self.stack = stack
        self.principals: set[str] = set()
        self.users: set[str] = set()
        self.topics: list[str] = []
        self.groups: list[str] = []

    def acls(self, *bindings: AclBinding) -> None:
        admin = self.stack.admin()
        self.principals.update(b.principal for b in bindings)
        for future in admin.create_acls(list(bindings), request_timeout=TIMEOUT_S).values():
            future.result(timeout=TIMEOUT_S)

    def user(self, acls: Any = (), **names: str) -> tuple[str, str]:
        user, password = self.stack.create_user(acls, **names)
        self.users.add(user)
        self.principals.add(f"User:{user}")
        return user, password

    def remove(self) -> None:
        admin = self.stack.admin()
        filters = [
            AclBindingFilter(
                ResourceType.ANY,
                None,  # type: ignore[arg-type]
                ResourcePatternType.ANY,
                principal,
                None,  # type: ignore[arg-type]
                AclOperation.ANY,
                AclPermissionType.ANY,
            )
            for principal in sorted(self.principals)
        ]
        if filters:
            for future in admin.delete_acls(filters, request_timeout=TIMEOUT_S).values():
                future.result(timeout=TIMEOUT_S)
        if self.users:
            deletions: list[UserScramCredentialAlteration] = [
                UserScramCredentialDeletion(u, ScramMechanism.SCRAM_SHA_512) for u in sorted(self.users)
            ]
            for future in admin.alter_user_scram_credentials(deletions, request_timeout=TIMEOUT_S).values():
                future.result(timeout=TIMEOUT_S)
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
def cleanup(stack: SecureStack) -> Iterator[Cleanup]:
    made = Cleanup(stack)
    yield made
    made.remove()


@pytest.fixture
def sasl_env(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """sasl_env(env, ...): these connection variables (and no other KBACKUP_KAFKA_*) for this test."""
    for name in list(os.environ):
        if name.startswith("KBACKUP_KAFKA_"):
            monkeypatch.delenv(name)

    def apply(*envs: dict[str, str]) -> None:
        for env in envs:
            for name, value in env.items():
                monkeypatch.setenv(name, value)

    return apply


def _binding(
    rtype: ResourceType, name: str, pattern: ResourcePatternType, principal: str, operation: AclOperation
) -> AclBinding:
    return AclBinding(rtype, name, pattern, principal, "*", operation, AclPermissionType.ALLOW)


def _kcql(bucket: str, prefix: str, topic: str) -> str:
    return f"INSERT INTO {bucket}:{prefix} SELECT * FROM `{topic}` STOREAS AVRO PROPERTIES('store.envelope'=true)"


def test_a_backup_records_the_bindings_principals_and_scram_users_of_its_topic(
    stack: SecureStack, cleanup: Cleanup
) -> None:
    base = f"acl-{uuid.uuid4().hex[:8]}"
    topic, unrelated, group = f"{base}-orders", f"other-{uuid.uuid4().hex[:8]}", f"{base}-readers"
    admin = stack.admin()
    create_topic(admin, topic, 1, {})
    cleanup.topics.append(topic)
    produce(stack.plaintext, topic, ({"value": f"v{i}".encode(), "partition": 0} for i in range(5)))
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, 3)])
    admin.alter_consumer_group_offsets([request], request_timeout=TIMEOUT_S)[group].result(timeout=TIMEOUT_S)
    cleanup.groups.append(group)

    consumer, _ = cleanup.user()
    producer, _ = cleanup.user()
    ghost = f"User:ghost-{uuid.uuid4().hex[:8]}"  # bindings, but no SCRAM credential
    literal, prefixed, pattern = ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED, ResourceType.TOPIC
    kept = [
        _binding(pattern, topic, literal, f"User:{consumer}", AclOperation.READ),
        _binding(ResourceType.GROUP, group, literal, f"User:{consumer}", AclOperation.READ),
        _binding(pattern, base, prefixed, f"User:{producer}", AclOperation.WRITE),
        _binding(pattern, "*", literal, ghost, AclOperation.DESCRIBE),
        _binding(
            ResourceType.TRANSACTIONAL_ID,
            "kbackup-restore-",
            prefixed,
            f"User:{producer}",
            AclOperation.WRITE,
        ),
    ]
    left_out = [
        _binding(pattern, unrelated, literal, f"User:{consumer}", AclOperation.READ),
        _binding(ResourceType.GROUP, f"{base}-elsewhere", literal, f"User:{producer}", AclOperation.READ),
    ]
    cleanup.acls(*kept, *left_out)

    prefix = f"access-{uuid.uuid4().hex[:8]}"
    [result] = backup_flow(BackupParameters(kcql=_kcql(stack.bucket, prefix, topic), verify="quick"))

    [stored] = read_chain(open_store(), stack.bucket, prefix)
    assert stored.access == result.manifest.access
    assert [g.group for g in stored.consumer_groups] == [group]
    access = stored.access
    assert access is not None and access.not_captured == ()
    ours = {f"User:{consumer}", f"User:{producer}", ghost}
    # the shared stack may hold others' wildcard and restore bindings: ours are exactly these
    assert {r for r in access.acls if r.principal in ours} == {acl_rule(b) for b in kept}
    assert not any(r.resource_name in (unrelated, f"{base}-elsewhere") for r in access.acls)
    assert ours <= set(access.principals)
    assert set(access.principals) == {r.principal for r in access.acls}
    scram = {u.user: u for u in access.scram_users}
    for user in (consumer, producer):
        [credential] = scram[user].credentials
        assert (credential.mechanism, credential.iterations) == ("SCRAM-SHA-512", 8192)
    assert ghost.removeprefix("User:") not in scram
    assert any(c.name == "min.insync.replicas" for c in access.broker_configs)  # the stack sets it
    assert access.client_quotas.startswith("not captured") and "librdkafka#5227" in access.client_quotas


def test_a_least_privilege_backup_user_backs_up_and_says_what_was_not_captured(
    stack: SecureStack, cleanup: Cleanup, sasl_env: Callable[..., None]
) -> None:
    topic = f"acl-lp-{uuid.uuid4().hex[:8]}"
    create_topic(stack.admin(), topic, 2, {})
    cleanup.topics.append(topic)
    produce(stack.plaintext, topic, ({"value": f"v{i}".encode(), "partition": i % 2} for i in range(10)))
    user, password = cleanup.user(BACKUP_ACLS, topic=topic)
    sasl_env(stack.kafka_env(user, password), stack.s3_env("backup"))

    prefix = f"access-lp-{uuid.uuid4().hex[:8]}"
    [result] = backup_flow(BackupParameters(kcql=_kcql(stack.bucket, prefix, topic), verify="quick"))

    assert result.manifest.record_count == 10
    access = result.manifest.access
    assert access is not None
    assert (access.acls, access.principals, access.scram_users, access.broker_configs) == ((), (), (), ())
    refused = f"User:{user} may not DESCRIBE the cluster (CLUSTER_AUTHORIZATION_FAILED)"
    assert access.not_captured == (
        f"ACL bindings: {refused}",
        f"SCRAM users: {refused}",
        f"broker configs: User:{user} may not DESCRIBE_CONFIGS the cluster (CLUSTER_AUTHORIZATION_FAILED)",
    )
