"""The RPO alert's pure parts: durations, a schedule's interval, the RPO chosen, the trigger's
shape and the message's templates (rendered with Jinja as Prefect's actions do)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule, RRuleSchedule

from core.errors import InputError
from kbackup.alerts import COMMIT_EVENT, rpo_automation, rpo_trigger
from kbackup.rpo import (
    RpoError,
    alert_body,
    alert_subject,
    choose_rpo,
    deployment_interval,
    format_duration,
    parse_duration,
    schedule_interval,
)

NOW = datetime(2026, 12, 7, 19, 0, tzinfo=UTC)  # a Monday


@given(st.integers(min_value=1, max_value=10**9))
def test_a_duration_formats_to_text_that_parses_back(seconds: int) -> None:
    text = format_duration(timedelta(seconds=seconds))
    assert parse_duration(text, "x") == timedelta(seconds=seconds)
    assert text[:-1].isdigit() and text[-1] in "smhdw"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(45, "45s"), (5400, "90m"), (7200, "2h"), (86400, "1d"), (14 * 86400, "2w"), (732 * 86400, "732d")],
)
def test_a_duration_takes_the_largest_unit_that_divides_it(seconds: int, text: str) -> None:
    assert format_duration(timedelta(seconds=seconds)) == text


@pytest.mark.parametrize("bad", [timedelta(0), timedelta(seconds=-5), timedelta(seconds=1.5)])
def test_only_whole_positive_seconds_format(bad: timedelta) -> None:
    with pytest.raises(ValueError):
        format_duration(bad)


@pytest.mark.parametrize("text", ["2hours", "h", "0s", "-1h", "1.5h", ""])
def test_a_bad_duration_names_where_it_was_given(text: str) -> None:
    with pytest.raises(RpoError) as caught:
        parse_duration(text, "--rpo")
    assert isinstance(caught.value, InputError)
    assert caught.value.where == "--rpo" and caught.value.value == text
    assert str(caught.value).startswith(f"--rpo is {text!r}: expected a duration")


def test_an_interval_schedules_interval_is_its_interval() -> None:
    assert schedule_interval(IntervalSchedule(interval=timedelta(seconds=10)), NOW) == timedelta(seconds=10)


@pytest.mark.parametrize(
    ("cron", "timezone", "interval"),
    [
        ("0 * * * *", "UTC", timedelta(hours=1)),
        ("*/15 * * * *", "UTC", timedelta(minutes=15)),
        ("30 3 * * *", "UTC", timedelta(days=1)),
        # Weekdays only: the longest gap is the weekend's, whatever day it is now.
        ("0 2 * * 1-5", "Europe/Paris", timedelta(days=3)),
        # Hourly in office hours: the night's gap.
        ("0 9-17 * * *", "UTC", timedelta(hours=16)),
        ("0 4 * * 0", "UTC", timedelta(weeks=1)),
    ],
)
def test_a_cron_schedules_interval_is_its_longest_gap(cron: str, timezone: str, interval: timedelta) -> None:
    assert schedule_interval(CronSchedule(cron=cron, timezone=timezone), NOW) == interval


def test_an_rrule_schedules_interval_is_its_longest_gap() -> None:
    assert schedule_interval(RRuleSchedule(rrule="FREQ=HOURLY;INTERVAL=3"), NOW) == timedelta(hours=3)


def test_a_yearly_cron_includes_the_leap_day() -> None:
    assert schedule_interval(CronSchedule(cron="0 0 1 1 *", timezone="UTC"), NOW) == timedelta(days=366)


def _entry(schedule: object, active: bool = True) -> SimpleNamespace:
    return SimpleNamespace(schedule=schedule, active=active)


def test_a_deployments_interval_is_its_most_frequent_active_schedule() -> None:
    hourly = CronSchedule(cron="0 * * * *", timezone="UTC")
    assert deployment_interval(
        [_entry(hourly), _entry(IntervalSchedule(interval=timedelta(minutes=20)))], NOW
    ) == (timedelta(minutes=20))
    # A paused schedule does not count.
    assert deployment_interval(
        [_entry(hourly), _entry(IntervalSchedule(interval=timedelta(minutes=20)), active=False)], NOW
    ) == timedelta(hours=1)
    assert deployment_interval([_entry(hourly, active=False)], NOW) is None
    assert deployment_interval([], NOW) is None


def test_the_flag_wins_then_the_parameter_then_twice_the_interval() -> None:
    hour = timedelta(hours=1)
    flag = choose_rpo("45m", "3h", hour)
    assert (flag.rpo, flag.source, flag.why) == (timedelta(minutes=45), "--rpo", "--rpo")
    parameter = choose_rpo(None, "3h", hour)
    assert (parameter.rpo, parameter.source) == (timedelta(hours=3), "parameter")
    schedule = choose_rpo(None, None, hour)
    assert (schedule.rpo, schedule.source) == (timedelta(hours=2), "schedule")
    assert schedule.why == "twice the schedule's interval of 1h"
    # An empty parameter (the UI form's empty field) is no parameter.
    assert choose_rpo(None, "", hour).source == "schedule"


def test_without_an_rpo_or_an_active_schedule_there_is_none_and_it_says_why() -> None:
    choice = choose_rpo(None, None, None)
    assert choice.rpo is None and choice.source is None
    assert choice.why == "no active schedule and no RPO: give --rpo or the deployment's rpo parameter"


def test_a_bad_parameter_names_the_deployment() -> None:
    with pytest.raises(RpoError) as caught:
        choose_rpo(None, "soon", timedelta(hours=1), "backup/nightly")
    assert caught.value.where == "the rpo parameter of backup/nightly (params.rpo)"


def test_the_trigger_is_proactive_on_the_deployments_restore_point_commits() -> None:
    deployment_id = uuid4()
    trigger = rpo_trigger(deployment_id, timedelta(minutes=90))
    assert trigger.posture.value == "Proactive"
    assert trigger.expect == {"prefect.task-run.Completed"} == {COMMIT_EVENT} == trigger.after
    assert (
        trigger.match.model_dump()
        == {
            "prefect.resource.id": "prefect.task-run.*",
            "prefect.resource.name": "write-manifest-*",  # tasks/backup/manifest.py's task, whatever its run's suffix
        }
    )
    assert trigger.match_related.model_dump() == {
        "prefect.resource.id": f"prefect.deployment.{deployment_id}"
    }
    assert trigger.within == timedelta(minutes=90)
    assert trigger.threshold == 1
    assert trigger.for_each == set()


def test_the_automation_names_the_deployment_and_links_its_runs() -> None:
    deployment_id, block_id = uuid4(), uuid4()
    automation = rpo_automation(
        block_id, "backup/backup", deployment_id, timedelta(hours=2), "http://ui:4200/"
    )
    assert automation.name == "kbackup-rpo-backup/backup"
    (action,) = automation.actions
    assert action.block_document_id == block_id
    assert action.subject == "kbackup: backup deployment backup/backup missed its RPO of 2h"
    assert f"http://ui:4200/deployments/deployment/{deployment_id}?tab=Runs" in action.body


def _render(template: str, **context: object) -> str:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    environment = ImmutableSandboxedEnvironment()
    environment.filters["ui_url"] = lambda obj: f"http://ui/runs/flow-run/{obj.id}"
    return environment.from_string(template).render(**context)


def test_the_body_names_the_last_run_that_committed_when_the_firing_has_it() -> None:
    event = SimpleNamespace(
        resource=SimpleNamespace(name="write-manifest-1f2"), occurred="2026-12-07 18:00:00+00:00"
    )
    body = _render(
        alert_body("backup/backup", timedelta(hours=2), "http://ui/deployments/deployment/d?tab=Runs"),
        firing=SimpleNamespace(triggered="2026-12-07 20:00:01+00:00"),
        event=event,
        flow_run=SimpleNamespace(id="r1", name="sly-fox"),
    )
    assert body == (
        "No run of the backup deployment backup/backup has committed a restore point within its RPO of 2h "
        "(7200 s), as of 2026-12-07 20:00:01+00:00.\n"
        "Last restore point: committed 2026-12-07 18:00:00+00:00 by run sly-fox http://ui/runs/flow-run/r1\n"
        "The deployment's runs: http://ui/deployments/deployment/d?tab=Runs"
    )


def test_the_body_of_a_reminder_without_an_event_says_so() -> None:
    body = _render(
        alert_body("backup/backup", timedelta(hours=2), "http://ui/runs"),
        firing=SimpleNamespace(triggered="T"),
        event=None,
    )
    assert "No restore point committed since the alert was set up or last fired" in body
    assert "a reminder comes about every 4h" in body
    assert "Last restore point" not in body
    assert body.endswith("The deployment's runs: http://ui/runs")
    assert alert_subject("backup/backup", timedelta(hours=2)) in (
        "kbackup: backup deployment backup/backup missed its RPO of 2h",
    )
