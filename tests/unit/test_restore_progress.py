"""Where a restore's units keep their progress (layout/restore/progress.py): the units that alone
write their target partition in the restore's progress group, keyed by that partition; the others,
and every unit of a restore an earlier version began, in their own group on partition 0; no two
units on one key, and the same decision whatever order the units come in."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from layout.restore.plan import RestorePlan, RestoreUnit
from layout.restore.progress import (
    ANCHOR_PARTITION,
    ProgressKey,
    alone_in_partition,
    progress_group,
    progress_keys,
    progress_layout,
    unit_group,
)
from tests.unit.test_restore_work_units import _plan, _unit


def _into(unit: RestoreUnit, topic: str = "dst", **update: object) -> RestoreUnit:
    return unit.model_copy(update={"target_topic": topic, **update})


def test_units_preserved_into_partitions_of_their_own_share_the_progress_group():
    plan = _plan([_unit(p) for p in range(3)])
    assert progress_keys(plan) == {
        ("dst", f"src.{p}"): ProgressKey("kbackup-restore-r1-progress", "dst", p) for p in range(3)
    }


def test_units_preserved_into_one_partition_keep_their_own_groups():
    other = _unit(1).model_copy(update={"unit_id": "other.1", "source_topic": "other"})
    plan = _plan([_unit(0), _unit(1), other])
    keys = progress_keys(plan)
    assert keys[("dst", "src.0")] == ProgressKey(progress_group(plan), "dst", 0)
    assert keys[("dst", "src.1")] == ProgressKey(unit_group(plan, _unit(1)), "dst", ANCHOR_PARTITION)
    assert keys[("dst", "other.1")] == ProgressKey(unit_group(plan, other), "dst", ANCHOR_PARTITION)


def test_a_unit_routed_over_every_partition_of_a_target_makes_every_unit_there_keep_its_own_group():
    spread = _into(_unit(5), routing="murmur2", target_partition=None, unit_id="src.5")
    plan = _plan([_unit(0), _unit(1), spread, _into(_unit(2), "elsewhere")])
    assert alone_in_partition(plan) == {("elsewhere", "src.2")}
    keys = progress_keys(plan)
    assert keys[("elsewhere", "src.2")] == ProgressKey(progress_group(plan), "elsewhere", 2)
    assert all(keys[("dst", f"src.{p}")].group == unit_group(plan, _unit(p)) for p in (0, 1))


def test_a_restore_an_earlier_version_began_keeps_every_unit_in_its_own_group():
    units = [_unit(p) for p in range(3)]
    keys = progress_keys(_plan(units, progress="units"))
    assert list(keys.values()) == [
        ProgressKey(unit_group(_plan(units), unit), "dst", ANCHOR_PARTITION) for unit in units
    ]


def test_the_keys_need_the_recorded_layout():
    with pytest.raises(ValueError, match="r1: its progress layout is not decided"):
        progress_keys(_plan([_unit(0)]).model_copy(update={"progress": None}))


@pytest.mark.parametrize(
    ("recorded", "older_progress", "layout"),
    [
        (None, False, "shared"),  # a restore this version begins
        (None, True, "units"),  # a version before work units left progress in the units' groups
        ({"slots": 4}, False, "units"),  # the version before the progress group began it
        ({"slots": 4, "progress": "shared"}, True, "shared"),  # recorded: kept
        ({"slots": 2, "progress": "units"}, False, "units"),
        ({}, False, "shared"),
    ],
)
def test_the_layout_of_a_restore_from_what_its_own_group_recorded(recorded, older_progress, layout):
    assert progress_layout(recorded, older_progress) == layout


def test_a_reader_that_finds_nothing_recorded_reads_the_units_own_groups():
    assert progress_layout(None) == "units"  # the progress group holds nothing before it is recorded


_units = st.lists(
    st.tuples(
        st.sampled_from(["a", "b"]),  # source topic
        st.integers(0, 3),  # source partition
        st.sampled_from(["x", "y"]),  # target topic
        st.sampled_from(["preserve", "preserve", "murmur2", "metadata", "round-robin"]),
        st.integers(0, 3),  # target partition (with preserve)
    ),
    max_size=12,
    unique_by=lambda u: (u[0], u[1], u[2]),
)


def _random_plan(specs: list[tuple[str, int, str, str, int]]) -> RestorePlan:
    units = [
        _unit(partition).model_copy(
            update={
                "unit_id": f"{source}.{partition}",
                "source_topic": source,
                "target_topic": target,
                "routing": routing,
                "target_partition": where if routing == "preserve" else None,
            }
        )
        for source, partition, target, routing, where in specs
    ]
    return _plan(units)


@given(_units, st.randoms())
def test_no_two_units_share_a_key_and_the_order_of_the_units_does_not_matter(specs, random):
    plan = _random_plan(specs)
    keys = progress_keys(plan)
    assert len(set(keys.values())) == len(plan.units)
    for unit in plan.units:
        key = keys[(unit.target_topic, unit.unit_id)]
        others = [u for u in plan.units if u is not unit and u.target_topic == unit.target_topic]
        alone = unit.routing == "preserve" and all(
            u.routing == "preserve" and u.target_partition != unit.target_partition for u in others
        )
        if alone:
            assert key == ProgressKey(progress_group(plan), unit.target_topic, unit.target_partition)
        else:
            assert key == ProgressKey(unit_group(plan, unit), unit.target_topic, ANCHOR_PARTITION)
    shuffled = list(plan.units)
    random.shuffle(shuffled)
    assert progress_keys(plan.model_copy(update={"units": tuple(shuffled)})) == keys
