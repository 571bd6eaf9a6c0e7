"""Access rules on a stack's secured side, for the tests of what a backup captures and a restore
recreates: every binding as a tuple of names, what a test made (principals, SCRAM users, topics,
groups) removed at its end, a principal's client settings on the SASL_SSL listener, reading and
committing as a group."""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialDeletion,
)

from tasks.services.kafka.acls import MATCH_EVERY_BINDING
from tests.support.kafka import delete_topics
from tests.support.secure import Acl, SecureStack

TIMEOUT_S = 30
# (resource type, name, pattern, principal, host, operation, permission), as confluent-kafka names them
Binding = tuple[str, str, str, str, str, str, str]
CLUSTER = (ResourceType.BROKER, "kafka-cluster", ResourcePatternType.LITERAL)


def all_bindings(stack: SecureStack) -> set[Binding]:
    """Every ACL binding of the stack's cluster."""
    admin = stack.admin()  # held until the result is in: a collected client cancels its requests
    found = admin.describe_acls(MATCH_EVERY_BINDING, request_timeout=TIMEOUT_S).result(timeout=TIMEOUT_S)
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


def delete_bindings(admin: AdminClient, *filters: AclBindingFilter) -> int:
    """Delete the bindings the filters match; how many were deleted."""
    if not filters:
        return 0
    futures = admin.delete_acls(list(filters), request_timeout=TIMEOUT_S).values()
    return sum(len(future.result(timeout=TIMEOUT_S)) for future in futures)


def bindings_of(principal: str) -> AclBindingFilter:
    return AclBindingFilter(
        ResourceType.ANY,
        None,  # type: ignore[arg-type]
        ResourcePatternType.ANY,
        principal,
        None,  # type: ignore[arg-type]
        AclOperation.ANY,
        AclPermissionType.ANY,
    )


class Made:
    """What a test made on a stack, removed at its end: the bindings of its principals, its SCRAM
    users, topics and consumer groups."""

    def __init__(self, stack: SecureStack) -> None:
        self.stack = stack
        self.principals: set[str] = set()
        self.users: set[str] = set()
        self.topics: list[str] = []
        self.groups: list[str] = []

    def user(self, acls: tuple[Acl, ...] = (), **names: str) -> tuple[str, str]:
        """A new SCRAM user holding `acls` (SecureStack.create_user): (user, password)."""
        user, password = self.stack.create_user(acls, **names)
        self.users.add(user)
        self.principals.add(f"User:{user}")
        return user, password

    def acls(self, *bindings: AclBinding) -> None:
        admin = self.stack.admin()
        self.principals.update(b.principal for b in bindings)
        for future in admin.create_acls(list(bindings), request_timeout=TIMEOUT_S).values():
            future.result(timeout=TIMEOUT_S)

    def remove(self) -> None:
        admin = self.stack.admin()
        delete_bindings(admin, *(bindings_of(p) for p in sorted(self.principals)))
        if self.users:
            deletions: list[UserScramCredentialAlteration] = [
                UserScramCredentialDeletion(u, ScramMechanism.SCRAM_SHA_512) for u in sorted(self.users)
            ]
            for future in admin.alter_user_scram_credentials(deletions, request_timeout=TIMEOUT_S).values():
                future.exception(timeout=TIMEOUT_S)  # one the test deleted already: fine
        if self.groups:
            for future in admin.delete_consumer_groups(self.groups, request_timeout=TIMEOUT_S).values():
                future.exception(timeout=TIMEOUT_S)  # best effort
        delete_topics(admin, self.topics)


def sasl_config(stack: SecureStack, user: str, password: str) -> dict[str, Any]:
    """confluent-kafka settings for `user` on the stack's SASL_SSL listener."""
    env = stack.kafka_env(user, password)
    return {
        "bootstrap.servers": env["KBACKUP_KAFKA_BOOTSTRAP_SERVERS"],
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": user,
        "sasl.password": password,
        "ssl.ca.location": env["KBACKUP_KAFKA_SSL_CA_LOCATION"],
    }


def commit_offset(admin: AdminClient, group: str, topic: str, offset: int) -> None:
    """Commit `group`'s offset on `topic`'s partition 0, asked again while a fresh broker's group
    coordinator is still loading (the request then succeeds with an error on the partition, and
    the group does not exist)."""
    deadline = time.monotonic() + 60
    while True:
        request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, offset)])
        done = admin.alter_consumer_group_offsets([request], request_timeout=TIMEOUT_S)[group].result(
            timeout=TIMEOUT_S
        )
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
            msg = consumer.poll(TIMEOUT_S)
            assert msg is not None, f"no record nor end of {topic} within {TIMEOUT_S} s for group {group}"
            if msg.error():
                assert msg.error().code() == -191, msg.error()  # _PARTITION_EOF
                return offsets
            offsets.append(msg.offset())
    finally:
        consumer.close()
