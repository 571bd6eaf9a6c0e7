"""Restore points, chains and retention (layout/chains.py): pure, on manifests made here."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import InputError
from layout.chains import ChainError, chain_of, referenced_keys, retention_plan
from layout.manifest import Manifest, ObjectEntry, PartitionEntry, backup_time, new_backup_id

START = datetime(2026, 11, 1, tzinfo=UTC)


def _manifest(hour: int, previous: str | None) -> Manifest:
    at = START + timedelta(hours=hour)
    backup_id = new_backup_id(at)
    obj = ObjectEntry(
        key=f"p/t/0/{hour:06d}.avro",
        first_offset=hour,
        last_offset=hour,
        record_count=1,
        min_timestamp=None,
        max_timestamp=None,
        size=10,
        sha256="x",
        records_digest="y",
    )
    return Manifest(
        backup_id=backup_id,
        previous_backup_id=previous,
        started_at=at,
        finished_at=at,
        kcql="",
        spec={},
        format="AVRO",
        extension="avro",
        lossless=True,
        cluster_id=None,
        topics=(),
        partitions=(
            PartitionEntry(
                topic="t",
                partition=0,
                start_offset=hour,
                end_offset=hour + 1,
                record_count=1,
                byte_count=10,
                records_digest="z",
                objects=(obj,),
            ),
        ),
    )


def _history(fulls: list[bool]) -> list[Manifest]:
    """One backup an hour; True starts a new chain."""
    manifests: list[Manifest] = []
    for hour, full in enumerate(fulls):
        previous = None if full or not manifests else manifests[-1].backup_id
        manifests.append(_manifest(hour, previous))
    return manifests


def test_a_point_reads_its_chain_from_its_full_backup():
    m = _history([True, False, False, True, False])
    assert chain_of(m, m[2].backup_id) == m[0:3]
    assert chain_of(m, m[4].backup_id) == m[3:5]


def test_a_missing_link_or_point_is_named():
    m = _history([True, False, False])
    with pytest.raises(ChainError, match=f"continues {m[0].backup_id}, which is gone"):
        chain_of(m[1:], m[2].backup_id)
    with pytest.raises(ChainError, match="no backup 'nope'"):
        chain_of(m, "nope")


def test_keep_last_keeps_the_chains_the_points_read():
    m = _history([True, False, False, True, False, False])
    plan = retention_plan(m, START + timedelta(days=1), keep_last=4)
    ids = [x.backup_id for x in m]
    assert plan.kept == tuple(ids[2:])
    assert plan.needed == tuple(ids[0:2])  # the first chain's base and middle: point 2 reads them
    assert plan.dropped == ()
    plan = retention_plan(m, START + timedelta(days=1), keep_last=2)
    assert plan.kept == tuple(ids[4:]) and plan.needed == (ids[3],) and plan.dropped == tuple(ids[0:3])


def test_keep_within_and_the_newest_point_is_always_kept():
    m = _history([True, False, True, False])
    now = START + timedelta(hours=3, minutes=30)
    plan = retention_plan(m, now, keep_within=timedelta(hours=1))
    ids = [x.backup_id for x in m]
    assert plan.kept == (ids[3],) and plan.needed == (ids[2],) and plan.dropped == tuple(ids[0:2])
    assert retention_plan(m, now + timedelta(days=9), keep_within=timedelta(hours=1)).kept == (ids[3],)


def test_a_policy_is_required():
    with pytest.raises(InputError, match="retention policy"):
        retention_plan(_history([True]), START)
    with pytest.raises(InputError, match="at least 1"):
        retention_plan(_history([True]), START, keep_last=0)


def test_the_backup_time_is_read_from_its_id():
    at = datetime(2026, 11, 28, 12, 30, 5, 123000, tzinfo=UTC)
    assert backup_time(new_backup_id(at)) == at


@given(st.lists(st.booleans(), min_size=1, max_size=30), st.integers(1, 10), st.integers(0, 40))
def test_retention_never_cuts_a_chain_and_never_drops_a_kept_object(fulls, keep_last, within_hours):
    fulls[0] = True
    m = _history(fulls)
    plan = retention_plan(
        m, START + timedelta(hours=len(m)), keep_last=keep_last, keep_within=timedelta(hours=within_hours)
    )
    kept = set(plan.keeps)
    for backup_id in plan.kept:
        assert {x.backup_id for x in chain_of(m, backup_id)} <= kept
    survivors = [x for x in m if x.backup_id in kept]
    for backup_id in plan.kept:  # every kept point still restorable from the survivors alone
        chain_of(survivors, backup_id)
    dropped = [x for x in m if x.backup_id in plan.dropped]
    assert not referenced_keys(dropped) & referenced_keys(survivors)
    assert set(plan.dropped) | kept == {x.backup_id for x in m}
    assert max(x.backup_id for x in m) in plan.kept


def test_a_backup_is_full_when_asked_first_or_its_chain_is_older_than_full_every():
    from kcql import parse_backup
    from tasks.backup.plan import full_backup_reason

    [spec] = parse_backup(
        "INSERT INTO bkt:p SELECT * FROM t STOREAS AVRO PROPERTIES('backup.full.every'='1d')"
    )
    assert spec.full_every_s == 86400
    m = _history([True, False])
    base = m[0].backup_id
    assert full_backup_reason(spec, None, base, START, False) == "the first backup under the prefix"
    assert full_backup_reason(spec, m[1], base, START + timedelta(hours=5), True) == "asked for"
    assert full_backup_reason(spec, m[1], base, START + timedelta(hours=23), False) == ""
    assert "'backup.full.every' is 1 day" in full_backup_reason(
        spec, m[1], base, START + timedelta(days=1), False
    )
    [forever] = parse_backup("INSERT INTO bkt:p SELECT * FROM t STOREAS AVRO")
    assert full_backup_reason(forever, m[1], base, START + timedelta(days=400), False) == ""
