"""What a restore would change of who may do what on the target: the backup's recorded access rules
(layout.access.AccessCapture, the restore point's manifest's `access`) against the target's own,
one change per recorded ACL binding and per recorded SCRAM user. Nothing is ever deleted: a change
is a creation, or why there is none.

Bindings (`restore.acls`):
- `create`: a literal TOPIC or GROUP binding, renamed as the restore renames (each unit's source
  topic → its target topic; each translated group g → group prefix + g); with 'all', also a
  prefixed or wildcard one, as recorded;
- `exists`: the same binding is already on the target;
- `conflict`: the target has the opposite permission (ALLOW / DENY) for the same resource,
  principal, host and operation: not created, reported;
- `widening`: a prefixed or wildcard binding with 'true' (literal): it would grant more than the
  restored topics and groups, so it is reported, not created;
- `skipped`, with the reason: a binding of a topic or group this restore does not write, a
  transactional-id binding (the restore principal's own), a cluster binding.

Users (`restore.users`): `create` (missing on the target, a password given), `exists`,
`no-password` (missing, no password given: listed, not created).

Pure: tasks/restore/access.py reads the target, checks the permission and applies the creations.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from typing import Literal

from pydantic import Field

from core.models import FrozenModel
from layout.access import AccessCapture, AclRule, ScramCredential, ScramUser
from layout.restore.plan import RestorePlan

AclChangeKind = Literal["create", "exists", "conflict", "widening", "skipped"]
UserChangeKind = Literal["create", "exists", "no-password"]
_OPPOSITE = {"ALLOW": "DENY", "DENY": "ALLOW"}


class AclChange(FrozenModel):
    """What becomes of one recorded binding on the target."""

    kind: AclChangeKind
    captured: AclRule = Field(description="The binding as the backup recorded it.")
    target: AclRule | None = Field(
        default=None, description="The binding on the target (renamed); None when skipped."
    )
    reason: str = Field(default="", description="Why it is skipped, widening or in conflict.")

    def describe(self, applied: bool = False) -> str:
        """One line of the report: `create: User:alice ALLOW READ on TOPIC copy (literal) from *
        (recorded on TOPIC orders)`."""
        kind = "created" if applied and self.kind == "create" else self.kind
        shown = self.target or self.captured
        line = f"{kind}: {shown.describe()}"
        if self.target is not None and self.target.resource_name != self.captured.resource_name:
            line += f" (recorded on {self.captured.resource_type} {self.captured.resource_name})"
        return f"{line}: {self.reason}" if self.reason else line


class UserChange(FrozenModel):
    """What becomes of one recorded SCRAM user on the target (never a password: only whether one
    was given)."""

    kind: UserChangeKind
    user: str
    credentials: tuple[ScramCredential, ...] = ()

    def describe(self, applied: bool = False) -> str:
        mechanisms = ", ".join(f"{c.mechanism} ({c.iterations} iterations)" for c in self.credentials)
        if self.kind == "create":
            return f"{'created' if applied else 'create'}: user {self.user} {mechanisms}"
        if self.kind == "exists":
            return f"exists: user {self.user}"
        return f"no password: user {self.user} ({mechanisms}) is missing on the target and no password was given: not created"


class AccessDiff(FrozenModel):
    """Every recorded binding's and user's change, in the capture's order."""

    acls: tuple[AclChange, ...] = ()
    users: tuple[UserChange, ...] = ()
    acls_asked: bool = Field(default=False, description="`restore.acls` was asked ('true' or 'all').")
    users_asked: bool = Field(default=False, description="`restore.users` was asked.")
    applied: bool = Field(default=False, description="The creations were made (not a dry run, not before).")

    @property
    def bindings_to_create(self) -> tuple[AclRule, ...]:
        return tuple(c.target for c in self.acls if c.kind == "create" and c.target is not None)

    @property
    def users_to_create(self) -> tuple[UserChange, ...]:
        return tuple(u for u in self.users if u.kind == "create")

    def lines(self) -> list[str]:
        """The report's lines: the bindings, then the users, creations first."""
        order = {"create": 0, "conflict": 1, "widening": 2, "exists": 3, "skipped": 4, "no-password": 2}
        acls = sorted(self.acls, key=lambda c: order[c.kind])
        users = sorted(self.users, key=lambda u: order[u.kind])
        return [c.describe(self.applied) for c in acls] + [u.describe(self.applied) for u in users]

    def headline(self, dry_run: bool) -> str:
        """`2 bindings created, 3 exist, 1 conflict, 1 widening (not created), 4 skipped; users: …`."""
        made = "would be created" if dry_run else ("created" if self.applied else "to create")
        acls = Counter(c.kind for c in self.acls)
        users = Counter(u.kind for u in self.users)
        parts = []
        if self.acls_asked:
            parts.append(
                f"ACL bindings: {len(self.bindings_to_create)} {made}, {acls['exists']} exist, "
                f"{acls['conflict']} in conflict (not created), {acls['widening']} widening "
                f"(not created), {acls['skipped']} skipped"
            )
        if self.users_asked:
            parts.append(
                f"SCRAM users: {len(self.users_to_create)} {made}, {users['exists']} exist, "
                f"{users['no-password']} without a password (not created)"
            )
        return "; ".join(parts)


def topic_renames(plan: RestorePlan) -> dict[str, str]:
    """Each restored source topic → its target topic."""
    return {u.source_topic: u.target_topic for u in plan.units if u.source_topic is not None}


def group_renames(plan: RestorePlan) -> dict[str, str]:
    """Each consumer group whose offsets the restore translates → its name on the target."""
    return {g.group: f"{plan.group_prefix}{g.group}" for g in plan.consumer_groups}


def acl_changes(
    captured: Iterable[AclRule],
    topics: Mapping[str, str],
    groups: Mapping[str, str],
    existing: Collection[AclRule],
    mode: Literal["literal", "all"],
) -> tuple[AclChange, ...]:
    """One change per recorded binding (see the module's docstring); `topics` and `groups` are the
    renames, `existing` the target's bindings."""
    present = {rule.sort_key() for rule in existing}
    changes = []
    made: set[tuple[str, ...]] = set()
    for rule in captured:
        change = _change(rule, topics, groups, mode)
        if change.target is not None and change.kind in ("create", "widening"):
            target = change.target
            opposite = target.model_copy(update={"permission": _OPPOSITE[target.permission]})
            if target.sort_key() in present:
                change = change.model_copy(update={"kind": "exists", "reason": ""})
            elif opposite.sort_key() in present:
                reason = f"the target has {opposite.permission} for the same resource, principal, host and operation"
                change = change.model_copy(update={"kind": "conflict", "reason": reason})
            elif change.kind == "create" and target.sort_key() in made:
                change = change.model_copy(
                    update={"kind": "skipped", "reason": "the same binding is created once"}
                )
            if change.kind == "create":
                made.add(target.sort_key())
        changes.append(change)
    return tuple(changes)


def _change(
    rule: AclRule, topics: Mapping[str, str], groups: Mapping[str, str], mode: Literal["literal", "all"]
) -> AclChange:
    """The change of one binding before the target is looked at: create, widening or skipped."""
    if rule.resource_type == "TRANSACTIONAL_ID":
        return AclChange(
            kind="skipped",
            captured=rule,
            reason="transactional ids belong to the restore's own principal (its kbackup-restore- ids)",
        )
    if rule.resource_type not in ("TOPIC", "GROUP"):
        return AclChange(
            kind="skipped", captured=rule, reason=f"{rule.resource_type} bindings are not restored"
        )
    renames = topics if rule.resource_type == "TOPIC" else groups
    what = "topic" if rule.resource_type == "TOPIC" else "group"
    if rule.literal:
        if rule.resource_name not in renames:
            not_written = (
                "this restore does not write it"
                if what == "topic"
                else "this restore translates no offsets of it"
            )
            return AclChange(
                kind="skipped", captured=rule, reason=f"{what} {rule.resource_name}: {not_written}"
            )
        renamed = rule.model_copy(update={"resource_name": renames[rule.resource_name]})
        return AclChange(kind="create", captured=rule, target=renamed)
    matched = sorted(name for name in renames if rule.matches(name))
    if not matched:
        return AclChange(kind="skipped", captured=rule, reason=f"matches no {what} this restore writes")
    missed = sorted(renames[name] for name in matched if not rule.matches(renames[name]))
    if mode == "literal":
        reason = (
            f"a {rule.pattern} binding grants more than the restored {what}s: created only with "
            "'restore.acls'='all'"
        )
        return AclChange(kind="widening", captured=rule, target=rule, reason=reason)
    reason = f"as recorded: it does not cover the restored {what} {', '.join(missed)}" if missed else ""
    return AclChange(kind="create", captured=rule, target=rule, reason=reason)


def user_changes(
    captured: Iterable[ScramUser], existing: Collection[str], with_password: Collection[str]
) -> tuple[UserChange, ...]:
    """One change per recorded SCRAM user: `existing` are the target's SCRAM user names,
    `with_password` the users a password was given for."""
    changes = []
    for user in captured:
        kind: UserChangeKind = (
            "exists" if user.user in existing else "create" if user.user in with_password else "no-password"
        )
        changes.append(UserChange(kind=kind, user=user.user, credentials=user.credentials))
    return tuple(changes)


def access_diff(
    plan: RestorePlan,
    existing_acls: Collection[AclRule],
    existing_users: Collection[str],
    with_password: Collection[str],
) -> AccessDiff:
    """The plan's access changes on the target: its recorded bindings when `plan.acls` asks, its
    recorded users when `plan.users` asks (an empty diff otherwise, or without a capture)."""
    capture: AccessCapture | None = plan.access
    if capture is None:
        return AccessDiff()
    acls: tuple[AclChange, ...] = ()
    if plan.acls != "off":
        acls = acl_changes(capture.acls, topic_renames(plan), group_renames(plan), existing_acls, plan.acls)
    users = user_changes(capture.scram_users, existing_users, with_password) if plan.users else ()
    return AccessDiff(acls=acls, users=users, acls_asked=plan.acls != "off", users_asked=plan.users)
