"""The access rules a backup captures (layout/access.py, shown by kbackup ls --details and status,
checked by layout/manifest_checks.py), without a broker: which bindings a backup of some topics
and groups keeps, what a manifest's capture may not say, how `ls --details`, `status` and the
backup's report show it."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kbackup.cli import EXIT_BAD_INPUT, EXIT_OK, main
from kbackup.commands.ls import details
from layout.access import (
    RESTORE_TRANSACTIONAL_PREFIX,
    AccessCapture,
    AclRule,
    BrokerConfig,
    ScramCredential,
    ScramUser,
    describe_capture,
    principals_of,
    relevant_rules,
    scram_user_names,
)
from layout.manifest import Manifest, manifest_key
from layout.manifest_checks import manifest_problems
from layout.status import access_words, prefix_status, status_rows
from tasks.backup.report import BackupResult, summary
from tasks.backup.verify import VerifyReport
from tasks.services.manifest_store import write_manifest
from tasks.services.object_store import MemoryStore
from tests.support.memory_backup import Partitions, backup, messages

BUCKET = "bkt"
AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

names = st.text(alphabet="abcdefgh-._", min_size=1, max_size=12)
principal_names = st.sampled_from(["User:alice", "User:bob", "User:carol", "Group:ops"])
operations = st.sampled_from(["READ", "WRITE", "DESCRIBE", "ALL"])


def rule(
    name: str,
    kind: str = "TOPIC",
    pattern: str = "LITERAL",
    principal: str = "User:alice",
    operation: str = "READ",
    permission: str = "ALLOW",
) -> AclRule:
    return AclRule.model_validate(
        {
            "resource_type": kind,
            "resource_name": name,
            "pattern_type": pattern,
            "principal": principal,
            "operation": operation,
            "permission": permission,
        }
    )


rules = st.builds(
    rule,
    names,
    st.sampled_from(["TOPIC", "GROUP", "TRANSACTIONAL_ID", "CLUSTER"]),
    st.sampled_from(["LITERAL", "PREFIXED"]),
    principal_names,
    operations,
    st.sampled_from(["ALLOW", "DENY"]),
)


# --- which bindings a backup keeps -------------------------------------------------------------


@given(st.lists(names, min_size=1, max_size=4), principal_names, operations, st.lists(rules, max_size=8))
def test_a_literal_binding_of_a_backed_up_topic_is_always_kept(
    topics: list[str], principal: str, operation: str, others: list[AclRule]
) -> None:
    mine = rule(topics[0], principal=principal, operation=operation)
    assert mine in relevant_rules([*others, mine, *others], topics, [])


@given(st.lists(names, min_size=1, max_size=4), st.lists(names, max_size=3), names, principal_names)
def test_a_literal_binding_of_an_unrelated_name_is_never_kept(
    topics: list[str], groups: list[str], other: str, principal: str
) -> None:
    if other in topics or other in groups or other == "*":
        return
    unrelated = [rule(other, principal=principal), rule(other, "GROUP", principal=principal)]
    assert relevant_rules(unrelated, topics, groups) == ()


@given(st.lists(rules, max_size=12), st.lists(names, min_size=1, max_size=3), st.lists(names, max_size=3))
def test_what_is_kept_applies_to_the_backup_sorted_and_once(
    given_rules: list[AclRule], topics: list[str], groups: list[str]
) -> None:
    kept = relevant_rules(given_rules + given_rules, topics, groups)
    assert list(kept) == sorted(set(kept), key=AclRule.sort_key)
    for r in kept:
        assert r.resource_type != "CLUSTER"
        if r.resource_type == "TOPIC":
            assert any(r.matches(t) for t in topics)
        elif r.resource_type == "GROUP":
            assert any(r.matches(g) for g in groups)
    assert set(kept) >= {r for r in given_rules if r.resource_type == "TOPIC" and r.matches(topics[0])}


def test_prefixed_and_wildcard_bindings_matching_a_topic_group_or_the_restore_ids_are_kept() -> None:
    kept = [
        rule("orders", pattern="PREFIXED", principal="User:bob", operation="WRITE"),
        rule("*", operation="DESCRIBE"),
        rule("app-", "GROUP", "PREFIXED"),
        rule(RESTORE_TRANSACTIONAL_PREFIX, "TRANSACTIONAL_ID", "PREFIXED", "User:restorer", "WRITE"),
        rule("kbackup-", "TRANSACTIONAL_ID", "PREFIXED", "User:restorer", "WRITE"),
        rule(f"{RESTORE_TRANSACTIONAL_PREFIX}7", "TRANSACTIONAL_ID"),
    ]
    dropped = [
        rule("order", principal="User:bob"),  # literal, not the topic
        rule("ordersx", pattern="PREFIXED"),  # a prefix longer than the name
        rule("app-2", "GROUP"),  # another group
        rule("producer-", "TRANSACTIONAL_ID", "PREFIXED"),
        rule("kafka-cluster", "CLUSTER"),
    ]
    assert set(relevant_rules([*dropped, *kept], ["orders-eu"], ["app-1"])) == set(kept)


def test_principals_and_scram_user_names() -> None:
    bindings = [
        rule("a", principal="User:bob"),
        rule("b", principal="Group:ops"),
        rule("c", principal="User:*"),
    ]
    assert principals_of(bindings) == ("Group:ops", "User:*", "User:bob")
    assert scram_user_names(principals_of(bindings)) == ("bob",)


# --- a manifest's capture ----------------------------------------------------------------------


def capture(**changes: object) -> AccessCapture:
    acls = (
        rule("orders", principal="User:alice"),
        rule("orders", pattern="PREFIXED", principal="User:bob", operation="WRITE"),
        rule("app-1", "GROUP", principal="User:alice"),
    )
    base = AccessCapture(
        captured_at=AT,
        acls=tuple(sorted(acls, key=AclRule.sort_key)),
        principals=("User:alice", "User:bob"),
        scram_users=(
            ScramUser(
                user="alice", credentials=(ScramCredential(mechanism="SCRAM-SHA-512", iterations=8192),)
            ),
        ),
        broker_configs=(
            BrokerConfig(
                broker="default",
                name="min.insync.replicas",
                value="2",
                source="DYNAMIC_DEFAULT_BROKER_CONFIG",
            ),
            BrokerConfig(broker="1", name="listener.password", value=None, source="DYNAMIC_BROKER_CONFIG"),
        ),
    )
    return base.model_copy(update=changes)


@functools.cache
def _backed_up() -> Manifest:
    store = MemoryStore()
    store.create_bucket(BUCKET)
    kcql = f"INSERT INTO {BUCKET}:nightly SELECT * FROM orders STOREAS AVRO PROPERTIES('store.envelope'=true)"
    return backup(store, kcql, Partitions("orders", {0: messages(range(5))}))


def with_access(access: AccessCapture | None) -> Manifest:
    return _backed_up().model_copy(update={"access": access})


def problems(access: AccessCapture | None) -> list[str]:
    return [str(p) for p in manifest_problems(with_access(access), "nightly")]


def test_a_sound_capture_and_none_at_all_pass() -> None:
    assert problems(capture()) == []
    assert problems(None) == []
    assert (
        problems(capture(acls=(), principals=(), scram_users=(), not_captured=("ACL bindings: why",))) == []
    )
    stored = with_access(capture())
    assert Manifest.model_validate_json(stored.model_dump_json()) == stored


def test_a_capture_that_cannot_be_is_named_by_field() -> None:
    sound = capture()
    twice = problems(capture(acls=(*sound.acls, sound.acls[0])))
    assert twice == [f"access.acls[3] ({sound.acls[0].describe()}): listed twice (also at access.acls[0])"]
    [missing] = problems(capture(principals=("User:alice",)))
    assert (
        missing.startswith("access.principals: not the principals the bindings name")
        and "User:bob named" in missing
    )
    [extra] = problems(capture(principals=("User:alice", "User:bob", "User:eve")))
    assert "User:eve listed but named by no binding" in extra
    stranger = ScramUser(user="eve", credentials=())
    assert problems(capture(scram_users=(*sound.scram_users, stranger))) == [
        "access.scram_users[1].user (eve): User:eve is not among the access principals"
    ]
    assert problems(capture(scram_users=(*sound.scram_users, *sound.scram_users))) == [
        "access.scram_users[1].user (alice): listed twice"
    ]


# --- how it shows ------------------------------------------------------------------------------


def test_ls_details_prints_bindings_principals_users_configs_and_what_was_not_captured() -> None:
    text = details(with_access(capture()))
    lines = text.splitlines()
    assert lines[0].startswith(
        f"Access rules of restore point {_backed_up().backup_id}, captured 2026-12-01 12:00:00"
    )
    header = next(line for line in lines if line.startswith("principal"))
    assert header.split() == [
        "principal",
        "permission",
        "operation",
        "resource",
        "type",
        "name",
        "pattern",
        "host",
    ]
    assert any(
        line.split() == ["User:bob", "ALLOW", "WRITE", "TOPIC", "orders", "prefixed", "*"] for line in lines
    )
    assert any(
        line.split() == ["User:alice", "ALLOW", "READ", "GROUP", "app-1", "literal", "*"] for line in lines
    )
    assert "Principals: User:alice, User:bob" in lines
    assert any(line.split() == ["alice", "SCRAM-SHA-512", "8192"] for line in lines)
    assert "Brokers' dynamic configs (listed, not restored):" in lines
    assert any(line.split()[:3] == ["1", "listener.password", "(sensitive)"] for line in lines)
    assert "Not captured:" not in lines
    assert any(line.startswith("Client quotas: not captured") and "librdkafka#5227" in line for line in lines)
    assert any(line.startswith("SCRAM secrets: never captured") for line in lines)


def test_ls_details_of_a_point_without_a_capture_or_with_bindings_not_captured() -> None:
    assert "none captured" in details(with_access(None))
    no_configs = "broker configs: User:x may not DESCRIBE_CONFIGS the cluster (CLUSTER_AUTHORIZATION_FAILED)"
    lines = details(with_access(capture(broker_configs=(), not_captured=(no_configs,)))).splitlines()
    assert lines[lines.index("Brokers' dynamic configs (listed, not restored):") + 1] == "(not captured)"
    assert lines[lines.index("Not captured:") + 1] == f"- {no_configs}"
    refused = "ACL bindings: User:x may not DESCRIBE the cluster (CLUSTER_AUTHORIZATION_FAILED)"
    text = details(with_access(AccessCapture(captured_at=AT, not_captured=(refused,))))
    assert "ACL bindings:\n(not captured)" in text and f"- {refused}" in text


def test_one_line_of_what_was_captured() -> None:
    assert describe_capture(capture()) == "3 ACL bindings, 2 principals, 1 SCRAM user, 2 broker configs"
    assert describe_capture(None) == "not captured"
    refused = AccessCapture(
        captured_at=AT,
        not_captured=("ACL bindings: no", "SCRAM users: no", "broker configs: no"),
    )
    assert describe_capture(refused) == "not captured (ACL bindings, SCRAM users, broker configs)"
    partly = capture(broker_configs=(), not_captured=("broker configs: no",))
    assert (
        describe_capture(partly) == "3 ACL bindings, 2 principals, 1 SCRAM user; not captured: broker configs"
    )


def test_the_report_says_what_was_captured() -> None:
    manifest = with_access(capture())
    report = VerifyReport(
        backup_id=manifest.backup_id,
        depth="quick",
        objects_checked=1,
        objects_decoded=0,
        records_decoded=0,
        problems=[],
    )
    text = summary(BackupResult(manifest_key="k", manifest=manifest, verification=report))
    assert "- access rules: 3 ACL bindings, 2 principals, 1 SCRAM user, 2 broker configs" in text.splitlines()


def test_status_counts_the_topic_s_bindings_principals_and_scram_users_or_says_not_captured() -> None:
    now = AT + timedelta(days=1)
    [row] = prefix_status(BUCKET, "nightly", [with_access(capture())], [], now).topics
    assert row.access is not None
    # the two TOPIC bindings (literal and prefixed), alice's and bob's; alice is the SCRAM user
    assert (row.access.bindings, row.access.principals, row.access.scram_users) == (2, 2, 1)
    assert (
        status_rows(prefix_status(BUCKET, "nightly", [with_access(capture())], [], now))[0]["access rules"]
        == "2 bindings, 2 principals, 1 SCRAM user"
    )
    [old] = prefix_status(BUCKET, "nightly", [with_access(None)], [], now).topics
    assert old.access is None and access_words(old.access) == "not captured"
    refused = AccessCapture(captured_at=AT, not_captured=("ACL bindings: no", "SCRAM users: no"))
    [denied] = prefix_status(BUCKET, "nightly", [with_access(refused)], [], now).topics
    assert denied.access is not None and denied.access.bindings is None
    assert access_words(denied.access) == "not captured"
    assert '"access"' in prefix_status(BUCKET, "nightly", [with_access(capture())], [], now).model_dump_json()


def test_kbackup_ls_details_shows_the_newest_point_or_the_one_asked_for(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store = MemoryStore()
    store.create_bucket(BUCKET)
    kcql = f"INSERT INTO {BUCKET}:nightly SELECT * FROM orders STOREAS AVRO PROPERTIES('store.envelope'=true)"
    first = backup(store, kcql, Partitions("orders", {0: messages(range(5))}))
    second = backup(store, kcql, Partitions("orders", {0: messages(range(8))}), previous=first)
    for manifest, access in (
        (first, capture()),
        (second, capture(acls=capture().acls[:1], principals=("User:alice",))),
    ):
        store.delete(BUCKET, manifest_key("nightly", manifest.backup_id))
        write_manifest(store, BUCKET, "nightly", manifest.model_copy(update={"access": access}))
    monkeypatch.setattr("tasks.services.object_store.open_store", lambda: store)
    url = f"s3://{BUCKET}/nightly"

    assert main(["ls", url, "--details"]) == EXIT_OK
    out = capsys.readouterr().out
    assert f"Access rules of restore point {second.backup_id}" in out and "User:bob" not in out
    assert main(["ls", url, "--details", "--point", first.backup_id]) == EXIT_OK
    out = capsys.readouterr().out
    assert (
        f"Access rules of restore point {first.backup_id}" in out
        and "Principals: User:alice, User:bob" in out
    )
    assert main(["ls", url]) == EXIT_OK
    assert "Access rules" not in capsys.readouterr().out
    assert main(["ls", url, "--details", "--point", "20990101T000000000Z-000000"]) == EXIT_BAD_INPUT
    assert "no restore point '20990101T000000000Z-000000'" in capsys.readouterr().err
