"""User story: an operator starts a long backup from the command line against the team's Prefect
server and watches it in the Prefect UI: the flow run's progress artifact shows how far it is, and
moves while the backup runs. Headless Chromium (Debian's package, `make browser`) takes a screenshot
of the running backup's progress."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from tests.e2e.conftest import ServedPrefect, wait_for
from tests.support.cli import alarming_lines, kbackup_command, user_environment
from tests.support.kafka import produce

pytestmark = pytest.mark.timeout(1200)

CHROMIUM = "/usr/bin/chromium"  # Debian's package (`make browser`); nothing downloads a browser
RECORDS = 2_000_000  # two partitions of small records: an export of several seconds here


def _cli_run(client: Any, kcql: str) -> Any:
    """The flow run `kbackup backup --kcql KCQL` recorded on the API, once it exists."""
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["backup"])))
    return next((run for run in runs if (run.parameters.get("params") or {}).get("kcql") == kcql), None)


def _progress_artifact(client: Any, flow_run_id: UUID) -> Any:
    """The flow run's progress artifact, once it exists."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterType

    artifacts = client.read_artifacts(
        artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
            type=ArtifactFilterType(any_=["progress"]),
        )
    )
    return artifacts[0] if artifacts else None


def _progress(client: Any, flow_run_id: UUID) -> float | None:
    """The flow run's progress artifact's value (percent), once it exists."""
    artifact = _progress_artifact(client, flow_run_id)
    return float(artifact.data) if artifact else None


def _shown_progress(page: Any) -> int:
    """The percent the artifact's page shows ("Progress: 42%")."""
    from playwright.sync_api import expect

    shown = page.get_by_text(re.compile(r"Progress: \d+%")).first  # a text node beside others
    expect(shown).to_be_visible(timeout=90_000)
    return int(re.search(r"Progress: (\d+)%", shown.inner_text()).group(1))  # type: ignore[union-attr]


def test_the_running_backups_progress_moves_in_the_prefect_ui(
    served_api: ServedPrefect,
    record_property: Any,
    kafka_config: dict[str, Any],
    create_topic: Any,
    bucket: str,
    tmp_path: Path,
) -> None:
    from playwright.sync_api import sync_playwright
    from prefect.client.orchestration import get_client

    topic = create_topic("progress", partitions=2)
    produce(
        kafka_config,
        topic,
        ({"partition": i % 2, "key": f"k{i:07d}".encode(), "value": b"v" * 64} for i in range(RECORDS)),
    )
    kcql = f"INSERT INTO {bucket}:p SELECT * FROM `{topic}` STOREAS AVRO PROPERTIES('store.envelope'=true, 'flush.count'=5000)"
    shot = tmp_path / "backup-progress-running.png"
    stdout, stderr = tmp_path / "kbackup.stdout", tmp_path / "kbackup.stderr"
    seen: list[tuple[float, float | None, str]] = []  # (time, artifact value, run state) while polling

    def output() -> str:
        return (
            f"--- stdout\n{stdout.read_text()}\n--- stderr\n{stderr.read_text()[-6000:]}\n{served_api.logs()}"
        )

    with sync_playwright() as playwright, get_client(sync_client=True) as client:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(90_000)
            page.goto(served_api.ui_url)  # the UI's assets load before the backup starts
            with stdout.open("w") as out, stderr.open("w") as err:
                backup = subprocess.Popen(
                    kbackup_command("backup", "--concurrency", "2", "--kcql", kcql),
                    cwd=tmp_path,
                    env=user_environment(tmp_path, {"PREFECT_API_URL": served_api.api_url}),
                    stdout=out,
                    stderr=err,
                    stdin=subprocess.DEVNULL,
                )
            try:

                def progress_while_running(above: float) -> float | None:
                    """The artifact's value once it is above `above` and below 100; fails at once
                    if the backup ended first."""
                    run = _cli_run(client, kcql)
                    value = _progress(client, run.id) if run else None
                    seen.append((time.monotonic(), value, run.state.type.value if run and run.state else "-"))
                    if backup.poll() is not None:
                        pytest.fail(
                            f"the backup ended before its progress passed {above} %: {seen}\n{output()}"
                        )
                    return value if value is not None and above < value < 100 else None

                def while_running(found: Any) -> Any:
                    if not found and backup.poll() is not None:
                        pytest.fail(f"the backup ended first\n{output()}")
                    return found

                run = wait_for(
                    lambda: while_running(_cli_run(client, kcql)),
                    timeout=300,
                    what="the backup's flow run",
                    interval=0.5,
                    details=output,
                )
                # The artifact's page opens while the export starts (worker processes take seconds).
                artifact = wait_for(
                    lambda: while_running(_progress_artifact(client, run.id)),
                    timeout=300,
                    what="the progress artifact",
                    interval=0.5,
                    details=output,
                )
                page.goto(f"{served_api.ui_url}/artifacts/artifact/{artifact.id}")
                _shown_progress(page)
                first = wait_for(
                    lambda: progress_while_running(1.0),  # the page shows whole percents
                    timeout=300,
                    what="the progress artifact to show the running backup part done",
                    interval=0.5,
                    details=output,
                )
                page.reload()
                shown_first = _shown_progress(page)
                page.screenshot(path=shot)
                state = client.read_flow_run(run.id).state
                state_at_shot = state.type.value if state else "-"
                record_property("screenshot", str(shot))
                print(f"screenshot of the running backup's progress ({shown_first} %): {shot}")
                later = wait_for(
                    lambda: progress_while_running(max(first, shown_first + 1.0)),
                    timeout=120,
                    what=f"the progress artifact to move past {first} %",
                    interval=0.5,
                    details=output,
                )
                page.reload()
                shown_later = _shown_progress(page)
                page.screenshot(path=tmp_path / "backup-progress-later.png")
                backup.wait(timeout=600)
            finally:
                if backup.poll() is None:  # a failed assertion: stop the backup as Ctrl-C would
                    backup.terminate()
                    try:
                        backup.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        backup.kill()
                        backup.wait()
        except BaseException:
            page.screenshot(path=tmp_path / "failure.png")
            print(f"screenshot: {tmp_path / 'failure.png'}")
            raise
        finally:
            browser.close()
        final = _progress(client, run.id)

    print(f"progress seen (monotonic s, %, state): {seen}")
    assert state_at_shot == "RUNNING", f"the screenshot shows a run that was {state_at_shot}"
    assert shot.stat().st_size > 10_000
    assert 1 < first < later < 100  # through the API, while the backup ran
    assert 0 < shown_first < shown_later <= 100  # on the page: moved (maybe done by the reload)
    assert final == 100.0
    result = subprocess.CompletedProcess(
        backup.args, backup.returncode, stdout.read_text(), stderr.read_text()
    )
    assert result.returncode == 0, output()
    assert not alarming_lines(result), output()
    assert f"{RECORDS} records" in result.stdout
    assert "\x1b[" not in result.stdout + result.stderr  # not a terminal: plain text, no live display
    print(
        "progress lines of the command:",
        *re.findall(r"^.* progress .*$", result.stderr, re.MULTILINE),
        sep="\n",
    )
