"""The restore's access rules on the target (`restore.acls`, `restore.users`): the permission
pre-flight, the target's own bindings and SCRAM users read for the diff (layout.restore.access), and
the diff's creations applied once the records are restored and checked. Nothing is ever deleted.

- `check_permission`: one DescribeCluster with the authorized operations; the restore's principal
  needs ALTER (to create bindings and users) and DESCRIBE (to read them) on the cluster, else
  AccessPermissionError — before the targets are created and before any record is produced.
- `target_access`: every binding of the target (one DescribeAcls) and which of the recorded SCRAM
  users it has (one DescribeUserScramCredentials).
- `apply_access`: one CreateAcls of the `create` bindings, one AlterUserScramCredentials upserting
  the missing users with the mechanism and iterations recorded and the password given.
- The passwords come from a Prefect Secret block (JSON user → password) or the environment variable
  KBACKUP_RESTORE_USER_PASSWORDS, read where they are used: never a task's argument or result,
  never logged, never from the backup.

`access_diff_task` and `apply_access_task` are the thin retryable tasks at the bottom.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Sequence
from concurrent.futures import Future
from typing import Any, cast

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)
from prefect import task
from prefect.cache_policies import NO_CACHE

from layout.access import AclRule
from layout.restore.access import AccessDiff, UserChange, access_diff
from layout.restore.plan import RestorePlan
from tasks.restore.errors import AccessPermissionError, UserPasswordsError
from tasks.runtime.retry import RETRY_OPTIONS
from tasks.services.kafka.acls import (
    acl_binding,
    allowed,
    cluster_operations,
    describe_bindings,
    describe_scram_users,
    principal_of,
)
from tasks.services.kafka.admin import admin_client, admin_result, kafka_failure
from tasks.services.kafka.calls import ADMIN_TIMEOUT_S
from tasks.services.kafka.clients import client_config, load_secret

PASSWORDS_ENV = "KBACKUP_RESTORE_USER_PASSWORDS"
NEEDED = ("ALTER", "DESCRIBE")  # on the cluster: create bindings and users; read the target's
DEFAULT_CREDENTIAL = ("SCRAM-SHA-512", 8192)  # a recorded user without credentials (never seen)


def asked(plan: RestorePlan) -> str:
    """What the restore asks for, as its properties name it."""
    names = (["'restore.acls'"] if plan.acls != "off" else []) + (["'restore.users'"] if plan.users else [])
    return " and ".join(names)


def restore_principal(kafka_config: dict[str, Any]) -> str:
    """The restore's principal as an ACL names it (`User:alice`), or in words without SASL."""
    return principal_of(kafka_config, "the restore's principal")


def permission_refusal(what: str, operations: frozenset[str], principal: str) -> AccessPermissionError | None:
    """Why `principal`, which may do `operations` on the cluster, may not do `what` (ALTER and
    DESCRIBE are needed): the error naming what is missing and what it may do; None: it may."""
    missing = tuple(op for op in NEEDED if not allowed(operations, op))
    return AccessPermissionError(what, missing, principal, tuple(sorted(operations))) if missing else None


def check_permission(admin: AdminClient, kafka_config: dict[str, Any], what: str) -> None:
    """The restore's principal may ALTER and DESCRIBE the cluster, else AccessPermissionError."""
    operations = cluster_operations(admin, kafka_config)
    refusal = permission_refusal(what, operations, restore_principal(kafka_config))
    if refusal is not None:
        raise refusal


def target_bindings(admin: AdminClient, kafka_config: dict[str, Any]) -> list[AclRule]:
    """The target's bindings of topics, groups and transactional ids (literal or prefixed), in one
    request."""
    try:
        return describe_bindings(admin)
    except KafkaException as exc:
        raise kafka_failure("describe ACLs", kafka_config, exc) from exc


def target_users(admin: AdminClient, kafka_config: dict[str, Any], users: Sequence[str]) -> set[str]:
    """Which of `users` the target has SCRAM credentials for, in one request."""
    try:
        return {user.user for user in describe_scram_users(admin, users)}
    except KafkaException as exc:
        raise kafka_failure("describe SCRAM users", kafka_config, exc) from exc


def read_passwords(secret_block: str | None) -> dict[str, str]:
    """The passwords given to the restore: the Secret block's (when named), else the environment
    variable's; {} when neither is set. Raises UserPasswordsError (never showing a value)."""
    if secret_block:
        source = f"the Secret block {secret_block!r}"
        value: Any = load_secret(secret_block)
    else:
        source = f"the environment variable {PASSWORDS_ENV}"
        value = os.environ.get(PASSWORDS_ENV)
        if not value:
            return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise UserPasswordsError(source, "not JSON") from None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in value.items()
    ):
        raise UserPasswordsError(source, "not an object of non-empty strings")
    return dict(value)


def diff_on_target(
    plan: RestorePlan, admin: AdminClient, kafka_config: dict[str, Any], with_password: Collection[str]
) -> AccessDiff:
    """The permission pre-flight, then the plan's access diff against the target."""
    check_permission(admin, kafka_config, asked(plan))
    existing = target_bindings(admin, kafka_config) if plan.acls != "off" else []
    recorded = [u.user for u in plan.access.scram_users] if plan.users and plan.access else []
    users = target_users(admin, kafka_config, recorded)
    return access_diff(plan, existing, users, with_password)


def _upsertions(change: UserChange, password: str) -> list[UserScramCredentialUpsertion]:
    credentials = [(c.mechanism, c.iterations) for c in change.credentials] or [DEFAULT_CREDENTIAL]
    return [
        UserScramCredentialUpsertion(
            change.user,
            ScramCredentialInfo(ScramMechanism[mechanism.replace("-", "_")], iterations),
            password.encode(),
        )
        for mechanism, iterations in credentials
    ]


def apply_access(
    diff: AccessDiff, admin: AdminClient, kafka_config: dict[str, Any], passwords: dict[str, str]
) -> AccessDiff:
    """Create the diff's `create` bindings and users (nothing else: nothing is deleted or changed);
    the diff, applied."""
    rules = diff.bindings_to_create
    if rules:
        rule_of = {acl_binding(r): r for r in rules}
        created = admin.create_acls(list(rule_of), request_timeout=ADMIN_TIMEOUT_S)
        for binding, future in created.items():
            rule = rule_of[binding]
            try:
                admin_result(admin, future)
            except KafkaException as exc:
                raise kafka_failure(f"create ACL binding {rule.describe()}", kafka_config, exc) from exc
    upsertions: list[Any] = []
    for change in diff.users_to_create:
        password = passwords.get(change.user)
        if not password:  # given when the diff was made, gone now
            raise UserPasswordsError(
                "the restore's passwords", f"no password for user {change.user} any more"
            )
        upsertions += _upsertions(change, password)
    if upsertions:
        futures = admin.alter_user_scram_credentials(upsertions, request_timeout=ADMIN_TIMEOUT_S)
        for user, future in cast("dict[str, Future[Any]]", futures).items():
            try:
                admin_result(admin, future)
            except KafkaException as exc:
                raise kafka_failure(f"create SCRAM user {user}", kafka_config, exc) from exc
    return diff.model_copy(update={"applied": True})


@task(name="access-diff", cache_policy=NO_CACHE, **RETRY_OPTIONS)
def access_diff_task(plan: RestorePlan, users_secret_block: str | None = None) -> AccessDiff:
    """The permission pre-flight and the diff (the names of the users given a password, never the
    passwords, leave this task)."""
    config = client_config()
    with_password = set(read_passwords(users_secret_block)) if plan.users else set()
    return diff_on_target(plan, admin_client(config), config, with_password)


@task(name="restore-access", cache_policy=NO_CACHE, **RETRY_OPTIONS)
def apply_access_task(diff: AccessDiff, users_secret_block: str | None = None) -> AccessDiff:
    config = client_config()
    passwords = read_passwords(users_secret_block) if diff.users_to_create else {}
    return apply_access(diff, admin_client(config), config, passwords)
