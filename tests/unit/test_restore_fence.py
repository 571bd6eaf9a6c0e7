"""Fencing earlier runs of a restore (tasks/restore/fence.py) with the Kafka calls replaced: where the
restore begins in a target it created is 0, never asked of partitions created a moment ago (a
3,000-partition topic answered ListOffsets with NOT_LEADER_FOR_PARTITION for over a minute); the
progress layout a run decides and records, and keeps once recorded."""

from __future__ import annotations

from typing import Any

import pytest

from layout.restore.plan import TargetTopic
from tasks.restore import fence
from tests.unit.test_restore_work_units import _plan, _unit


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    seen: dict[str, Any] = {
        "asked": [],
        "recorded": None,
        "fenced": None,
        "anchor": None,  # what the restore group recorded on its anchor: (offset, metadata)
        "older": ["old-unit-id"],  # the per-unit ids an older kbackup began under
    }
    monkeypatch.setattr(fence, "admin_client", lambda config: object())
    monkeypatch.setattr(
        fence,
        "restore_group_offsets",
        lambda admin, config, plan, partitions: {("new", 0): seen["anchor"]} if seen["anchor"] else {},
    )
    monkeypatch.setattr(fence, "_units_begun_before_work_units", lambda admin, config, plan: seen["older"])

    def fenced(config: Any, ids: list[str]) -> None:
        seen["fenced"] = ids

    def offsets(
        admin: Any, config: Any, partitions: list[tuple[str, int]], which: str
    ) -> dict[tuple[str, int], int]:
        seen["asked"].extend(partitions)
        return {where: 7 for where in partitions}

    def record(
        admin: Any, config: Any, plan: Any, first: Any, starts: Any, missing: Any, slots: int, layout: str
    ) -> None:
        seen["recorded"], seen["layout"] = starts, layout

    monkeypatch.setattr(fence, "fence", fenced)
    monkeypatch.setattr(fence, "partition_offsets", offsets)
    monkeypatch.setattr(fence, "_record", record)
    return seen


def _two_targets() -> Any:
    units = [
        _unit(p).model_copy(update={"target_topic": topic}) for topic in ("new", "old") for p in range(3)
    ]
    targets = tuple(TargetTopic(name=t, partitions_needed=3, partition_count=3) for t in ("new", "old"))
    return _plan(units).model_copy(update={"targets": targets})


def test_a_created_target_begins_at_0_unasked_and_an_existing_one_is_asked(calls: dict[str, Any]) -> None:
    fence.fence_earlier_runs({}, _two_targets(), 2, {"new": 3, "old": 3}, frozenset({"new"}))
    assert sorted(calls["asked"]) == [("old", p) for p in range(3)]
    assert {where: offset for where, offset in calls["recorded"].items() if where[0] == "new"} == {
        ("new", p): 0 for p in range(3)
    }
    assert calls["fenced"] == ["old-unit-id"]  # "old" existed: an older kbackup may have begun there


def test_when_the_run_created_every_target_nothing_is_asked_or_looked_for(calls: dict[str, Any]) -> None:
    fence.fence_earlier_runs({}, _two_targets(), 2, {"new": 3, "old": 3}, frozenset({"new", "old"}))
    assert calls["asked"] == []
    assert calls["fenced"] == []


def test_a_restore_begun_now_keeps_its_progress_in_the_progress_group(calls: dict[str, Any]) -> None:
    fenced = fence.fence_earlier_runs({}, _two_targets(), 2, {"new": 3, "old": 3}, frozenset({"new", "old"}))
    assert fenced.progress == calls["layout"] == "shared"


def test_into_existing_targets_without_older_progress_the_progress_group_is_used(
    calls: dict[str, Any],
) -> None:
    calls["older"] = []
    fenced = fence.fence_earlier_runs({}, _two_targets(), 2, {"new": 3, "old": 3}, frozenset())
    assert fenced.progress == calls["layout"] == "shared"


def test_a_restore_an_older_kbackup_began_keeps_the_units_own_groups(calls: dict[str, Any]) -> None:
    fenced = fence.fence_earlier_runs({}, _two_targets(), 2, {"new": 3, "old": 3}, frozenset({"new"}))
    assert fenced.progress == calls["layout"] == "units"  # "old-unit-id" began before work units


def test_slots_recorded_without_a_layout_mean_the_units_own_groups_and_that_is_recorded(
    calls: dict[str, Any],
) -> None:
    calls["anchor"] = (0, {"slots": 4})  # a run of the version before the progress group
    fenced = fence.fence_earlier_runs({}, _two_targets(), 2, {"new": 3, "old": 3}, frozenset())
    assert fenced.progress == calls["layout"] == "units" and fenced.slots == 4
    assert "old-unit-id" not in fenced.transactional_ids  # slots recorded: no older kbackup to fence


def test_a_recorded_layout_is_kept_whatever_this_run_finds(calls: dict[str, Any]) -> None:
    calls["anchor"] = (0, {"slots": 4, "progress": "shared"})
    fenced = fence.fence_earlier_runs({}, _two_targets(), 2, {"new": 3, "old": 3}, frozenset({"new", "old"}))
    assert fenced.progress == "shared" and calls["layout"] == "shared"  # the missing starts recorded
