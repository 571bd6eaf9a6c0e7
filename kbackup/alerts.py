"""Alerting: a webhook notification block and an automation that calls it whenever a run of
the backup or restore flow fails, crashes or times out."""

from __future__ import annotations

from prefect.automations import Automation, EventTrigger, SendNotification
from prefect.blocks.notifications import CustomWebhookNotificationBlock

BLOCK_NAME = "kbackup-alerts"
AUTOMATION_NAME = "kbackup-failed-runs"
FLOW_NAMES = ["backup", "restore"]
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
        allow_private_urls=True,
    )
    block_id = block.save(BLOCK_NAME, overwrite=True)
    for existing in Automation.read(name=AUTOMATION_NAME) if _exists(AUTOMATION_NAME) else []:
        existing.delete()
    automation = Automation(
        name=AUTOMATION_NAME,
        description="Notify the kbackup webhook when a backup or restore run fails, crashes or times out.",
        trigger=EventTrigger(
            expect=FAILURE_EVENTS,
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.role": "flow", "prefect.resource.name": FLOW_NAMES},
            posture="Reactive",
            threshold=1,
        ),
        actions=[SendNotification(block_document_id=block_id, subject=SUBJECT, body=BODY)],
    ).create()
    return str(block_id), str(automation.id)


def _exists(name: str) -> bool:
    try:
        Automation.read(name=name)
    except ValueError:
        return False
    return True
