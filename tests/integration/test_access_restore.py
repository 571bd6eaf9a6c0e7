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
import uuid
from collections.abc import Callable
from typing import Any

import pytest
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
from tests.support.access import (
    CLUSTER,
    TIMEOUT_S,
    Binding,
    Made,
    all_bindings,
    commit_offset,
    read_as,
    sasl_config,
)
from tests.support.kafka import create_topic, numbered_messages, produce
from tests.support.secure import RESTORE_ACLS, Acl, SecureStack

pytestmark = pytest.mark.usefixtures("prefect_harness")

RECORDS, COMMITTED = 12, 5
_LITERAL, _PREFIXED = ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED


def test_access_rules_restored_on_request_after_a_dry_run_diff(
    access_stack: SecureStack, made: Made, use_env: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    token = uuid.uuid4().hex[:8]
    base = f"acr-{token}"
    topic, group, group_prefix = f"{base}-orders", f"{base}-readers", f"dr-{token}-"
    target, plain_target, refused_target = (f"acr-dst-{token}", f"acr-plain-{token}", f"acr-no-{token}")
    admin = access_stack.admin()
    create_topic(admin, topic, 1, {})
    made.topics += [topic, target, plain_target, refused_target]
    produce(access_stack.plaintext, topic, numbered_messages(RECORDS, partitions=1))
    commit_offset(admin, group, topic, COMMITTED)
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
    use_env({"KBACKUP_KAFKA_BOOTSTRAP_SERVERS": access_stack.env["KBACKUP_KAFKA_BOOTSTRAP_SERVERS"]})
    prefix = f"access-restore-{token}"
    kcql = f"INSERT INTO {access_stack.bucket}:{prefix} SELECT * FROM `{topic}` STOREAS AVRO PROPERTIES('store.envelope'=true)"
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
        statement = f"INSERT INTO `{into}` SELECT * FROM {access_stack.bucket}:{prefix}"
        return restore_flow(
            RestoreParameters(kcql=statement, group_prefix=group_prefix, dry_run=dry_run, **access)
        )

    # a restore user without ALTER on the cluster: refused before the target is created
    use_env(access_stack.kafka_env(weak, weak_password), access_stack.s3_env("restore"))
    with pytest.raises(AccessPermissionError) as refused:
        restore(refused_target, acls="literal")
    assert refused.value.missing == ("ALTER",) and refused.value.principal == f"User:{weak}"
    assert f"'restore.acls' needs ALTER on the cluster: User:{weak} has DESCRIBE only" in str(refused.value)
    assert refused_target not in admin.list_topics(timeout=TIMEOUT_S).topics

    # without the property, no binding is read or touched (a restore user without any cluster ACL)
    before = {b for b in all_bindings(access_stack) if ours(b)}
    use_env(access_stack.kafka_env(plain_restorer, plain_password), access_stack.s3_env("restore"))
    plain = restore(plain_target)
    assert plain.records == RECORDS and plain.access is None
    assert {b for b in all_bindings(access_stack) if ours(b)} == before

    # the dry run: exactly the diff, nothing created
    use_env(access_stack.kafka_env(restorer, restorer_password), access_stack.s3_env("restore"))
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
    assert {b for b in all_bindings(access_stack) if ours(b)} == before
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
    after = {b for b in all_bindings(access_stack) if ours(b)}
    assert after - before == expected and before <= after  # nothing else created, nothing deleted
    described = admin.describe_user_scram_credentials([consumer, auditor], request_timeout=TIMEOUT_S)
    [credential] = described[consumer].result(timeout=TIMEOUT_S).scram_credential_infos
    assert (credential.mechanism, credential.iterations) == (ScramMechanism.SCRAM_SHA_512, 8192)
    assert described[auditor].exception(timeout=TIMEOUT_S) is not None  # no password: not created
    assert new_password not in json.dumps(done.model_dump(mode="json"))

    # the principals work with the recreated rules alone
    resumed = read_as(sasl_config(access_stack, consumer, new_password), target, f"{group_prefix}{group}")
    assert resumed == list(range(COMMITTED, RECORDS))
    assert produce(sasl_config(access_stack, producer, producer_password), target, [{"value": b"after"}]) == 1
