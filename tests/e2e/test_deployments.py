"""User stories of the deployments as `make serve` serves them (server, process worker, prefect.yaml):
a failing backup calls the alert webhook; the scheduled backup chains incremental manifests; an
operator restores a backup from the UI's "Custom run" form in headless Chromium."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from tasks.services.manifest_store import read_chain
from tests.e2e.conftest import FINAL_STATES, ServedPrefect, wait_for, wait_for_alert, wait_for_final_state
from tests.support.kafka import consume_all, high_watermarks, produce
from tests.support.restore_backups import build_backup
from tests.support.topics import topic_digests, tricky_messages
from tests.support.webhooks import webhook_receiver

pytestmark = pytest.mark.timeout(1200)

CHROMIUM = "/usr/bin/chromium"  # Debian's package (`make browser`); nothing downloads a browser


def deployment_runs(client: Any, deployment_id: UUID) -> list[Any]:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    return client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
    )


def test_failed_backup_calls_the_alert_webhook(
    served_api: ServedPrefect, create_topic: Any, unique_name: Any
) -> None:
    from prefect.automations import Automation
    from prefect.client.orchestration import get_client

    from kbackup.alerts import AUTOMATION_NAME, setup_alerts

    topic = create_topic("alert")
    missing = unique_name("nobucket")
    kcql = f"INSERT INTO {missing}:nightly SELECT * FROM `{topic}` STOREAS AVRO PROPERTIES('store.envelope'=true)"
    with webhook_receiver() as (url, received), get_client(sync_client=True) as client:
        setup_alerts(url)
        try:
            deployment = client.read_deployment_by_name("backup/backup")
            run = client.create_flow_run_from_deployment(deployment.id, parameters={"params": {"kcql": kcql}})
            finished = wait_for_final_state(client, run.id, served_api)
            assert finished.state.is_failed(), f"{finished.state!r}\n{served_api.logs()}"
            assert missing in (finished.state.message or "")

            alert = wait_for_alert(received, finished.name, url, served_api)
        finally:
            Automation.read(name=AUTOMATION_NAME).delete()
    assert alert["subject"] == f"kbackup: backup run {finished.name} Failed"
    body = alert["body"]
    assert f"Flow run {finished.name} of backup (deployment backup) ended Failed:" in body
    assert f"bucket {missing!r} does not exist" in body
    assert f"/runs/flow-run/{finished.id}" in body


def _messages(first: int, count: int) -> Iterator[dict[str, Any]]:
    for i in range(first, first + count):
        yield {"partition": i % 2, "key": f"k{i:05d}".encode(), "value": f"v{i}".encode() * 10}


def _covered(manifests: list[Any], topic: str, watermarks: list[tuple[int, int]]) -> bool:
    """The latest manifest ends at every partition's high watermark."""
    if not manifests:
        return False
    last = manifests[-1]
    return all(
        (entry := last.partition(topic, p)) is not None and entry.end_offset == high
        for p, (_, high) in enumerate(watermarks)
    )


def test_scheduled_backup_chains_incremental_manifests(
    served_api: ServedPrefect,
    kafka_config: dict[str, Any],
    create_topic: Any,
    bucket: str,
    s3: Any,
    store: Any,
) -> None:
    """The scheduled runs take their KCQL from the Prefect Variable when they start: serve.sh
    deployed with the demo's KCQL in it, the test sets its own afterwards (no redeploy), and an edit
    of the Variable redirects the very next scheduled run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.client.schemas.schedules import IntervalSchedule
    from prefect.variables import Variable

    from flows.backup import KCQL_VARIABLE

    topic = create_topic("sched", partitions=2)
    first_batch, second_batch = 300, 200
    produce(kafka_config, topic, _messages(0, first_batch))

    def kcql(prefix: str) -> str:
        return f"INSERT INTO {bucket}:{prefix} SELECT * FROM `{topic}` STOREAS AVRO PROPERTIES('store.envelope'=true)"

    deployed_kcql = Variable.get(KCQL_VARIABLE)
    assert bucket not in deployed_kcql  # what `prefect deploy` saw is the demo's KCQL
    Variable.set(KCQL_VARIABLE, kcql("hourly"), overwrite=True)
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("backup/backup")
        assert "kcql" not in (deployment.parameters or {})["params"]  # nothing resolved at deploy time
        original = client.read_deployment_schedules(deployment.id)
        assert [s.schedule.cron for s in original] == ["0 0 1 1 *"]  # the cron prefect.yaml deployed
        for schedule in original:
            client.delete_deployment_schedule(deployment.id, schedule.id)
        (schedule,) = client.create_deployment_schedules(
            deployment.id,
            [
                DeploymentScheduleCreate(
                    schedule=IntervalSchedule(interval=timedelta(seconds=10)), active=True
                )
            ],
        )
        try:

            def completed_scheduled_runs() -> list[Any]:
                return [
                    r
                    for r in deployment_runs(client, deployment.id)
                    if r.auto_scheduled and r.state is not None and r.state.is_completed()
                ]

            wait_for(
                completed_scheduled_runs,
                timeout=420,
                what="the first scheduled backup run",
                interval=2,
                details=served_api.logs,
            )
            first = read_chain(store, bucket, "hourly")
            assert first, "a completed backup run left no manifest"
            assert first[0].previous_backup_id is None
            assert first[0].record_count == first_batch

            produce(kafka_config, topic, _messages(first_batch, second_batch))
            watermarks = high_watermarks(kafka_config, topic, 2)
            chain = wait_for(
                lambda: (c := read_chain(store, bucket, "hourly")) and _covered(c, topic, watermarks) and c,
                timeout=420,
                what="a scheduled backup run that covers the second batch",
                interval=2,
                details=served_api.logs,
            )
            # The manifest is written before the run reports Completed.
            runs = wait_for(
                lambda: (done := completed_scheduled_runs()) and len(done) >= 2 and done,
                timeout=120,
                what="the second scheduled backup run to complete",
                interval=2,
                details=served_api.logs,
            )

            # An edit in the UI (the Variable) reaches the next scheduled run without a redeploy.
            Variable.set(KCQL_VARIABLE, kcql("edited"), overwrite=True)
            edited = wait_for(
                lambda: read_chain(store, bucket, "edited"),
                timeout=300,
                what="a scheduled backup run with the edited KCQL",
                interval=2,
                details=served_api.logs,
            )
        finally:
            Variable.set(KCQL_VARIABLE, deployed_kcql, overwrite=True)
            _stop_schedule(client, deployment.id, schedule.id, served_api)

    assert all("kcql" not in r.parameters["params"] for r in runs)
    # The edited KCQL started a chain of its own under the new prefix, with every record in it.
    assert edited[0].previous_backup_id is None
    assert edited[0].record_count == first_batch + second_batch
    # The chain: every manifest continues the previous one where it ended.
    assert len(chain) >= 2
    assert chain[0].backup_id == first[0].backup_id
    assert chain[1].previous_backup_id == chain[0].backup_id
    for previous, manifest in zip(chain, chain[1:], strict=False):
        assert manifest.previous_backup_id == previous.backup_id
        for entry in manifest.partitions:
            before = previous.partition(topic, entry.partition)
            assert before is not None
            assert entry.start_offset == before.end_offset
    # Together the manifests cover every record once: contiguous objects from 0 to the end.
    assert sum(m.record_count for m in chain) == first_batch + second_batch
    for partition, (low, high) in enumerate(watermarks):
        assert low == 0
        objects = sorted(
            (obj for m in chain for obj in m.partition(topic, partition).objects),
            key=lambda o: o.first_offset,
        )
        assert objects[0].first_offset == 0
        assert objects[-1].last_offset == high - 1
        for previous, obj in zip(objects, objects[1:], strict=False):
            assert obj.first_offset == previous.last_offset + 1
        assert sum(o.record_count for o in objects) == high
        for obj in objects:
            assert s3.head_object(Bucket=bucket, Key=obj.key)["ContentLength"] == obj.size


def _stop_schedule(client: Any, deployment_id: UUID, schedule_id: UUID, served: ServedPrefect) -> None:
    """Delete the test's schedule and the runs it queued; let a run that already started finish."""
    client.delete_deployment_schedule(deployment_id, schedule_id)

    def settled() -> bool:
        pending = [
            r
            for r in deployment_runs(client, deployment_id)
            if r.state and r.state.type.value not in FINAL_STATES
        ]
        for run in pending:
            if run.state.type.value == "SCHEDULED":  # queued, late or awaiting the concurrency slot
                client.delete_flow_run(run.id)
        return not pending

    wait_for(
        settled, timeout=300, what="the scheduled backup runs to settle", interval=2, details=served.logs
    )


def _runs_with_kcql(client: Any, deployment_id: UUID, kcql: str) -> list[Any]:
    return [
        run
        for run in deployment_runs(client, deployment_id)
        if (run.parameters.get("params") or {}).get("kcql") == kcql
    ]


def test_restore_from_the_ui_custom_run(
    served_api: ServedPrefect,
    kafka_config: dict[str, Any],
    s3: Any,
    filled_topic: Any,
    bucket: str,
    target_topic: Any,
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect, sync_playwright
    from prefect.client.orchestration import get_client

    # Tricky records, stamped now: a restored record from 2000 would soon be deleted by retention.
    tricky = tricky_messages(partitions=2, random_per_partition=40)
    source = filled_topic("ui", 2, ({k: v for k, v in m.items() if k != "timestamp"} for m in tricky))
    build_backup(s3, kafka_config, source, 2, bucket, "ui", fmt="AVRO", per_object=25)
    target = target_topic("restored")
    kcql = f"INSERT INTO `{target}` SELECT * FROM {bucket}:ui PROPERTIES('store.envelope'=true)"
    form_shot, run_shot = tmp_path / "restore-custom-run-form.png", tmp_path / "restore-custom-run.png"

    with sync_playwright() as playwright, get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("restore/restore")
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        events: list[str] = []
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", lambda m: events.append(f"{time.monotonic():.1f} console {m.type}: {m.text}"))
            page.on(
                "response",
                lambda r: events.append(f"{time.monotonic():.1f} {r.status} {r.request.method} {r.url}"),
            )
            page.set_default_timeout(90_000)
            page.goto(served_api.ui_url)
            page.get_by_role("link", name="Deployments", exact=True).click()
            page.get_by_role("link", name="restore", exact=True).first.click()
            page.wait_for_url(re.compile(r"/deployments/deployment/"))
            page.get_by_role("button", name="Run", exact=True).click()
            page.get_by_role("menuitem", name="Custom run").click()
            kcql_field = page.get_by_label("Kcql", exact=True)
            kcql_field.fill(kcql)
            expect(kcql_field).to_have_value(kcql)
            page.screenshot(path=form_shot)
            submit = page.get_by_role("button", name="Submit", exact=True)

            def created_run(timeout: float, after: str, fail: bool = True) -> list[Any]:
                return wait_for(
                    lambda: _runs_with_kcql(client, deployment.id, kcql),
                    timeout=timeout,
                    what=f"the flow run the Custom run form creates{after}",
                    details=lambda: served_api.logs() + "\n" + "\n".join(events[-80:]),
                    fail=fail,
                )

            submit.click()
            # The UI confirms with a toast whose "View run" button lives 5 s; the run the form
            # created is found through the API instead and opened by its URL. Prefect's V2 form
            # was seen (once in five full runs) to let a click on Submit go without creating a
            # run: then the form is submitted once more, with a screenshot of what it showed.
            created = created_run(30, "", fail=False)
            if not created:
                page.screenshot(path=tmp_path / "after-first-submit.png")
                print(f"no run 30 s after Submit; screenshot {tmp_path / 'after-first-submit.png'}")
                submit.click()
                created = created_run(90, " (second Submit)")
            assert len(created) == 1, created
            page.goto(f"{served_api.ui_url}/runs/flow-run/{created[0].id}")
            run = wait_for_final_state(client, created[0].id, served_api)
            page.reload()
            expect(page.get_by_text("Completed", exact=True).first).to_be_visible()
            page.screenshot(path=run_shot)
            print(f"screenshots: {form_shot} {run_shot}")
        except BaseException:
            page.screenshot(path=tmp_path / "failure.png")
            print(f"screenshot: {tmp_path / 'failure.png'}\n" + "\n".join(events[-80:]))
            raise
        finally:
            browser.close()

    assert run.state.is_completed(), f"{run.state!r}\n{served_api.logs()}"
    assert run.deployment_id == deployment.id
    assert run.parameters["params"]["kcql"] == kcql
    source_messages = consume_all(kafka_config, source, 2)
    restored = wait_for(lambda: consume_all(kafka_config, target, 2), timeout=60, what=f"records in {target}")
    assert len(restored) == len(source_messages) == 13 + 2 * 40
    assert topic_digests(restored) == topic_digests(source_messages)


def test_the_daily_prune_deployment_prunes_a_prefix(
    served_api: ServedPrefect,
    kafka_config: dict[str, Any],
    store: Any,
    filled_topic: Any,
    bucket: str,
) -> None:
    """prefect.yaml's prune deployment: daily, parameters from serve.sh's environment; a run with
    a policy of its own drops the older chain and leaves its report as an artifact."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    from flows.backup import BackupParameters, backup_flow

    topic = filled_topic("prune", 1, ({"key": f"k{i}".encode(), "value": b"v"} for i in range(30)))
    kcql = (
        f"INSERT INTO {bucket}:daily SELECT * FROM `{topic}` STOREAS AVRO PROPERTIES('store.envelope'=true)"
    )
    backup_flow(BackupParameters(kcql=kcql))
    backup_flow(BackupParameters(kcql=kcql, full=True))
    older, newer = read_chain(store, bucket, "daily")
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("prune/prune")
        assert [s.schedule.cron for s in client.read_deployment_schedules(deployment.id)] == ["0 0 1 1 *"]
        assert deployment.parameters["params"]["keep_within"] == "30d"
        assert deployment.parameters["params"]["bucket"] == "demo-backups"
    run = run_deployment(
        "prune/prune",
        parameters={"params": {"bucket": bucket, "prefix": "daily", "keep_last": 1}},
        timeout=300,
    )
    assert run.state is not None and run.state.is_completed(), f"{run.state!r}\n{served_api.logs()}"
    assert [m.backup_id for m in read_chain(store, bucket, "daily")] == [newer.backup_id]
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
        )
    summaries = [a for a in artifacts if a.key == "prune-summary"]
    assert summaries and older.backup_id in str(summaries[0].data)


def _flow_run_pids(flow_run_id: UUID) -> list[int]:
    """The processes running this flow run (the worker starts them with PREFECT__FLOW_RUN_ID)."""
    marker = f"PREFECT__FLOW_RUN_ID={flow_run_id}".encode()
    pids = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker in environ.read_bytes().split(b"\0"):
                pids.append(int(environ.parent.name))
        except OSError:
            continue
    return pids


def test_cancelling_a_backup_run_stops_its_exports_at_once(
    served_api: ServedPrefect, kafka_config: dict[str, Any], create_topic: Any, bucket: str, s3: Any
) -> None:
    """Cancel from the UI (the API it calls): the worker sends the flow-run process SIGTERM;
    Prefect's bridge unwinds the flow and the exports stop with it instead of running to the end,
    so the process is gone within seconds and no manifest is written."""
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelling

    from tests.support.cli import is_running

    topic = create_topic("cancel", partitions=2)
    # Many small records: the export runs on for about 10 s after the cancel here, so a process that
    # waits for its exports to finish is told apart from one that stops them (about 1.5 s).
    produce(
        kafka_config,
        topic,
        ({"partition": i % 2, "key": f"k{i:07d}".encode(), "value": b"v" * 64} for i in range(1_000_000)),
    )
    kcql = f"INSERT INTO {bucket}:c SELECT * FROM `{topic}` STOREAS AVRO PROPERTIES('store.envelope'=true, 'flush.count'=5000)"
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("backup/backup")
        run = client.create_flow_run_from_deployment(deployment.id, parameters={"params": {"kcql": kcql}})
        wait_for(
            lambda: s3.list_objects_v2(Bucket=bucket, Prefix=f"c/{topic}/").get("KeyCount", 0),
            timeout=300,
            what="the backup run's first object",
            interval=0.5,
            details=served_api.logs,
        )
        pids = wait_for(lambda: _flow_run_pids(run.id), timeout=30, what="the flow run's process")
        client.set_flow_run_state(run.id, Cancelling(), force=True)
        cancelled = time.monotonic()
        wait_for(
            lambda: not any(is_running(pid) for pid in pids),
            timeout=60,
            what="the cancelled flow run's process to exit",
            interval=0.2,
            details=served_api.logs,
        )
        took = time.monotonic() - cancelled
        finished = wait_for_final_state(client, run.id, served_api, timeout=120)
    assert took < 5, f"the cancelled run's process took {took:.1f} s to exit\n{served_api.logs()}"
    assert finished.state.type.value in ("CANCELLED", "CRASHED"), finished.state
    manifests = s3.list_objects_v2(Bucket=bucket, Prefix="c/_manifests/", Delimiter="/")
    assert not manifests.get("Contents"), "a cancelled backup committed a manifest"
