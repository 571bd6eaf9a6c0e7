"""The recovery point objective (RPO) of a backup deployment, and the words of its alert.

Plain functions, no server: the interval of a deployment's schedules, which RPO an alert uses
(`kbackup alerts setup --rpo`, else the deployment's `rpo` parameter, else twice the schedules'
interval), durations as operators write them (`45s`, `90m`, `2h`, `7d`, `2w`), and the subject
and body templates of the notification. kbackup/alerts.py creates the automation from them.

What the body's template can see: Prefect renders it with the firing's context
(prefect/server/events/actions.py `_template_context`): `automation`, `firing` (with `triggered`,
when the breach was found), `event` — the trigger's last matched event, here the `Completed` event
of the `write-manifest` task of the deployment's last run that committed a restore point, or None
— and, only when there is an event, the objects its resources name (`flow_run`, `flow`,
`deployment`). kbackup/alerts.py's trigger lets each commit open a new window, so the first alert
of a breach carries the last run that committed; a reminder of a breach that lasts, or a breach
with no commit since the automation was created, has no event. So the deployment's name, its RPO
and a link to its runs are written into the template when the automation is created, and the
last run is said when the event gives it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from core.errors import InputError
from kcql.properties import DURATION_EXPECTED, DURATION_UNITS, PropertyProblem, duration_seconds

FIRE_TIMES = 50
"""A cron or rrule schedule's interval is the longest gap between consecutive fire times among its
next this many: a weekdays-only cron's includes the weekend, an hourly-by-day one's the night."""

RpoSource = Literal["--rpo", "parameter", "schedule"]


class RpoError(InputError):
    """An RPO that is not a duration, naming where it was given."""

    def __init__(self, where: str, value: object) -> None:
        self.where = where
        self.value = value
        super().__init__(f"{where} is {value!r}: expected {DURATION_EXPECTED}")


class RpoChoice(BaseModel):
    """The RPO an alert uses for one deployment, and where it came from; `rpo` None: none could be
    chosen (`why` says what is missing)."""

    model_config = ConfigDict(frozen=True)

    rpo: timedelta | None
    source: RpoSource | None
    why: str


def parse_duration(text: str, where: str) -> timedelta:
    """`45s`, `90m`, `2h`, `7d`, `2w` (kcql.properties' durations, as prune's keep_within) as a
    timedelta; anything else is an RpoError naming `where`."""
    try:
        return timedelta(seconds=duration_seconds(text))
    except PropertyProblem:
        raise RpoError(where, text) from None


def format_duration(duration: timedelta) -> str:
    """The shortest `parse_duration` text of a whole number of seconds: the largest unit that
    divides it (7200 s → `2h`, 5400 s → `90m`, 14 days → `2w`)."""
    seconds = int(duration.total_seconds())
    if seconds <= 0 or seconds != duration.total_seconds():
        raise ValueError(f"not a positive whole number of seconds: {duration!r}")
    for unit, size in sorted(DURATION_UNITS.items(), key=lambda item: -item[1]):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    raise AssertionError("seconds divide every whole number of seconds")  # pragma: no cover


def schedule_interval(schedule: Any, now: datetime) -> timedelta | None:
    """How long a schedule leaves between runs: an interval schedule's interval; a cron or rrule
    schedule's longest gap between consecutive fire times among its next FIRE_TIMES after `now`,
    as Prefect's scheduler computes them (its server schedule models); None for a schedule that
    fires fewer than twice from now on."""
    from prefect.server.schemas import schedules as server

    if getattr(schedule, "interval", None) is not None:
        return timedelta(seconds=schedule.interval.total_seconds())
    fields = schedule.model_dump(exclude_none=True)
    model: server.CronSchedule | server.RRuleSchedule
    if getattr(schedule, "cron", None) is not None:
        model = server.CronSchedule.model_validate(fields)
    elif getattr(schedule, "rrule", None) is not None:
        model = server.RRuleSchedule.model_validate(fields)
    else:
        raise ValueError(f"not an interval, cron or rrule schedule: {schedule!r}")
    dates = sorted(asyncio.run(model.get_dates(n=FIRE_TIMES, start=now)))
    gaps = [later - earlier for earlier, later in zip(dates, dates[1:], strict=False)]
    return max(gaps) if gaps else None


def deployment_interval(schedules: Sequence[Any], now: datetime) -> timedelta | None:
    """The interval of a deployment's active schedules (Prefect's DeploymentSchedule: `active`,
    `schedule`): the shortest, as the most frequent schedule sets the pace; None without an
    active schedule that fires at least twice."""
    intervals = [
        interval
        for entry in schedules
        if entry.active and (interval := schedule_interval(entry.schedule, now)) is not None
    ]
    return min(intervals) if intervals else None


def choose_rpo(
    flag: str | None, parameter: str | None, interval: timedelta | None, deployment: str = "the deployment"
) -> RpoChoice:
    """The RPO of one deployment's alert: `--rpo` when given, else the deployment's `rpo`
    parameter, else twice its schedules' interval; none of them: no RPO, and `why` says so. A
    value that is not a duration is an RpoError naming where it was given."""
    if flag:
        return RpoChoice(rpo=parse_duration(flag, "--rpo"), source="--rpo", why="--rpo")
    if parameter:
        rpo = parse_duration(parameter, f"the rpo parameter of {deployment} (params.rpo)")
        return RpoChoice(rpo=rpo, source="parameter", why="the deployment's rpo parameter")
    if interval is not None:
        rpo = timedelta(seconds=round(2 * interval.total_seconds()))
        why = f"twice the schedule's interval of {format_duration(interval)}"
        return RpoChoice(rpo=rpo, source="schedule", why=why)
    return RpoChoice(
        rpo=None,
        source=None,
        why="no active schedule and no RPO: give --rpo or the deployment's rpo parameter",
    )


def alert_subject(deployment: str, rpo: timedelta) -> str:
    """The notification's subject (a template Prefect renders; nothing in it is templated)."""
    return f"kbackup: backup deployment {deployment} missed its RPO of {format_duration(rpo)}"


def alert_body(deployment: str, rpo: timedelta, runs_url: str) -> str:
    """The notification's body: a Jinja template Prefect renders when the alert fires. It names the
    deployment and the RPO, the last run that committed a restore point when the firing's event is
    that commit (see the module's docstring), and links the deployment's runs."""
    text = format_duration(rpo)
    return (
        f"No run of the backup deployment {deployment} has committed a restore point within its RPO "
        f"of {text} ({int(rpo.total_seconds())} s), as of {{{{ firing.triggered }}}}.\n"
        "{% if event %}"
        "Last restore point: committed {{ event.occurred }} by run {{ flow_run.name }} "
        "{{ flow_run|ui_url }}\n"
        "{% else %}"
        "No restore point committed since the alert was set up or last fired (while none is, a "
        f"reminder comes about every {format_duration(2 * rpo)}).\n"
        "{% endif %}"
        f"The deployment's runs: {runs_url}"
    )
