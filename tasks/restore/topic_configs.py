"""Which of a backed-up topic's configs a restore recreates on a topic it creates, and why each
other one is not: `configs_to_create` decides what it can from the configs alone (pure),
`refused_configs` asks the target broker which of the rest it refuses (validate-only requests,
nothing is created), and `kept_configs` says which backed-up values an existing target does not
have. Each config not recreated as backed up is a `SkippedConfig`: a warning and a report line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import NewTopic
from pydantic import BaseModel, Field

from tasks.services.kafka.calls import LOOKUP_TIMEOUT_S

# Configs that name the source cluster's brokers: a reassignment's replication throttle there.
SOURCE_BROKER_CONFIGS = ("leader.replication.throttled.replicas", "follower.replication.throttled.replicas")


class SkippedConfig(BaseModel):
    """A backed-up topic config the target topic does not have as backed up."""

    name: str
    value: str = Field(description="The backed-up value.")
    reason: str
    instead: str | None = Field(default=None, description="The value the target got instead, if any.")

    def describe(self, topic: str) -> str:
        fate = f"created with {self.name}={self.instead}" if self.instead is not None else "not recreated"
        return f"{topic}: topic config {self.name}={self.value} {fate}: {self.reason}"


def configs_to_create(
    configs: Mapping[str, str],
    replication: int,
    oldest_timestamp: int | None,
    now_ms: int,
    keys_kept: bool = True,
) -> tuple[dict[str, str], list[SkippedConfig]]:
    """The configs to create a target topic with (replication factor `replication`, the oldest
    restored record from `oldest_timestamp`, at `now_ms`, the records' keys restored or not), and
    those left out or changed, each with its reason. Everything else is passed on as backed up; the broker may still refuse some
    (`refused_configs`)."""
    create: dict[str, str] = {}
    skipped: list[SkippedConfig] = []
    for name, value in sorted(configs.items()):
        if name in SOURCE_BROKER_CONFIGS:
            skipped.append(
                SkippedConfig(
                    name=name,
                    value=value,
                    reason="it is the source cluster's replication throttle, naming the source's brokers",
                )
            )
        elif name == "min.insync.replicas" and value.isdigit() and int(value) > replication:
            skipped.append(
                SkippedConfig(
                    name=name,
                    value=value,
                    reason=f"the target topic has replication factor {replication}, so it can never have "
                    f"{value} in-sync replicas: brokers that do not cap it at the replication factor refuse "
                    "every acks=all produce (the restore's own included) with NOT_ENOUGH_REPLICAS; the "
                    "broker's default applies — set it once the topic has enough replicas",
                )
            )
        elif name == "message.timestamp.type" and value == "LogAppendTime":
            skipped.append(
                SkippedConfig(
                    name=name,
                    value=value,
                    instead="CreateTime",
                    reason="with LogAppendTime the broker would stamp every restored record with the "
                    "restore's own time; CreateTime keeps the backed-up timestamps (switch it to "
                    "LogAppendTime after the restore if new records should get append time)",
                )
            )
            create[name] = "CreateTime"
        elif name == "cleanup.policy" and "compact" in value and not keys_kept:
            rest = ",".join(p for p in value.split(",") if p.strip() != "compact")
            skipped.append(
                SkippedConfig(
                    name=name,
                    value=value,
                    instead=rest or None,
                    reason="the backup does not keep the records' keys (value-only, or "
                    "store.envelope.key=false), and a compacted topic refuses keyless records "
                    "(INVALID_RECORD)",
                )
            )
            if rest:
                create[name] = rest
        elif (
            name == "message.timestamp.before.max.ms"
            and value.isdigit()
            and oldest_timestamp is not None
            and oldest_timestamp < now_ms - int(value)
        ):
            skipped.append(
                SkippedConfig(
                    name=name,
                    value=value,
                    reason="the broker would refuse the restored records older than it allows "
                    "(INVALID_TIMESTAMP); set it after the restore",
                )
            )
        else:
            create[name] = value
    return create, skipped


def refused_configs(
    admin: Any, topic: str, partitions: int, replication: int, configs: Mapping[str, str]
) -> list[SkippedConfig]:
    """The configs the target broker refuses for a new topic, each with the broker's words: one
    validate-only CreateTopics request for them all, and one per config only when that one fails.
    Raises KafkaException for a failure that is not a refused config."""
    if not configs or _refusal(admin, topic, partitions, replication, dict(configs)) is None:
        return []
    refused = []
    for name, value in sorted(configs.items()):
        reason = _refusal(admin, topic, partitions, replication, {name: value})
        if reason is not None:
            refused.append(
                SkippedConfig(name=name, value=value, reason=f"the target broker refuses it: {reason}")
            )
    return refused


def kept_configs(backed_up: Mapping[str, str], target: Mapping[str, str] | None) -> list[SkippedConfig]:
    """The backed-up configs an existing target topic (its configs `target`; None: not readable)
    does not have: a restore leaves an existing topic's configs as they are."""
    if target is None:
        return [
            SkippedConfig(
                name=name,
                value=value,
                reason="the target topic existed and its configs could not be read (DescribeConfigs)",
            )
            for name, value in sorted(backed_up.items())
        ]
    return [
        SkippedConfig(
            name=name,
            value=value,
            reason=f"the target topic existed; its value ({target.get(name, 'unset')}) is kept",
        )
        for name, value in sorted(backed_up.items())
        if target.get(name) != value
    ]


def _refusal(
    admin: Any, topic: str, partitions: int, replication: int, configs: dict[str, str]
) -> str | None:
    futures = admin.create_topics(
        [NewTopic(topic, partitions, replication, config=configs)],
        validate_only=True,
        operation_timeout=LOOKUP_TIMEOUT_S,
        request_timeout=LOOKUP_TIMEOUT_S,
    )
    try:
        futures[topic].result(timeout=LOOKUP_TIMEOUT_S + 5)
    except KafkaException as exc:
        error = exc.args[0] if exc.args else None
        if not isinstance(error, KafkaError):
            raise
        if error.name() == "INVALID_CONFIG":
            return str(error.str())
        if error.name() == "TOPIC_ALREADY_EXISTS":  # created meanwhile: its creation says what it has
            return None
        raise
    return None
