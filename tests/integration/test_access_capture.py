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

import uuid
from collections.abc import Callable

import pytest
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)

from flows.backup import BackupParameters, backup_flow
from tasks.services.kafka.acls import acl_rule
from tasks.services.manifest_store import read_chain
from tasks.services.object_store import open_store
from tests.support.access import Made, commit_offset
from tests.support.kafka import create_topic, produce
from tests.support.secure import BACKUP_ACLS, SecureStack

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _binding(
    rtype: ResourceType, name: str, pattern: ResourcePatternType, principal: str, operation: AclOperation
) -> AclBinding:
    return AclBinding(rtype, name, pattern, principal, "*", operation, AclPermissionType.ALLOW)


def _kcql(bucket: str, prefix: str, topic: str) -> str:
    return f"INSERT INTO {bucket}:{prefix} SELECT * FROM `{topic}` STOREAS AVRO PROPERTIES('store.envelope'=true)"


def test_a_backup_records_the_bindings_principals_and_scram_users_of_its_topic(
    access_stack: SecureStack, made: Made
) -> None:
    base = f"acl-{uuid.uuid4().hex[:8]}"
    topic, unrelated, group = f"{base}-orders", f"other-{uuid.uuid4().hex[:8]}", f"{base}-readers"
    admin = access_stack.admin()
    create_topic(admin, topic, 1, {})
    made.topics.append(topic)
    produce(access_stack.plaintext, topic, ({"value": f"v{i}".encode(), "partition": 0} for i in range(5)))
    commit_offset(admin, group, topic, 3)
    made.groups.append(group)

    consumer, _ = made.user()
    producer, _ = made.user()
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
    made.acls(*kept, *left_out)

    prefix = f"access-{uuid.uuid4().hex[:8]}"
    [result] = backup_flow(BackupParameters(kcql=_kcql(access_stack.bucket, prefix, topic), verify="quick"))

    [stored] = read_chain(open_store(), access_stack.bucket, prefix)
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
    access_stack: SecureStack, made: Made, use_env: Callable[..., None]
) -> None:
    topic = f"acl-lp-{uuid.uuid4().hex[:8]}"
    create_topic(access_stack.admin(), topic, 2, {})
    made.topics.append(topic)
    produce(
        access_stack.plaintext, topic, ({"value": f"v{i}".encode(), "partition": i % 2} for i in range(10))
    )
    user, password = made.user(BACKUP_ACLS, topic=topic)
    use_env(access_stack.kafka_env(user, password), access_stack.s3_env("backup"))

    prefix = f"access-lp-{uuid.uuid4().hex[:8]}"
    [result] = backup_flow(BackupParameters(kcql=_kcql(access_stack.bucket, prefix, topic), verify="quick"))

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
