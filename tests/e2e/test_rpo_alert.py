"""The proactive RPO alert on served Prefect (the `served_api` fixture: server, worker and the
deployments of prefect.yaml, set up by scripts/serve.sh): `make serve` with a webhook sets up the
alerts; `kbackup alerts setup` (the installed script) creates the failure automation and one RPO
automation per backup deployment with the RPO it prints; a backup deployment whose short schedule
is paused makes the webhook receive the breach, naming the deployment, its RPO and its last run
(which committed the last restore point), and once the schedule is resumed and runs complete, no
further alert comes.

The server evaluates proactive triggers every PREFECT_SERVER_EVENTS_PROACTIVE_GRANULARITY (5 s by
default, kept: short beside the RPOs here)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from kbackup.alerts import AUTOMATION_NAME, RPO_AUTOMATION_PREFIX
from kbackup.rpo import alert_subject, parse_duration
from tests.e2e.conftest import FINAL_STATES, Kbackup, ServedPrefect, wait_for
from tests.support.kafka import produce
from tests.support.webhooks import webhook_receiver

pytestmark = pytest.mark.timeout(1500)

DEPLOYMENT = "backup/backup"
RPO = timedelta(seconds=90)  # a few runs' time on a loaded two-core machine: runs come every ~15-30 s
EVERY = timedelta(seconds=10)


def _runs(client: Any, deployment_id: UUID) -> list[Any]:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    return client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
    )


def _completed(client: Any, deployment_id: UUID, after: datetime | None = None) -> list[Any]:
    """The deployment's completed runs (ended after `after`), oldest end first."""
    done = [
        r
        for r in _runs(client, deployment_id)
        if r.state is not None and r.state.is_completed() and r.end_time is not None
    ]
    return sorted((r for r in done if after is None or r.end_time > after), key=lambda r: r.end_time)


def _unstarted(client: Any, deployment_id: UUID, kcql: str | None = None) -> list[Any]:
    """The deployment's runs not ended yet, after deleting those waiting to start: the test's own
    (its `kcql`), whenever due, or any due within a minute (the deployed cron's next, next year, is
    the deployment's own: left)."""
    soon = datetime.now(UTC) + timedelta(minutes=1)
    pending = [
        r
        for r in _runs(client, deployment_id)
        if r.state
        and r.state.type.value not in FINAL_STATES
        and (r.expected_start_time <= soon or r.parameters.get("params", {}).get("kcql") == kcql)
    ]
    for run in pending:
        if run.state.type.value == "SCHEDULED":  # queued, late or awaiting the concurrency slot
            client.delete_flow_run(run.id)
    return pending


def _settle(client: Any, deployment_id: UUID, served: ServedPrefect, kcql: str | None = None) -> None:
    """Delete the runs waiting to start (`_unstarted`); let the running ones end."""
    wait_for(
        lambda: not _unstarted(client, deployment_id, kcql),
        timeout=300,
        what=f"the runs of {DEPLOYMENT} to settle",
        interval=2,
        details=served.logs,
    )


def _delete_automations(*names: str) -> None:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        for name in names:
            for automation in client.read_automations_by_name(name):
                client.delete_automation(automation.id)


@contextmanager
def _interval_schedule(client: Any, deployment: Any, kcql: str, served: ServedPrefect) -> Iterator[Any]:
    """A short interval schedule of the deployment's own, backing up the test's KCQL (the
    schedule's parameters); removed afterwards with its runs, the deployment's other schedules
    left as they were."""
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.client.schemas.schedules import IntervalSchedule

    before = {s.id for s in client.read_deployment_schedules(deployment.id)}
    (schedule,) = client.create_deployment_schedules(
        deployment.id,
        [
            DeploymentScheduleCreate(
                schedule=IntervalSchedule(interval=EVERY),
                active=True,
                parameters={"params": {"kcql": kcql, "verify": "quick"}},
            )
        ],
    )
    try:
        yield schedule
    finally:
        client.delete_deployment_schedule(deployment.id, schedule.id)
        _settle(client, deployment.id, served, kcql)
        assert {s.id for s in client.read_deployment_schedules(deployment.id)} == before


def _switch(client: Any, deployment_id: UUID, schedule: Any, active: bool) -> None:
    """Pause or resume a schedule (the UI's toggle). Its parameters are given again: Prefect's
    server takes an update that leaves them out as an empty dict and clears them
    (server/schemas/actions.py DeploymentScheduleUpdate.parameters defaults to {})."""
    client.update_deployment_schedule(
        deployment_id, schedule.id, active=active, parameters=schedule.parameters
    )
    (updated,) = [s for s in client.read_deployment_schedules(deployment_id) if s.id == schedule.id]
    assert (updated.active, updated.parameters) == (active, schedule.parameters)


class Arrivals:
    """The alerts a receiver got, each with when it arrived (polled)."""

    def __init__(self, received: list[dict[str, Any]], subject: str) -> None:
        self.received = received
        self.subject = subject
        self.seen: list[tuple[float, dict[str, Any]]] = []

    def poll(self) -> list[tuple[float, dict[str, Any]]]:
        for body in self.received[len(self.seen) :]:
            self.seen.append((time.time(), body))
        return [(at, body) for at, body in self.seen if body.get("subject") == self.subject]


def test_make_serve_sets_up_the_alerts(served_api: ServedPrefect) -> None:
    """serve.sh ran `kbackup alerts setup` with KBACKUP_ALERT_WEBHOOK (tests/e2e/conftest.py): the
    backup deployment's RPO automation is on the server with the RPO its log printed, twice the
    deployed schedule's interval (prefect.yaml's rpo parameter is null)."""
    from prefect.client.orchestration import get_client

    log = (served_api.stack_dir / "logs" / "kbackup-alerts.log").read_text()
    assert f"automation {AUTOMATION_NAME} " in log, log
    row = re.search(rf"^{DEPLOYMENT}\s+(\S+)\s+twice the schedule's interval of (\S+)\s", log, re.MULTILINE)
    assert row, log
    rpo, interval = parse_duration(row[1], "the log"), parse_duration(row[2], "the log")
    assert rpo == 2 * interval
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(DEPLOYMENT)
        assert deployment.parameters["params"]["rpo"] is None
        (automation,) = client.read_automations_by_name(f"{RPO_AUTOMATION_PREFIX}{DEPLOYMENT}")
    assert automation.trigger.within == rpo
    assert automation.trigger.posture.value == "Proactive"
    assert automation.trigger.match_related.model_dump() == {
        "prefect.resource.id": f"prefect.deployment.{deployment.id}"
    }


def test_alerts_setup_takes_the_rpo_from_the_flag_the_parameter_or_the_schedule(
    served_api: ServedPrefect, kbackup: Kbackup
) -> None:
    """Paused backup deployments of the test's own (no run starts): one with an rpo parameter, one
    with a weekdays cron, one with no active schedule. `kbackup alerts setup` without --deployment
    covers every deployment of the backup flow and prints each RPO and where it came from;
    --deployment and --rpo set one; an unknown deployment or a bad duration creates nothing."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule

    suffix = f"rpo-{int(time.time())}"
    specs = {
        f"param-{suffix}": ([IntervalSchedule(interval=timedelta(minutes=7))], True, {"rpo": "3h"}),
        f"weekdays-{suffix}": ([CronSchedule(cron="0 2 * * 1-5", timezone="UTC")], True, {}),
        f"unscheduled-{suffix}": ([IntervalSchedule(interval=timedelta(minutes=7))], False, {}),
    }
    names = {stem: f"backup/{stem}" for stem in specs}
    created: list[UUID] = []
    with get_client(sync_client=True) as client:
        flow_id = client.read_flow_by_name("backup").id
        try:
            for stem, (schedules, active, params) in specs.items():
                created.append(
                    client.create_deployment(
                        flow_id=flow_id,
                        name=stem,
                        entrypoint="flows/backup.py:backup_flow",
                        schedules=[DeploymentScheduleCreate(schedule=s, active=active) for s in schedules],
                        parameters={"params": params},
                        paused=True,
                    )
                )
            bad = kbackup("alerts", "setup", "--webhook", "http://127.0.0.1:9/x", "--rpo", "2hours")
            unknown = kbackup("alerts", "setup", "--webhook", "http://127.0.0.1:9/x", "--deployment", "nope")
            every = kbackup("alerts", "setup", "--webhook", "http://127.0.0.1:9/x")
            automations = {
                stem: client.read_automations_by_name(f"{RPO_AUTOMATION_PREFIX}{name}")
                for stem, name in names.items()
            }
            one = kbackup(
                "alerts",
                "setup",
                "--webhook",
                "http://127.0.0.1:9/x",
                "--rpo",
                "45m",
                "--deployment",
                names[f"unscheduled-{suffix}"],
            )
            flagged = client.read_automations_by_name(
                f"{RPO_AUTOMATION_PREFIX}{names[f'unscheduled-{suffix}']}"
            )
        finally:
            _delete_automations(
                AUTOMATION_NAME, *(f"{RPO_AUTOMATION_PREFIX}{name}" for name in names.values())
            )
            for deployment_id in created:
                client.delete_deployment(deployment_id)

    assert bad.returncode == 2, bad
    assert "--rpo is '2hours': expected a duration" in bad.stderr
    assert unknown.returncode == 2, unknown
    assert "no deployment 'backup/nope'" in unknown.stderr
    assert "created" not in unknown.stdout + bad.stdout  # nothing was set up

    assert every.returncode == 0, every
    lines = {line.split()[0]: line for line in every.stdout.splitlines() if line.startswith("backup/")}
    assert re.search(r"\s3h\s+the deployment's rpo parameter\s", lines[names[f"param-{suffix}"]])
    # A weekdays cron's longest gap is the weekend's: three days.
    assert re.search(r"\s6d\s+twice the schedule's interval of 3d\s", lines[names[f"weekdays-{suffix}"]])
    assert re.search(r"\s-\s+no active schedule and no RPO", lines[names[f"unscheduled-{suffix}"]])
    assert f"no RPO alert for {names[f'unscheduled-{suffix}']}: no active schedule and no RPO" in every.stderr
    assert [a.trigger.within for a in automations[f"param-{suffix}"]] == [timedelta(hours=3)]
    assert [a.trigger.within for a in automations[f"weekdays-{suffix}"]] == [timedelta(days=6)]
    assert automations[f"unscheduled-{suffix}"] == []

    assert one.returncode == 0, one
    assert re.search(rf"^{names[f'unscheduled-{suffix}']}\s+45m\s+--rpo\s", one.stdout, re.MULTILINE), (
        one.stdout
    )
    assert [a.trigger.within for a in flagged] == [timedelta(minutes=45)]


def test_a_paused_schedule_breaks_the_rpo_and_alerts_once_until_runs_complete_again(
    served_api: ServedPrefect,
    kbackup: Kbackup,
    kafka_config: dict[str, Any],
    create_topic: Callable[..., str],
    bucket: str,
) -> None:
    from prefect.client.orchestration import get_client

    topic = create_topic("rpo")
    produce(kafka_config, topic, ({"key": f"k{i}".encode(), "value": b"v"} for i in range(20)))
    kcql = f"INSERT INTO {bucket}:rpo SELECT * FROM `{topic}` STOREAS AVRO PROPERTIES('store.envelope'=true)"
    subject = alert_subject(DEPLOYMENT, RPO)
    with webhook_receiver() as (url, received), get_client(sync_client=True) as client:
        arrivals = Arrivals(received, subject)
        deployment = client.read_deployment_by_name(DEPLOYMENT)
        paused_before = deployment.paused
        try:
            with _interval_schedule(client, deployment, kcql, served_api) as schedule:
                wait_for(
                    lambda: [
                        r
                        for r in _completed(client, deployment.id)
                        if r.parameters["params"].get("kcql") == kcql
                    ],
                    timeout=420,
                    what="a completed run of the test's schedule",
                    interval=2,
                    details=served_api.logs,
                )
                setup = kbackup(
                    "alerts", "setup", "--webhook", url, "--deployment", DEPLOYMENT, "--rpo", "90s"
                )
                assert setup.returncode == 0, setup
                assert re.search(rf"^{DEPLOYMENT}\s+90s\s+--rpo\s", setup.stdout, re.MULTILINE), setup.stdout
                set_up = datetime.now(UTC)
                # While runs complete, no alert: wait for two more, then pause.
                wait_for(
                    lambda: len(_completed(client, deployment.id, after=set_up)) >= 2,
                    timeout=300,
                    what="two runs completed after the alert's set-up",
                    interval=2,
                    details=served_api.logs,
                )
                assert arrivals.poll() == [], "an RPO alert while runs completed"

                _switch(client, deployment.id, schedule, active=False)
                _settle(client, deployment.id, served_api, kcql)
                # Prefect's scheduler may insert the runs of a schedule it read before the pause
                # just after the pause deleted them (seen in a session where it was busy): they are
                # deleted as they come, so that the pause holds.
                first = wait_for(
                    lambda: (_unstarted(client, deployment.id, kcql), arrivals.poll())[1],
                    timeout=RPO.total_seconds() + 180,
                    what=f"the RPO alert at {url}",
                    interval=0.5,
                    details=lambda: f"received: {received}\n{served_api.logs()}",
                )
                (alerted_at, alert), *_ = first
                before = [r for r in _completed(client, deployment.id) if r.end_time.timestamp() < alerted_at]
                last = before[-1]  # the run of the last commit before the alert

                _switch(client, deployment.id, schedule, active=True)
                resumed = datetime.now(UTC)
                back = wait_for(
                    lambda: _completed(client, deployment.id, after=resumed),
                    timeout=300,
                    what="a run completed after the schedule was resumed",
                    interval=2,
                    details=served_api.logs,
                )[0]
                # The quiet window: from shortly after runs complete again, at least one full RPO
                # (an alert or reminder fired before that run completed may still be on its way).
                quiet_from = back.end_time.timestamp() + 10
                quiet_until = back.end_time.timestamp() + RPO.total_seconds() + 30
                while time.time() < quiet_until:
                    arrivals.poll()
                    time.sleep(1)
                later = [body for at, body in arrivals.poll() if at > quiet_from]
                completed_in_window = _completed(
                    client, deployment.id, after=datetime.fromtimestamp(quiet_from, UTC)
                )
        finally:
            _delete_automations(AUTOMATION_NAME, f"{RPO_AUTOMATION_PREFIX}{DEPLOYMENT}")
        assert client.read_deployment(deployment.id).paused == paused_before

    # The breach came one RPO after the last run's commit (not before; the run ends a moment after
    # its commit), and says so.
    assert alerted_at - last.end_time.timestamp() >= RPO.total_seconds() - 5, (alerted_at, last.end_time)
    body = alert["body"]
    assert (
        f"No run of the backup deployment {DEPLOYMENT} has committed a restore point within its RPO of 90s (90 s)"
        in body
    )
    assert re.search(rf"Last restore point: committed \S+ \S+ by run {last.name} ", body), body
    assert f"/runs/flow-run/{last.id}" in body
    assert f"/deployments/deployment/{deployment.id}?tab=Runs" in body
    # Once runs completed again, a full RPO and more passed without an alert, runs completing in it.
    assert later == [], later
    assert len(completed_in_window) >= 2, completed_in_window
