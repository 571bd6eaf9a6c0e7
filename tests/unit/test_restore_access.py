"""The restore's access rules without a cluster: the `restore.acls` / `restore.users` properties and
overrides (left out of the restore id), the plan's recorded access (refused when not recorded), the
pure diff against the target's bindings and users (layout.restore.access) — with hypothesis: nothing
is ever deleted, a literal binding of a restored topic is always created, found or in conflict —,
the permission pre-flight and the passwords (tasks.restore.access) on stand-ins, and the report."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.parameters import DrillParameters, RestoreParameters, drill_restore_parameters, selection_of
from kcql import parse_backup
from kcql.errors import KcqlError
from kcql.selection import OverrideError, restore_selection
from layout.access import AccessCapture, AclRule, ScramCredential, ScramUser
from layout.restore.access import AccessDiff, access_diff, acl_changes, user_changes
from layout.restore.errors import AccessNotCapturedError
from layout.restore.from_manifests import plan_from_manifests
from layout.restore.plan import RestorePlan, restore_id
from tasks.restore.access import PASSWORDS_ENV, asked, permission_refusal, read_passwords
from tasks.restore.discover_listing import plan_from_listing
from tasks.restore.errors import UserPasswordsError
from tasks.restore.report import restore_report, summary
from tests.unit.test_restore_plan import a_chain, listing_of, selection

PLAIN = "INSERT INTO copy SELECT * FROM bkt:nightly/p"


def rule(
    name: str,
    principal: str = "User:alice",
    operation: str = "READ",
    resource_type: Any = "TOPIC",
    pattern_type: Any = "LITERAL",
    permission: Any = "ALLOW",
) -> AclRule:
    return AclRule(
        resource_type=resource_type,
        resource_name=name,
        pattern_type=pattern_type,
        principal=principal,
        operation=operation,
        permission=permission,
    )


# --- properties, overrides, the restore id -------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", "literal"), ("TRUE", "literal"), ("false", "off"), ("all", "all"), ("ALL", "all")],
)
def test_restore_acls_property(value: str, expected: str) -> None:
    assert restore_selection(f"{PLAIN} PROPERTIES('restore.acls'='{value}')").acls == expected


def test_restore_acls_unquoted_booleans_and_users() -> None:
    chosen = restore_selection(f"{PLAIN} PROPERTIES('restore.acls'=true, 'restore.users'=true)")
    assert (chosen.acls, chosen.users) == ("literal", True)
    assert (restore_selection(PLAIN).acls, restore_selection(PLAIN).users) == ("off", False)


def test_restore_access_properties_are_checked_and_restore_only() -> None:
    with pytest.raises(KcqlError, match="'all'.*for 'restore.acls'"):
        restore_selection(f"{PLAIN} PROPERTIES('restore.acls'='some')")
    with pytest.raises(KcqlError, match="true or false for 'restore.users'"):
        restore_selection(f"{PLAIN} PROPERTIES('restore.users'='maybe')")
    with pytest.raises(KcqlError, match="restore property"):
        parse_backup("INSERT INTO bkt:p SELECT * FROM t STOREAS AVRO PROPERTIES('restore.acls'=true)")


def test_overrides_set_acls_and_users_and_name_the_flag() -> None:
    chosen = restore_selection(PLAIN, acls="all", users=True)
    assert (chosen.acls, chosen.users) == ("all", True)
    in_statement = f"{PLAIN} PROPERTIES('restore.acls'='all', 'restore.users'=true)"
    kept = restore_selection(in_statement, acls=None, users=False)  # unset overrides keep the statement's
    assert (kept.acls, kept.users) == ("all", True)
    assert restore_selection(in_statement, acls="off").acls == "off"
    with pytest.raises(OverrideError, match="--acls"):
        restore_selection(PLAIN, acls="some", names={"acls": "--acls"})


def test_parameters_reach_the_selection() -> None:
    params = RestoreParameters(kcql=PLAIN, acls="literal", users=True, users_secret_block="pw")
    chosen = selection_of(params)
    assert (chosen.acls, chosen.users) == ("literal", True)


def test_access_choices_leave_the_restore_id_as_it_was() -> None:
    """Existing restores keep their ids (and resume); asking for the access rules on a rerun (or no
    longer asking) is the same restore."""
    backups = ["b1", "b2"]
    assert restore_id(restore_selection(PLAIN), backups) == "007d359f8fef94a0"
    for statement, overrides in [
        (f"{PLAIN} PROPERTIES('restore.acls'=true)", {}),
        (f"{PLAIN} PROPERTIES('restore.acls'='all', 'restore.users'=true)", {}),
        (PLAIN, {"acls": "all", "users": True}),
    ]:
        assert restore_id(restore_selection(statement, **overrides), backups) == "007d359f8fef94a0"


def test_a_drill_never_restores_access() -> None:
    params = drill_restore_parameters(DrillParameters(bucket="bkt", prefix="p"), "d1", "b1")
    chosen = selection_of(params)
    assert (chosen.acls, chosen.users) == ("off", False)


# --- the plan's recorded access ----------------------------------------------------------------

CAPTURE = AccessCapture(
    captured_at=datetime(2026, 1, 2, tzinfo=UTC),
    acls=(
        rule("orders", "User:consumer", "READ"),
        rule("orders", "User:producer", "WRITE"),
        rule("ord", "User:producer", "DESCRIBE", pattern_type="PREFIXED"),
        rule("*", "User:auditor", "DESCRIBE"),
        rule("billing", "User:consumer", "READ", resource_type="GROUP"),
        rule("kbackup-restore-", "User:restorer", "WRITE", "TRANSACTIONAL_ID", "PREFIXED"),
        rule("payments", "User:consumer", "READ"),
    ),
    principals=("User:auditor", "User:consumer", "User:producer", "User:restorer"),
    scram_users=(
        ScramUser(
            user="consumer", credentials=(ScramCredential(mechanism="SCRAM-SHA-512", iterations=8192),)
        ),
        ScramUser(
            user="producer", credentials=(ScramCredential(mechanism="SCRAM-SHA-256", iterations=4096),)
        ),
        ScramUser(user="auditor", credentials=(ScramCredential(mechanism="SCRAM-SHA-512", iterations=4096),)),
    ),
)


def chain_with_access() -> list[Any]:
    chain = a_chain()
    return [chain[0], chain[1].model_copy(update={"access": CAPTURE})]


def test_the_plan_carries_the_restore_points_access() -> None:
    chain = chain_with_access()
    plan = plan_from_manifests(selection(acls="literal", group_prefix="dr-"), chain, listing_of(chain))
    assert plan.access == CAPTURE and plan.acls == "literal" and not plan.users


def test_access_asked_of_a_point_that_recorded_none_is_refused_naming_it() -> None:
    chain = a_chain()  # recorded before access was captured
    for choices in ({"acls": "literal"}, {"users": True}):
        with pytest.raises(AccessNotCapturedError) as raised:
            plan_from_manifests(selection(**choices), chain, listing_of(chain))
        assert raised.value.point == chain[-1].backup_id
        assert chain[-1].backup_id in str(raised.value) and "nothing was restored" in str(raised.value)
    assert plan_from_manifests(selection(), chain, listing_of(chain)).access is None  # not asked: fine


def test_access_asked_of_data_without_a_manifest_is_refused() -> None:
    listed = listing_of(a_chain())
    chosen = selection(acls="all", format="AVRO", envelope=True)
    with pytest.raises(AccessNotCapturedError, match="holds no manifest") as raised:
        plan_from_listing(chosen, listed)
    assert raised.value.point is None and raised.value.asked == "'restore.acls'"


# --- the diff ----------------------------------------------------------------------------------


def plan_of_capture(**choices: Any) -> RestorePlan:
    chain = chain_with_access()
    return plan_from_manifests(selection(**choices), chain, listing_of(chain))


def by_kind(diff: AccessDiff) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for change in diff.acls:
        shown = change.target or change.captured
        found.setdefault(change.kind, []).append(f"{shown.principal} {shown.operation} {shown.resource_name}")
    return found


def test_literal_bindings_are_renamed_and_prefixed_ones_widen() -> None:
    plan = plan_of_capture(acls="literal", group_prefix="dr-")
    diff = access_diff(plan, existing_acls=[], existing_users=set(), with_password=set())
    assert by_kind(diff) == {
        "create": ["User:consumer READ copy", "User:producer WRITE copy", "User:consumer READ dr-billing"],
        "widening": ["User:producer DESCRIBE ord", "User:auditor DESCRIBE *"],
        "skipped": ["User:restorer WRITE kbackup-restore-", "User:consumer READ payments"],
    }
    assert diff.users == () and diff.acls_asked and not diff.users_asked
    lines = diff.lines()
    assert lines[0] == (
        "create: User:consumer ALLOW READ on TOPIC copy (literal) from * (recorded on TOPIC orders)"
    )
    assert any(
        line.startswith("widening: User:producer ALLOW DESCRIBE on TOPIC ord (prefixed)") for line in lines
    )
    assert "'restore.acls'='all'" in next(c.reason for c in diff.acls if c.kind == "widening")


def test_all_creates_the_prefixed_and_wildcard_bindings_as_recorded() -> None:
    plan = plan_of_capture(acls="all", group_prefix="dr-")
    diff = access_diff(plan, [], set(), set())
    created = {(r.resource_name, r.pattern_type) for r in diff.bindings_to_create}
    assert created == {("copy", "LITERAL"), ("dr-billing", "LITERAL"), ("ord", "PREFIXED"), ("*", "LITERAL")}
    prefixed = next(c for c in diff.acls if c.captured.resource_name == "ord")
    assert "does not cover the restored topic copy" in prefixed.reason  # said, as it is created as recorded


def test_existing_and_opposite_bindings_on_the_target() -> None:
    plan = plan_of_capture(acls="literal", group_prefix="dr-")
    existing = [
        rule("copy", "User:consumer", "READ"),  # the same: exists
        rule("copy", "User:producer", "WRITE", permission="DENY"),  # the opposite: conflict
        rule("ord", "User:producer", "DESCRIBE", pattern_type="PREFIXED"),  # a widening one already there
    ]
    diff = access_diff(plan, existing, set(), set())
    kinds = {(c.captured.principal, c.captured.resource_name): c.kind for c in diff.acls}
    assert kinds[("User:consumer", "orders")] == "exists"
    assert kinds[("User:producer", "orders")] == "conflict"
    assert kinds[("User:producer", "ord")] == "exists"
    assert [r.resource_name for r in diff.bindings_to_create] == ["dr-billing"]
    conflict = next(c for c in diff.acls if c.kind == "conflict")
    assert "DENY" in conflict.describe()


def test_groups_not_translated_are_skipped() -> None:
    plan = plan_of_capture(acls="literal", translate_groups=False)
    diff = access_diff(plan, [], set(), set())
    group = next(c for c in diff.acls if c.captured.resource_type == "GROUP")
    assert group.kind == "skipped" and "translates no offsets" in group.reason


def test_users_created_existing_or_listed_without_a_password() -> None:
    plan = plan_of_capture(users=True)
    diff = access_diff(plan, [], existing_users={"producer"}, with_password={"consumer", "nobody"})
    assert [(u.user, u.kind) for u in diff.users] == [
        ("consumer", "create"),
        ("producer", "exists"),
        ("auditor", "no-password"),
    ]
    assert diff.acls == () and [u.user for u in diff.users_to_create] == ["consumer"]
    assert diff.users[0].credentials[0].iterations == 8192
    assert "no password" in diff.users[2].describe() and "not created" in diff.users[2].describe()
    assert diff.headline(dry_run=True).startswith("SCRAM users: 1 would be created, 1 exist, 1 without")


names = st.sampled_from(["orders", "payments", "ord", "o", "*", "copy", "billing", "dr-billing"])
rules = st.builds(
    AclRule,
    resource_type=st.sampled_from(["TOPIC", "GROUP", "TRANSACTIONAL_ID"]),
    resource_name=names,
    pattern_type=st.sampled_from(["LITERAL", "PREFIXED"]),
    principal=st.sampled_from(["User:a", "User:b"]),
    host=st.sampled_from(["*", "10.0.0.1"]),
    operation=st.sampled_from(["READ", "WRITE", "DESCRIBE"]),
    permission=st.sampled_from(["ALLOW", "DENY"]),
)


@settings(max_examples=300, deadline=None)
@given(
    captured=st.lists(rules, max_size=12),
    existing=st.lists(rules, max_size=12),
    topics=st.dictionaries(
        st.sampled_from(["orders", "payments", "ord"]), st.sampled_from(["copy", "x"]), max_size=2
    ),
    groups=st.dictionaries(st.sampled_from(["billing"]), st.sampled_from(["dr-billing"]), max_size=1),
    mode=st.sampled_from(["literal", "all"]),
)
def test_the_diff_only_ever_adds(
    captured: list[AclRule],
    existing: list[AclRule],
    topics: dict[str, str],
    groups: dict[str, str],
    mode: Any,
) -> None:
    """One change per recorded binding, none a deletion; creations are new on the target and never
    the opposite of a binding there; a literal binding of a restored topic or group is always
    created, found or in conflict; under 'true' only literal bindings are created."""
    changes = acl_changes(captured, topics, groups, existing, mode)
    assert len(changes) == len(captured)
    assert {c.kind for c in changes} <= {"create", "exists", "conflict", "widening", "skipped"}
    present = {r.sort_key() for r in existing}
    for change in changes:
        rule_ = change.captured
        if change.kind == "create":
            assert change.target is not None and change.target.sort_key() not in present
            opposite = "DENY" if change.target.permission == "ALLOW" else "ALLOW"
            assert change.target.model_copy(update={"permission": opposite}).sort_key() not in present
            if mode == "literal":
                assert change.target.literal
        renames = (
            topics if rule_.resource_type == "TOPIC" else groups if rule_.resource_type == "GROUP" else {}
        )
        if rule_.literal and rule_.resource_name in renames:
            assert change.kind in ("create", "exists", "conflict", "skipped")
            if change.kind == "skipped":  # only a duplicate of a binding created just before
                assert "once" in change.reason
            else:
                assert change.target is not None
                assert change.target.resource_name == renames[rule_.resource_name]
        if rule_.resource_type == "TRANSACTIONAL_ID":
            assert change.kind == "skipped"
    creations = [c.target.sort_key() for c in changes if c.kind == "create" and c.target]
    assert len(creations) == len(set(creations))


@settings(max_examples=100, deadline=None)
@given(
    users=st.lists(st.sampled_from(["a", "b", "c", "d"]), unique=True),
    existing=st.sets(st.sampled_from(["a", "b", "x"])),
    with_password=st.sets(st.sampled_from(["a", "c", "y"])),
)
def test_a_user_is_created_only_when_missing_and_given_a_password(
    users: list[str], existing: set[str], with_password: set[str]
) -> None:
    recorded = [ScramUser(user=u, credentials=()) for u in users]
    changes = user_changes(recorded, existing, with_password)
    assert [c.user for c in changes] == users
    for change in changes:
        assert (change.kind == "create") == (change.user not in existing and change.user in with_password)
        assert (change.kind == "exists") == (change.user in existing)


# --- the permission pre-flight and the passwords ------------------------------------------------


@pytest.mark.parametrize(
    ("operations", "message"),
    [
        ({"DESCRIBE"}, "'restore.acls' needs ALTER on the cluster: User:bob has DESCRIBE only"),
        ({"ALTER"}, "'restore.acls' needs DESCRIBE on the cluster: User:bob has ALTER only"),
        (set(), "'restore.acls' needs ALTER and DESCRIBE on the cluster: User:bob has no permission on it"),
    ],
)
def test_a_principal_without_alter_or_describe_is_refused_by_name(operations: set[str], message: str) -> None:
    refusal = permission_refusal("'restore.acls'", frozenset(operations), "User:bob")
    assert refusal is not None and message in str(refusal)
    assert refusal.principal == "User:bob"


@pytest.mark.parametrize("operations", [{"ALTER", "DESCRIBE", "CREATE"}, {"ALL"}])
def test_alter_and_describe_pass(operations: set[str]) -> None:
    assert permission_refusal("'restore.users'", frozenset(operations), "User:bob") is None


def test_what_is_asked_is_named_as_the_properties() -> None:
    plan = plan_of_capture(acls="all", users=True)
    assert asked(plan) == "'restore.acls' and 'restore.users'"


def test_passwords_from_the_environment_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSWORDS_ENV, raising=False)
    assert read_passwords(None) == {}
    monkeypatch.setenv(PASSWORDS_ENV, json.dumps({"consumer": "s3cret-value"}))
    assert read_passwords(None) == {"consumer": "s3cret-value"}
    for bad in ("s3cret-value{", json.dumps(["s3cret-value"]), json.dumps({"consumer": 7})):
        monkeypatch.setenv(PASSWORDS_ENV, bad)
        with pytest.raises(UserPasswordsError) as raised:
            read_passwords(None)
        assert "s3cret-value" not in str(raised.value) and PASSWORDS_ENV in str(raised.value)


# --- the report --------------------------------------------------------------------------------


def test_the_summary_prints_the_diff() -> None:
    plan = plan_of_capture(acls="literal", users=True, group_prefix="dr-")
    diff = access_diff(plan, [rule("copy", "User:consumer", "READ")], {"producer"}, {"consumer"})
    started = datetime(2026, 1, 3, tzinfo=UTC)
    dry = summary(restore_report(plan, [], [], dry_run=True, started_at=started, seconds=1.0, access=diff))
    assert "## Access rules" in dry
    assert "ACL bindings: 2 would be created, 1 exist, 0 in conflict (not created), 2 widening" in dry
    assert "- create: User:producer ALLOW WRITE on TOPIC copy (literal) from *" in dry
    assert "- exists: User:consumer ALLOW READ on TOPIC copy (literal) from *" in dry
    assert "- create: user consumer SCRAM-SHA-512 (8192 iterations)" in dry
    applied = diff.model_copy(update={"applied": True})
    done = summary(
        restore_report(plan, [], [], dry_run=False, started_at=started, seconds=1.0, access=applied)
    )
    assert "ACL bindings: 2 created" in done and "- created: User:producer ALLOW WRITE on TOPIC copy" in done
    assert "## Access rules" not in summary(
        restore_report(plan, [], [], dry_run=False, started_at=started, seconds=1.0)
    )
