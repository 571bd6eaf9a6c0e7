"""Alerting: a webhook notification block and an automation that calls it whenever a run of
the backup, restore or drill flow fails, crashes or times out."""

from __future__ import annotations

from typing import cast
from uuid import UUID

from prefect.automations import Automation, EventTrigger, Posture, SendNotification
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.client.orchestration import get_client

BLOCK_NAME = "kbackup-alerts"
AUTOMATION_NAME = "kbackup-failed-runs"
FLOW_NAMES = ["backup", "restore", "drill"]
FAILURE_EVENTS = {"prefect.flow-run.Failed", "prefect.flow-run.Crashed", "prefect.flow-run.TimedOut"}

SUBJECT = "kbackup: {{ flow.name }} run {{ flow_run.name }} {{ flow_run.state.name }}"
BODY = (
    "Flow run {{ flow_run.name }} of {{ flow.name }}"
    "{% if deployment %} (deployment {{ deployment.name }}){% endif %} ended {{ flow_run.state.name }}: "
    "{{ flow_run.state.message }}\n{{ flow_run|ui_url }}"
)


def setup_alerts(webhook_url: str) -> tuple[str, str]:
    """Create or replace the notification block and the automation; returns their ids."""
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
    block_id = cast(UUID, block.save(BLOCK_NAME, overwrite=True))
    with get_client(sync_client=True) as client:
        for existing in client.read_automations_by_name(AUTOMATION_NAME):
            client.delete_automation(existing.id)
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
    created = cast(Automation, automation.create())
    return str(block_id), str(created.id)
