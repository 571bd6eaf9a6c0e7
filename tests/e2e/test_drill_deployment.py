"""The `drill/drill` deployment as `make serve` serves it (scripts/serve.sh, prefect.yaml): a drill
of a backup with one damaged object fails its flow run, which calls the alert webhook naming the
run and the object; a drill of a good backup shows its evidence in the Prefect UI (the
`kbackup-drill` artifact, screenshot by headless Chromium, Debian's package as in
test_progress_ui.py) and leaves it in the bucket."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from layout.drills import DrillEvidence, drills_prefix
from tasks.lifecycle.drill import ARTIFACT_KEY
from tasks.services.manifest_store import read_chain
from tests.e2e.conftest import ServedPrefect, wait_for_alert, wait_for_final_state
from tests.support.cli import assert_clean_success, run_kbackup
from tests.support.kafka import produce
from tests.support.webhooks import webhook_receiver

pytestmark = pytest.mark.timeout(1200)

CHROMIUM = "/usr/bin/chromium"


def _backup(
    served: ServedPrefect, kafka_config: dict[str, Any], create_topic: Any, bucket: str, cwd: Path
) -> str:
    """A topic of 2 partitions backed up under `nightly` by the installed `kbackup backup`."""
    topic = create_topic("drilldep", partitions=2)
    produce(
        kafka_config,
        topic,
        ({"key": f"k{i:04d}".encode(), "value": f"v{i}".encode(), "partition": i % 2} for i in range(120)),
    )
    kcql = (
        f"INSERT INTO {bucket}:nightly SELECT * FROM `{topic}` STOREAS AVRO "
        "PROPERTIES('store.envelope'=true, 'flush.count'=30)"
    )
    assert_clean_success(
        run_kbackup("backup", "--kcql", kcql, cwd=cwd, env={"PREFECT_API_URL": served.api_url})
    )
    return topic


def _run_drill(client: Any, served: ServedPrefect, bucket: str) -> Any:
    deployment = client.read_deployment_by_name("drill/drill")
    run = client.create_flow_run_from_deployment(
        deployment.id, parameters={"params": {"bucket": bucket, "prefix": "nightly", "concurrency": 2}}
    )
    return wait_for_final_state(client, run.id, served)


def _drill_artifact(client: Any, flow_run_id: Any) -> Any:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    artifacts = client.read_artifacts(
        artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
            key=ArtifactFilterKey(any_=[ARTIFACT_KEY]),
        )
    )
    return artifacts[0] if artifacts else None


def _evidence(s3: Any, bucket: str) -> DrillEvidence:
    [listed] = s3.list_objects_v2(Bucket=bucket, Prefix=drills_prefix("nightly"))["Contents"]
    return DrillEvidence.model_validate_json(s3.get_object(Bucket=bucket, Key=listed["Key"])["Body"].read())


def test_a_failed_drill_run_calls_the_alert_webhook_naming_the_object(
    served_api: ServedPrefect,
    kafka_config: dict[str, Any],
    create_topic: Any,
    bucket: str,
    s3: Any,
    store: Any,
    tmp_path: Path,
) -> None:
    from prefect.automations import Automation
    from prefect.client.orchestration import get_client

    from kbackup.alerts import AUTOMATION_NAME, setup_alerts

    _backup(served_api, kafka_config, create_topic, bucket, tmp_path)
    [manifest] = read_chain(store, bucket, "nightly")
    damaged = manifest.partitions[0].objects[-1].key
    data = bytearray(s3.get_object(Bucket=bucket, Key=damaged)["Body"].read())
    data[-10] ^= 0xFF
    s3.put_object(Bucket=bucket, Key=damaged, Body=bytes(data))

    with webhook_receiver() as (url, received), get_client(sync_client=True) as client:
        setup_alerts(url)
        try:
            finished = _run_drill(client, served_api, bucket)
            assert finished.state.is_failed(), f"{finished.state!r}\n{served_api.logs()}"
            assert damaged in (finished.state.message or ""), finished.state.message
            alert = wait_for_alert(received, finished.name, url, served_api)
        finally:
            Automation.read(name=AUTOMATION_NAME).delete()
    assert alert["subject"] == f"kbackup: drill run {finished.name} Failed"
    assert f"Flow run {finished.name} of drill (deployment drill) ended Failed:" in alert["body"]
    assert damaged in alert["body"]
    evidence = _evidence(s3, bucket)
    assert evidence.result == "failed" and damaged in (evidence.problem or "")
    assert evidence.cleanup.problems == ()


def test_the_drills_evidence_is_shown_in_the_prefect_ui(
    served_api: ServedPrefect,
    record_property: Any,
    kafka_config: dict[str, Any],
    create_topic: Any,
    bucket: str,
    s3: Any,
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect, sync_playwright
    from prefect.client.orchestration import get_client

    topic = _backup(served_api, kafka_config, create_topic, bucket, tmp_path)
    with get_client(sync_client=True) as client:
        finished = _run_drill(client, served_api, bucket)
        assert finished.state.is_completed(), f"{finished.state!r}\n{served_api.logs()}"
        artifact = _drill_artifact(client, finished.id)
    assert artifact is not None
    evidence = _evidence(s3, bucket)
    assert evidence.result == "passed" and evidence.records == 120
    heading = f"Restore drill {evidence.drill_id}: PASSED"
    assert heading in artifact.data

    shot = tmp_path / "drill-evidence.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            page.set_default_timeout(90_000)
            page.goto(f"{served_api.ui_url}/artifacts/artifact/{artifact.id}")
            expect(page.get_by_text(heading)).to_be_visible()
            expect(page.get_by_text(f"drill-{evidence.drill_id}-*")).to_be_visible()  # the scratch topics
            expect(page.get_by_role("cell", name=topic, exact=True).first).to_be_visible()
            expect(
                page.get_by_text(f"s3://{bucket}/nightly/_drills/{evidence.drill_id}.json")
            ).to_be_visible()
            shown = page.locator("body").inner_text()
            page.screenshot(path=shot, full_page=True)
        except BaseException:
            page.screenshot(path=tmp_path / "failure.png")
            print(f"screenshot: {tmp_path / 'failure.png'}")
            raise
        finally:
            browser.close()
    record_property("screenshot", str(shot))
    print(f"screenshot of the drill's evidence: {shot}")
    assert shot.stat().st_size > 10_000
    assert f"restore point {evidence.backup_id}" in shown
    assert "Clean-up" in shown and "scratch topics deleted: 1" in shown
    assert "records/s" in shown and "60 / 60" in shown  # each partition: the manifest's records, read back
