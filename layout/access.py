"""The access rules a backup records beside its records (the manifest's `access`): the ACL bindings
whose resources are the backed-up topics, the consumer groups whose offsets it holds and the
restore's transactional ids; the principals they name; the SCRAM users' names, mechanisms and
iterations (never a secret: Kafka does not return them); the brokers' dynamic configs (listed,
never restored). Read at snapshot time by tasks/backup/access.py; restored on request by the
restore (layout/restore/access.py, tasks/restore/access.py). Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Literal

from pydantic import Field

from core.models import FrozenModel

# What a restore's transactional ids start with (tasks/restore/writer.py names them from it):
# the bindings of the ids matching it are the restore principal's, recorded with the backup.
RESTORE_TRANSACTIONAL_PREFIX = "kbackup-restore-"

CLIENT_QUOTAS_NOT_CAPTURED = (
    "not captured: the Kafka client library (librdkafka, confluent-kafka) has no API to describe or "
    "alter client quotas (confluentinc/librdkafka#5227); list them with kafka-configs.sh "
    "--describe --entity-type users/clients and re-apply them by hand"
)
SCRAM_SECRETS_NOT_CAPTURED = (
    "never captured: Kafka returns a SCRAM user's name, mechanism and iterations, never its "
    "password, salt or stored key; a restore creates a user only with a password given to it"
)

ResourceKind = Literal["TOPIC", "GROUP", "TRANSACTIONAL_ID", "CLUSTER"]
PatternKind = Literal["LITERAL", "PREFIXED"]
Permission = Literal["ALLOW", "DENY"]


class AclRule(FrozenModel):
    """One ACL binding, as Kafka's admin API describes it (names of confluent-kafka's enums). A
    wildcard is a LITERAL pattern named `*`."""

    resource_type: ResourceKind
    resource_name: str
    pattern_type: PatternKind
    principal: str = Field(description="`User:alice`.")
    host: str = Field(default="*", description="The host it applies from; `*`: any.")
    operation: str = Field(description="READ, WRITE, DESCRIBE, ALL, …")
    permission: Permission

    @property
    def wildcard(self) -> bool:
        return self.pattern_type == "LITERAL" and self.resource_name == "*"

    @property
    def literal(self) -> bool:
        """Names one resource exactly (not a prefix, not every resource)."""
        return self.pattern_type == "LITERAL" and not self.wildcard

    @property
    def pattern(self) -> str:
        """`literal`, `prefixed` or `wildcard`."""
        return "wildcard" if self.wildcard else self.pattern_type.lower()

    def matches(self, name: str) -> bool:
        """Does it apply to the resource (of its type) named `name`?"""
        if self.wildcard:
            return True
        if self.pattern_type == "PREFIXED":
            return name.startswith(self.resource_name)
        return name == self.resource_name

    def describe(self) -> str:
        """`User:alice ALLOW READ on TOPIC orders (literal) from *`."""
        return (
            f"{self.principal} {self.permission} {self.operation} on {self.resource_type} "
            f"{self.resource_name} ({self.pattern}) from {self.host}"
        )

    def sort_key(self) -> tuple[str, ...]:
        return (
            self.resource_type,
            self.resource_name,
            self.pattern_type,
            self.principal,
            self.host,
            self.operation,
            self.permission,
        )


class ScramCredential(FrozenModel):
    mechanism: str = Field(description="SCRAM-SHA-256 or SCRAM-SHA-512.")
    iterations: int


class ScramUser(FrozenModel):
    """A SCRAM user as Kafka describes it: its name and credentials' mechanisms and iterations."""

    user: str
    credentials: tuple[ScramCredential, ...]


class BrokerConfig(FrozenModel):
    """A broker's dynamic config (set at runtime, not in its properties file): listed, never restored."""

    broker: str = Field(description="The broker's id, or `default` for the cluster-wide default.")
    name: str
    value: str | None = Field(description="None: a sensitive config, whose value Kafka never returns.")
    source: str = Field(description="DYNAMIC_BROKER_CONFIG or DYNAMIC_DEFAULT_BROKER_CONFIG.")


class AccessCapture(FrozenModel):
    """What a backup recorded of who may do what with its topics (`kbackup ls --details`)."""

    captured_at: datetime
    acls: tuple[AclRule, ...] = Field(
        default=(),
        description="Every binding whose resource is a backed-up topic, a consumer group whose offsets "
        "the backup holds or a restore transactional id (literal, prefixed or wildcard patterns "
        "matching them).",
    )
    principals: tuple[str, ...] = Field(default=(), description="The principals those bindings name.")
    scram_users: tuple[ScramUser, ...] = Field(
        default=(), description="The SCRAM users among those principals: names, mechanisms, iterations."
    )
    broker_configs: tuple[BrokerConfig, ...] = Field(
        default=(), description="The brokers' dynamic configs at snapshot time: listed, never restored."
    )
    not_captured: tuple[str, ...] = Field(
        default=(),
        description="What could not be read, and why (the backup's principal may not describe the "
        "cluster's ACLs, users or configs): the backup is complete without it.",
    )
    client_quotas: str = CLIENT_QUOTAS_NOT_CAPTURED
    scram_secrets: str = SCRAM_SECRETS_NOT_CAPTURED


def relevant_rules(
    rules: Iterable[AclRule],
    topics: Sequence[str],
    groups: Sequence[str],
    transactional_prefix: str = RESTORE_TRANSACTIONAL_PREFIX,
) -> tuple[AclRule, ...]:
    """The bindings among `rules` a backup of `topics` records: those of a topic among `topics`,
    of a group among `groups`, and of the transactional ids starting with `transactional_prefix`
    (a literal id starting with it, a prefix overlapping it, a wildcard); sorted, each once."""
    kept: dict[tuple[str, ...], AclRule] = {}
    for rule in rules:
        if rule.resource_type == "TOPIC":
            applies = any(rule.matches(topic) for topic in topics)
        elif rule.resource_type == "GROUP":
            applies = any(rule.matches(group) for group in groups)
        elif rule.resource_type == "TRANSACTIONAL_ID":
            applies = (
                rule.wildcard
                or rule.resource_name.startswith(transactional_prefix)
                or (rule.pattern_type == "PREFIXED" and transactional_prefix.startswith(rule.resource_name))
            )
        else:
            applies = False
        if applies:
            kept.setdefault(rule.sort_key(), rule)
    return tuple(kept[key] for key in sorted(kept))


def principals_of(rules: Iterable[AclRule]) -> tuple[str, ...]:
    return tuple(sorted({rule.principal for rule in rules}))


def scram_user_names(principals: Iterable[str]) -> tuple[str, ...]:
    """The user names of the `User:` principals (the only kind SCRAM authenticates)."""
    return tuple(sorted({p.split(":", 1)[1] for p in principals if p.startswith("User:") and p != "User:*"}))


# The parts of a capture a `not_captured` line names first (`ACL bindings: <why>`).
ACL_BINDINGS = "ACL bindings"
SCRAM_USERS = "SCRAM users"
BROKER_CONFIGS = "broker configs"


def part_captured(capture: AccessCapture, part: str) -> bool:
    """Was `part` (ACL_BINDINGS, SCRAM_USERS, BROKER_CONFIGS) read, or is it in `not_captured`?"""
    return not any(line.startswith(f"{part}:") for line in capture.not_captured)


def topic_rules(capture: AccessCapture, topic: str) -> tuple[AclRule, ...]:
    """The TOPIC bindings that apply to `topic` (literal, prefixed or wildcard)."""
    return tuple(r for r in capture.acls if r.resource_type == "TOPIC" and r.matches(topic))


def counted(number: int, noun: str) -> str:
    """`1 binding`, `3 bindings`."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def describe_capture(capture: AccessCapture | None) -> str:
    """One line of what a backup captured: `5 ACL bindings, 3 principals, 2 SCRAM users, 1 broker
    config; not captured: broker configs`; `not captured` without any."""
    if capture is None:
        return "not captured"
    counts = {
        ACL_BINDINGS: (
            counted(len(capture.acls), "ACL binding"),
            counted(len(capture.principals), "principal"),
        ),
        SCRAM_USERS: (counted(len(capture.scram_users), "SCRAM user"),),
        BROKER_CONFIGS: (counted(len(capture.broker_configs), "broker config"),),
    }
    shown = ", ".join(c for part, cs in counts.items() if part_captured(capture, part) for c in cs)
    missing = [part for part in counts if not part_captured(capture, part)]
    if not shown:
        return "not captured (" + ", ".join(missing) + ")"
    return shown + (f"; not captured: {', '.join(missing)}" if missing else "")
