"""ACL bindings, SCRAM users and the cluster's authorized operations through Kafka's admin API, as
layout.access models them: what a backup captures (tasks/backup/access.py) and what a restore reads
of its target and creates there (tasks/restore/access.py).

The calls raise what the client raises (KafkaException, or KafkaAuthorizationError from the error
callback while polling); each caller says what a failure means for it. Ask `cluster_operations`
first: without DESCRIBE on the cluster, librdkafka 2.x answers DescribeAcls with no binding instead
of the error, and aborts the process (`munmap_chunk(): invalid pointer`) on
DescribeUserScramCredentials' CLUSTER_AUTHORIZATION_FAILED (seen with confluent-kafka 2.16.2).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any, cast

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from layout.access import AclRule, ScramCredential, ScramUser
from tasks.services.kafka.admin import admin_result, kafka_failure
from tasks.services.kafka.calls import ADMIN_TIMEOUT_S

# None: any name, principal and host (confluent-kafka's stubs say str)
MATCH_EVERY_BINDING = AclBindingFilter(
    ResourceType.ANY,
    None,  # type: ignore[arg-type]
    ResourcePatternType.ANY,
    None,  # type: ignore[arg-type]
    None,  # type: ignore[arg-type]
    AclOperation.ANY,
    AclPermissionType.ANY,
)
# The resource types whose bindings a backup records (a CLUSTER binding never is one).
RECORDED_TYPES = ("TOPIC", "GROUP", "TRANSACTIONAL_ID")


def acl_rule(binding: Any) -> AclRule:
    """A confluent-kafka AclBinding as the manifest records it."""
    return AclRule(
        resource_type=binding.restype.name,
        resource_name=binding.name,
        pattern_type=binding.resource_pattern_type.name,
        principal=binding.principal,
        host=binding.host,
        operation=binding.operation.name,
        permission=binding.permission_type.name,
    )


def acl_binding(rule: AclRule) -> AclBinding:
    """The AclBinding that creates `rule`."""
    return AclBinding(
        ResourceType[rule.resource_type],
        rule.resource_name,
        ResourcePatternType[rule.pattern_type],
        rule.principal,
        rule.host,
        AclOperation[rule.operation],
        AclPermissionType[rule.permission],
    )


def error_code(exc: KafkaException) -> int | None:
    error = exc.args[0] if exc.args else None
    return error.code() if isinstance(error, KafkaError) else None


def principal_of(kafka_config: dict[str, Any], role: str) -> str:
    """The client's principal as an ACL names it (`User:alice`); without SASL, `role` in words
    ("the backup's principal")."""
    username = kafka_config.get("sasl.username")
    return f"User:{username}" if username else role


def cluster_operations(admin: AdminClient, kafka_config: dict[str, Any]) -> frozenset[str]:
    """What the client's principal may do on the cluster (ALTER, DESCRIBE, DESCRIBE_CONFIGS, …;
    ALL), as the broker reports it in one DescribeCluster."""
    future = admin.describe_cluster(include_authorized_operations=True, request_timeout=ADMIN_TIMEOUT_S)
    try:
        described = admin_result(admin, future)
    except KafkaException as exc:
        raise kafka_failure("describe cluster", kafka_config, exc) from exc
    return frozenset(op.name for op in described.authorized_operations or ())


def allowed(operations: frozenset[str], operation: str) -> bool:
    return operation in operations or "ALL" in operations


def describe_bindings(admin: AdminClient) -> list[AclRule]:
    """Every literal or prefixed binding of a topic, group or transactional id, in one request."""
    bindings = admin_result(admin, admin.describe_acls(MATCH_EVERY_BINDING, request_timeout=ADMIN_TIMEOUT_S))
    return [
        acl_rule(b)
        for b in bindings
        if b.restype.name in RECORDED_TYPES and b.resource_pattern_type.name in ("LITERAL", "PREFIXED")
    ]


def describe_scram_users(admin: AdminClient, users: Sequence[str]) -> list[ScramUser]:
    """The SCRAM credentials (mechanisms, iterations) of those of `users` who have any, in one
    request, sorted by name; a user without any (RESOURCE_NOT_FOUND) is absent."""
    if not users:
        return []
    futures = cast(
        "dict[str, Future[Any]]",
        admin.describe_user_scram_credentials(list(users), request_timeout=ADMIN_TIMEOUT_S),
    )
    found = []
    for user, future in sorted(futures.items()):
        try:
            description = admin_result(admin, future)
        except KafkaException as exc:
            if error_code(exc) == KafkaError.RESOURCE_NOT_FOUND:
                continue  # no SCRAM credential: not a SCRAM user
            raise
        credentials = sorted(
            (
                ScramCredential(mechanism=info.mechanism.name.replace("_", "-"), iterations=info.iterations)
                for info in description.scram_credential_infos or ()
            ),
            key=lambda c: c.mechanism,
        )
        if credentials:
            found.append(ScramUser(user=user, credentials=tuple(credentials)))
    return found
