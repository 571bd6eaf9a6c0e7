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
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import (
    AclOperation,
    ResourcePatternType,
    ResourceType,
    ScramMechanism,
    UserScramCredentialDeletion,
)

from tests.support.access import (
    CLUSTER,
    Made,
    all_bindings,
    bindings_of,
    commit_offset,
    delete_bindings,
    read_as,
    sasl_config,
)
from tests.support.cli import assert_clean_success, run_kbackup
from tests.support.kafka import create_topic, numbered_messages, produce
from tests.support.prefect_records import prefect_records
from tests.support.secure import RESTORE_ACLS, SecureStack

pytestmark = pytest.mark.usefixtures("prefect_harness")

Kbackup = Callable[..., subprocess.CompletedProcess[str]]
_LITERAL, _PREFIXED = ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED
RECORDS, COMMITTED = 12, 5


@pytest.fixture
def kbackup(tmp_path: Path) -> Kbackup:
    from prefect.settings import PREFECT_API_URL

    def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return run_kbackup(*args, cwd=tmp_path, env={"PREFECT_API_URL": str(PREFECT_API_URL.value()), **env})

    return run


@pytest.fixture
def made(secure: SecureStack) -> Iterator[Made]:
    things = Made(secure)
    yield things
    things.remove()


def test_access_rules_come_back_with_the_restored_topic(
    secure: SecureStack, made: Made, unique_name: Callable[[str], str], kbackup: Kbackup, own_stack: Any
) -> None:
    admin = secure.admin()
    topic, target, prefix = unique_name("acl-src"), unique_name("acl-dst"), unique_name("bk")
    group, group_prefix = f"{unique_name('grp')}", "dr-"
    create_topic(admin, topic, 1, {})
    made.topics += [topic, target]
    made.groups += [group, f"{group_prefix}{group}"]
    produce(secure.plaintext, topic, numbered_messages(RECORDS, partitions=1))
    commit_offset(admin, group, topic, COMMITTED)
    producer, producer_password = made.user(
        (
            (ResourceType.TOPIC, "{topic}", _LITERAL, AclOperation.WRITE),
            (ResourceType.TOPIC, "{stem}", _PREFIXED, AclOperation.DESCRIBE),
        ),
        topic=topic,
        stem=topic[:8],
    )
    consumer, _ = made.user(
        (
            (ResourceType.TOPIC, "{topic}", _LITERAL, AclOperation.READ),
            (ResourceType.GROUP, "{group}", _LITERAL, AclOperation.READ),
        ),
        topic=topic,
        group=group,
    )
    restorer_acls = (
        *RESTORE_ACLS,
        (*CLUSTER, AclOperation.ALTER),
        (*CLUSTER, AclOperation.DESCRIBE),
        (ResourceType.GROUP, group_prefix, _PREFIXED, AclOperation.READ),
    )
    restorer, restorer_password = made.user(restorer_acls, target=target)
    weak, weak_password = made.user(
        (*RESTORE_ACLS, (*CLUSTER, AclOperation.DESCRIBE)),
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
    delete_bindings(admin, bindings_of(f"User:{producer}"), bindings_of(f"User:{consumer}"))
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
        assert f"create: {principal} ALLOW {op} on {rtype} {name} (literal) from *" in dry.stdout, dry.stdout
    assert "ACL bindings: 3 would be created" in dry.stdout, dry.stdout
    # the prefixed binding would widen access on a cluster without it: reported, not created
    assert f"widening: User:{producer} ALLOW DESCRIBE on TOPIC {topic[:8]} (prefixed) from *" in dry.stdout

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
