"""Alerting on the Prefect server: a webhook notification block, an automation that calls it
whenever a run of the backup, restore or drill flow fails, crashes or times out, and one per backup
deployment that calls it when the deployment has committed no restore point within its recovery
point objective (RPO; kbackup/rpo.py chooses it and words the alert).

The RPO automation's trigger is proactive (prefect/server/events/triggers.py): it fires when fewer
than `threshold` (1) `expect`ed events occurred in a window of `within` (the RPO). The event is
the `Completed` state of a run's `write-manifest` task, of a run of the deployment: the commit of
a restore point (every backup run commits one, with or without new records). The same event is also
its `after`, so each commit closes the open window and opens a new one from its own time (the
"same event in `after` and `expect`" case of Prefect's evaluator, as its crash detection uses
heartbeats): the alert fires one RPO after the last commit, and the window keeps that commit's
event as the firing's, which the message names with its run. Without a commit (none since the
automation was created, or since it last fired) the server opens a window from the time it
evaluates, so a breach that lasts is said again about every two RPOs, without a last run. The
server evaluates proactive triggers every PREFECT_SERVER_EVENTS_PROACTIVE_GRANULARITY (5 s by
default).

Why not the flow run's own `prefect.flow-run.Completed`: the server's triggers hold an event until
the event it `follows` has arrived, or for PRECEDING_EVENT_LOOKBACK (15 minutes) when it never
does. The scheduler creates a scheduled run without an event, and when the run leaves its
`Scheduled` state within 5 minutes of it being created (a short interval; any schedule just
after a deploy or a resume), its `Pending` event follows that never-sent event — so its whole
chain of state events, `Completed` included, reaches the triggers 15 minutes late, and a window
that moved on meanwhile ignores it (seen on Prefect 3.9: every run of a 10-second schedule). The
task's events are the run's own (its process sends them all), and the restore point is what an
RPO measures.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from uuid import UUID

from prefect.automations import Automation, EventTrigger, Posture, SendNotification
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.client.orchestration import get_client
from pydantic import BaseModel, ConfigDict

from core.errors import InputError
from kbackup.rpo import RpoChoice, alert_body, alert_subject, choose_rpo, deployment_interval
from tasks.backup.manifest import write_manifest_task

BLOCK_NAME = "kbackup-alerts"
AUTOMATION_NAME = "kbackup-failed-runs"
RPO_AUTOMATION_PREFIX = "kbackup-rpo-"  # + the deployment's full name, e.g. kbackup-rpo-backup/backup
BACKUP_FLOW = "backup"
FLOW_NAMES = ["backup", "restore", "drill"]
FAILURE_EVENTS = {"prefect.flow-run.Failed", "prefect.flow-run.Crashed", "prefect.flow-run.TimedOut"}
COMMIT_EVENT = "prefect.task-run.Completed"
COMMIT_TASK = write_manifest_task.name  # "write-manifest": the task that commits a restore point

SUBJECT = "kbackup: {{ flow.name }} run {{ flow_run.name }} {{ flow_run.state.name }}"
BODY = (
    "Flow run {{ flow_run.name }} of {{ flow.name }}"
    "{% if deployment %} (deployment {{ deployment.name }}){% endif %} ended {{ flow_run.state.name }}: "
    "{{ flow_run.state.message }}\n{{ flow_run|ui_url }}"
)


class DeploymentNotFound(InputError):
    """`--deployment` names no deployment on the server."""

    def __init__(self, name: str, api_url: str) -> None:
        self.name = name
        self.api_url = api_url
        super().__init__(
            f"no deployment {name!r} on {api_url} (names are FLOW/DEPLOYMENT, e.g. backup/backup)"
        )


class RpoAlert(BaseModel):
    """What `setup_rpo_alerts` did for one backup deployment: its automation, or why none."""

    model_config = ConfigDict(frozen=True)

    deployment: str
    choice: RpoChoice
    automation_id: UUID | None = None


def save_block(webhook_url: str) -> UUID:
    """Create or replace the webhook notification block both automations call; returns its id."""
    block = CustomWebhookNotificationBlock(
        name="kbackup",
        url=webhook_url,
        method="POST",
        json_data={"subject": "{{subject}}", "body": "{{body}}"},
        headers=None,
        cookies=None,
        allow_private_urls=True,
    )
    # save() and create() dispatch on the calling context and are typed `X | Coroutine[..., X]`;
    # called here outside any event loop, they run synchronously and return X.
    return cast(UUID, block.save(BLOCK_NAME, overwrite=True))


def _replace(automation: Automation) -> UUID:
    """Create `automation` in place of any of the same name."""
    with get_client(sync_client=True) as client:
        for existing in client.read_automations_by_name(automation.name):
            client.delete_automation(existing.id)
    created = cast(Automation, automation.create())
    assert created.id is not None  # the server gave it one
    return created.id


def setup_alerts(webhook_url: str) -> tuple[str, str]:
    """Create or replace the notification block and the failure automation; returns their ids."""
    block_id = save_block(webhook_url)
    automation = Automation(
        name=AUTOMATION_NAME,
        description="Notify the kbackup webhook when a backup, restore or drill run fails, crashes or times out.",
        trigger=EventTrigger(
            expect=FAILURE_EVENTS,
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.role": "flow", "prefect.resource.name": FLOW_NAMES},
            posture=Posture.Reactive,
            threshold=1,
        ),
        actions=[SendNotification(block_document_id=block_id, subject=SUBJECT, body=BODY)],
    )
    return str(block_id), str(_replace(automation))


def rpo_trigger(deployment_id: UUID, rpo: timedelta) -> EventTrigger:
    """Fires when no run of the deployment committed a restore point within `rpo` of the last
    commit (see the module's docstring for how Prefect evaluates it)."""
    return EventTrigger(
        posture=Posture.Proactive,
        after={COMMIT_EVENT},
        expect={COMMIT_EVENT},
        match={"prefect.resource.id": "prefect.task-run.*", "prefect.resource.name": f"{COMMIT_TASK}-*"},
        match_related={"prefect.resource.id": f"prefect.deployment.{deployment_id}"},
        within=rpo,
        threshold=1,
    )


def rpo_automation(
    block_id: UUID, deployment: str, deployment_id: UUID, rpo: timedelta, ui_url: str
) -> Automation:
    """The RPO automation of one deployment (`deployment`: its full name, FLOW/DEPLOYMENT)."""
    runs_url = f"{ui_url.rstrip('/')}/deployments/deployment/{deployment_id}?tab=Runs"
    return Automation(
        name=f"{RPO_AUTOMATION_PREFIX}{deployment}",
        description=f"Notify the kbackup webhook when {deployment} has committed no restore point within its RPO.",
        trigger=rpo_trigger(deployment_id, rpo),
        actions=[
            SendNotification(
                block_document_id=block_id,
                subject=alert_subject(deployment, rpo),
                body=alert_body(deployment, rpo, runs_url),
            )
        ],
    )


def _backup_deployments(client: Any, names: Sequence[str], api_url: str) -> list[tuple[str, Any]]:
    """(full name, deployment) of the deployments named (a name without a `/` is the backup
    flow's), or of every deployment of the backup flow."""
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.exceptions import ObjectNotFound

    if not names:
        found = client.read_deployments(flow_filter=FlowFilter(name=FlowFilterName(any_=[BACKUP_FLOW])))
        return sorted(((f"{BACKUP_FLOW}/{d.name}", d) for d in found), key=lambda pair: pair[0])
    deployments = []
    for name in names:
        full = name if "/" in name else f"{BACKUP_FLOW}/{name}"
        try:
            deployments.append((full, client.read_deployment_by_name(full)))
        except ObjectNotFound:
            raise DeploymentNotFound(full, api_url) from None
    return deployments


class PlannedRpoAlert(BaseModel):
    """One backup deployment and the RPO its alert will use."""

    model_config = ConfigDict(frozen=True)

    deployment: str
    deployment_id: UUID
    choice: RpoChoice


def plan_rpo_alerts(
    names: Sequence[str] = (), rpo: str | None = None, now: datetime | None = None
) -> list[PlannedRpoAlert]:
    """The backup deployments named (every deployment of the backup flow when none is) and the RPO
    of each: `rpo` (`--rpo`), else the deployment's `rpo` parameter, else twice its active
    schedules' interval, else none (kbackup/rpo.py choose_rpo). Reads the server, creates nothing:
    an unknown deployment (DeploymentNotFound) or a bad RPO (RpoError) is said before anything is."""
    from prefect.settings import PREFECT_API_URL

    now = now or datetime.now(UTC)
    with get_client(sync_client=True) as client:
        found = _backup_deployments(client, names, str(PREFECT_API_URL.value()))
    return [
        PlannedRpoAlert(
            deployment=full,
            deployment_id=deployment.id,
            choice=choose_rpo(
                rpo,
                ((deployment.parameters or {}).get("params") or {}).get("rpo"),
                deployment_interval(deployment.schedules or [], now),
                full,
            ),
        )
        for full, deployment in found
    ]


def setup_rpo_alerts(block_id: UUID, planned: Sequence[PlannedRpoAlert]) -> list[RpoAlert]:
    """Create or replace the RPO automation of each planned deployment that has an RPO; one
    without gets none, and its RpoAlert says why."""
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    ui_url = str(PREFECT_UI_URL.value() or str(PREFECT_API_URL.value()).removesuffix("/api"))
    alerts = []
    for plan in planned:
        automation_id = None
        if plan.choice.rpo is not None:
            automation = rpo_automation(
                block_id, plan.deployment, plan.deployment_id, plan.choice.rpo, ui_url
            )
            automation_id = _replace(automation)
        alerts.append(RpoAlert(deployment=plan.deployment, choice=plan.choice, automation_id=automation_id))
    return alerts
