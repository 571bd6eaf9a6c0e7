"""The access rules a backup records of what it holds (the manifest's `access`), read with Kafka's
admin API at snapshot time: one DescribeAcls matching every binding, kept by
layout.access.relevant_rules (the backed-up topics, the consumer groups whose offsets it holds, the
restore's transactional ids); one DescribeUserScramCredentials for the `User:` principals those
bindings name; one DescribeConfigs per broker (a request may name only one broker), keeping the
dynamic configs. The cluster-wide dynamic defaults come with every broker's description (source
DYNAMIC_DEFAULT_BROKER_CONFIG, also among an overridden config's synonyms): the client refuses the
default's own resource (`ConfigResource(BROKER, "")`: "Invalid ConfigResource").

A part the backup's principal may not read (no DESCRIBE or DESCRIBE_CONFIGS on the cluster:
CLUSTER_AUTHORIZATION_FAILED), or that the brokers cannot answer (no authorizer:
SECURITY_DISABLED; too old: UNSUPPORTED_VERSION), becomes a `not_captured` line saying what and why,
logged as a warning: the backup is complete without it. Anything else (unreachable brokers above
all) raises as every admin call does, retryable or not.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import ConfigResource, ConfigSource, ResourceType
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from layout.access import (
    ACL_BINDINGS,
    BROKER_CONFIGS,
    SCRAM_USERS,
    AccessCapture,
    AclRule,
    BrokerConfig,
    ScramUser,
    principals_of,
    relevant_rules,
    scram_user_names,
)
from tasks.runtime.retry import RETRY_OPTIONS
from tasks.services.errors import KafkaAuthorizationError
from tasks.services.kafka.acls import (
    allowed,
    cluster_operations,
    describe_bindings,
    principal_of,
)
from tasks.services.kafka.acls import describe_scram_users as scram_users_of
from tasks.services.kafka.admin import admin_client, admin_result, cluster_metadata, kafka_failure
from tasks.services.kafka.calls import ADMIN_TIMEOUT_S

if TYPE_CHECKING:
    from confluent_kafka.admin import AdminClient

    from tasks.backup.plan import BackupPlan

# What makes a part "not captured" instead of a failed backup, and how its line says why.
_NOT_ALLOWED = {"CLUSTER_AUTHORIZATION_FAILED"}
_NOT_AVAILABLE = {
    "SECURITY_DISABLED": "the brokers have no authorizer",
    "UNSUPPORTED_VERSION": "the brokers do not support the request",
}
_DYNAMIC_SOURCES = {
    ConfigSource.DYNAMIC_BROKER_CONFIG.value: "DYNAMIC_BROKER_CONFIG",
    ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value: "DYNAMIC_DEFAULT_BROKER_CONFIG",
}


class _NotCaptured(Exception):
    """A part the backup records without: `line` says what and why (never leaves this module)."""

    def __init__(self, line: str) -> None:
        self.line = line
        super().__init__(line)


def who(kafka_config: dict[str, Any]) -> str:
    """The backup's principal as an ACL names it (`User:alice`), or in words without SASL."""
    return principal_of(kafka_config, "the backup's principal")


def _failure(part: str, operation: str, kafka_config: dict[str, Any], exc: Exception) -> Exception:
    """What a failed describe of `part` raises: _NotCaptured when the principal may not read it or
    the brokers cannot answer, else our own error (kafka_failure)."""
    if isinstance(exc, KafkaAuthorizationError):  # raised from the error callback while polling
        name = exc.code
    else:
        error = exc.args[0] if exc.args else None
        name = error.name() if isinstance(error, KafkaError) else ""
    if name in _NOT_ALLOWED:
        return _NotCaptured(f"{part}: {who(kafka_config)} may not {operation} the cluster ({name})")
    if name in _NOT_AVAILABLE:
        return _NotCaptured(f"{part}: {_NOT_AVAILABLE[name]} ({name})")
    if isinstance(exc, KafkaException):
        return kafka_failure(f"describe {part}", kafka_config, exc)
    return exc


def describe_acls(admin: AdminClient, kafka_config: dict[str, Any]) -> list[AclRule]:
    """Every ACL binding of the cluster, in one request; those of the resource types a backup
    records (a TOPIC, GROUP or TRANSACTIONAL_ID binding) — a CLUSTER binding is never among them."""
    try:
        return describe_bindings(admin)
    except (KafkaException, KafkaAuthorizationError) as exc:
        raise _failure(ACL_BINDINGS, "DESCRIBE", kafka_config, exc) from exc


def describe_scram_users(
    admin: AdminClient, kafka_config: dict[str, Any], users: Sequence[str]
) -> list[ScramUser]:
    """The SCRAM credentials (mechanisms, iterations) of `users`, in one request; a user without
    any is absent (RESOURCE_NOT_FOUND)."""
    try:
        return scram_users_of(admin, users)
    except (KafkaException, KafkaAuthorizationError) as exc:
        raise _failure(SCRAM_USERS, "DESCRIBE", kafka_config, exc) from exc


def describe_broker_configs(admin: AdminClient, kafka_config: dict[str, Any]) -> list[BrokerConfig]:
    """The dynamic configs of every broker (its own, by its id) and the cluster-wide defaults
    (`default`), each once; a sensitive config's value None. One request per broker, all at once."""
    brokers = sorted(cluster_metadata(admin, kafka_config).brokers)
    resources = [ConfigResource(ResourceType.BROKER, str(broker)) for broker in brokers]
    futures = [admin.describe_configs([r], request_timeout=ADMIN_TIMEOUT_S)[r] for r in resources]
    found: dict[tuple[str, str], BrokerConfig] = {}
    for broker, future in zip(brokers, futures, strict=True):
        try:
            entries = admin_result(admin, future)
        except (KafkaException, KafkaAuthorizationError) as exc:
            raise _failure(BROKER_CONFIGS, "DESCRIBE_CONFIGS", kafka_config, exc) from exc
        for entry in entries.values():
            for each in (entry, *(entry.synonyms or {}).values()):
                source = _DYNAMIC_SOURCES.get(each.source)
                if source is None:
                    continue
                owner = str(broker) if source == "DYNAMIC_BROKER_CONFIG" else "default"
                value = None if each.is_sensitive or each.value is None else str(each.value)
                found.setdefault(
                    (owner, each.name), BrokerConfig(broker=owner, name=each.name, value=value, source=source)
                )
    return [found[key] for key in sorted(found, key=lambda k: (k[0] != "default", k))]


def capture_access(
    admin: AdminClient, kafka_config: dict[str, Any], topics: Sequence[str], groups: Sequence[str]
) -> AccessCapture:
    """What the backup of `topics` (with the offsets of `groups`) records of who may do what with
    them. Each part the principal may not read is left out and said so in `not_captured`.

    The cluster's authorized operations are asked first, and a part is only asked for when they
    allow it: without DESCRIBE on the cluster, librdkafka 2.x answers DescribeAcls with no binding
    instead of the error, and aborts the process (`munmap_chunk(): invalid pointer`) on
    DescribeUserScramCredentials' CLUSTER_AUTHORIZATION_FAILED (seen with confluent-kafka 2.16.2)."""
    captured_at = datetime.now(UTC)
    operations = cluster_operations(admin, kafka_config)
    not_captured: list[str] = []
    rules: tuple[AclRule, ...] = ()
    scram: list[ScramUser] = []
    configs: list[BrokerConfig] = []
    if allowed(operations, "DESCRIBE"):
        try:
            rules = relevant_rules(describe_acls(admin, kafka_config), topics, groups)
            scram = describe_scram_users(admin, kafka_config, scram_user_names(principals_of(rules)))
        except _NotCaptured as exc:
            not_captured.append(exc.line)
    else:
        refused = f"{who(kafka_config)} may not DESCRIBE the cluster (CLUSTER_AUTHORIZATION_FAILED)"
        not_captured += [f"{ACL_BINDINGS}: {refused}", f"{SCRAM_USERS}: {refused}"]
    if allowed(operations, "DESCRIBE_CONFIGS"):
        try:
            configs = describe_broker_configs(admin, kafka_config)
        except _NotCaptured as exc:
            not_captured.append(exc.line)
    else:
        not_captured.append(
            f"{BROKER_CONFIGS}: {who(kafka_config)} may not DESCRIBE_CONFIGS the cluster "
            "(CLUSTER_AUTHORIZATION_FAILED)"
        )
    return AccessCapture(
        captured_at=captured_at,
        acls=rules,
        principals=principals_of(rules),
        scram_users=tuple(scram),
        broker_configs=tuple(configs),
        not_captured=tuple(not_captured),
    )


@task(name="capture-access", cache_policy=NO_CACHE, **RETRY_OPTIONS)
def capture_access_task(plan: BackupPlan) -> AccessCapture:
    """At snapshot time, once per backup; what could not be read is logged as a warning."""
    from tasks.services.kafka.clients import client_config

    config = client_config()
    capture = capture_access(
        admin_client(config), config, [t.name for t in plan.topics], [g.group for g in plan.consumer_groups]
    )
    logger = get_run_logger()
    for line in capture.not_captured:
        logger.warning("backup %s: access rules not captured: %s", plan.backup_id, line)
    return capture
