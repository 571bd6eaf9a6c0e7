"""The deployments as `make serve` serves them: a Prefect server, the process work pool, both
deployments from prefect.yaml and a worker, started by scripts/serve.sh — but isolated in a temporary
stack folder on a free port, and stopped by scripts/stack-down.sh, by pid, at the end of the session."""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from tests.support.cli import run_kbackup

REPO = Path(__file__).resolve().parents[2]

FINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}

Kbackup = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def kbackup(tmp_path: Path) -> Kbackup:
    """The installed `kbackup` script, run from a temporary folder against the test session's
    Prefect API (the tests that use it request `prefect_harness`)."""
    from prefect.settings import PREFECT_API_URL

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return run_kbackup(*args, cwd=tmp_path, env={"PREFECT_API_URL": str(PREFECT_API_URL.value())})

    return run


@dataclass(frozen=True)
class ServedPrefect:
    """A running server + worker: where to reach them and where their logs are."""

    api_url: str
    ui_url: str
    stack_dir: Path

    def logs(self) -> str:
        """The server, deploy and worker logs, for an assertion message."""
        return "\n".join(
            f"--- {log.name} (last 4000 characters)\n{log.read_text(errors='replace')[-4000:]}"
            for log in sorted((self.stack_dir / "logs").glob("*.log"))
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def served_prefect(
    stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServedPrefect]:
    """scripts/serve.sh in a temporary KBACKUP_STACK_DIR on a free port, with fast scheduler and
    worker loops; scripts/stack-down.sh stops exactly what it started."""
    stack_dir = tmp_path_factory.mktemp("served-prefect")
    stack_file = stack_dir / "stack.env"
    stack_file.write_text(
        "".join(f"export {name}={shlex.quote(value)}\n" for name, value in stack_env.items())
    )
    port = _free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("PREFECT_")}
    env.update(
        KBACKUP_STACK_DIR=str(stack_dir),
        KBACKUP_STACK_ENV=str(stack_file),
        KBACKUP_STACK_PREFECT_PORT=str(port),
        # The tests give the backup deployment a schedule of their own; the deployed cron must not
        # fire meanwhile (hourly by default — a run of the demo KCQL at the top of the hour).
        KBACKUP_BACKUP_CRON="0 0 1 1 *",
        KBACKUP_PRUNE_CRON="0 0 1 1 *",  # the daily prune's too: the tests run it when they want
        KBACKUP_DRILL_CRON="0 0 1 1 *",  # and the weekly drill's
        # serve.sh sets up the alerts as `make serve` does with a webhook (the discard port: nothing
        # listens; the alert tests set up their own receiver); tests/e2e/test_rpo_alert.py checks it.
        KBACKUP_ALERT_WEBHOOK="http://127.0.0.1:9/kbackup-alerts",
        PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="2",
        PREFECT_SERVER_SERVICES_SCHEDULER_RECENT_DEPLOYMENTS_LOOP_SECONDS="2",
        PREFECT_WORKER_QUERY_SECONDS="2",
        PREFECT_WORKER_PREFETCH_SECONDS="5",
    )
    served = ServedPrefect(
        api_url=f"http://127.0.0.1:{port}/api", ui_url=f"http://127.0.0.1:{port}", stack_dir=stack_dir
    )
    try:
        started = subprocess.run(
            [str(REPO / "scripts" / "serve.sh")],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert started.returncode == 0, (
            f"serve.sh failed:\n{started.stdout}\n{started.stderr}\n{served.logs()}"
        )
        yield served
    finally:
        subprocess.run(
            [str(REPO / "scripts" / "stack-down.sh")],
            env={**env, "KBACKUP_STACK_DIR": str(stack_dir)},
            cwd=REPO,
            timeout=300,
        )


@pytest.fixture
def served_api(served_prefect: ServedPrefect) -> Iterator[ServedPrefect]:
    """PREFECT_API_URL points at the served server for this test (and back afterwards), so that
    clients, blocks and automations created in the test talk to it."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: served_prefect.api_url}):
        yield served_prefect


def wait_for(
    condition: Callable[[], Any],
    timeout: float,
    what: str,
    interval: float = 1.0,
    details: Callable[[], str] = str,
    fail: bool = True,
) -> Any:
    """Poll `condition` until it returns something truthy (returned), or fail after `timeout` seconds
    (with `fail=False`, return the last falsy value instead)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            if not fail:
                return value
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{details()}")
        time.sleep(interval)


def wait_for_final_state(client: Any, flow_run_id: UUID, served: ServedPrefect, timeout: float = 600) -> Any:
    """The flow run once it reached a final state."""

    def final() -> Any:
        run = client.read_flow_run(flow_run_id)
        return run if run.state is not None and run.state.type.value in FINAL_STATES else None

    return wait_for(final, timeout, f"flow run {flow_run_id} to finish", interval=2, details=served.logs)


def wait_for_alert(received: list[dict[str, Any]], run_name: str, url: str, served: ServedPrefect) -> Any:
    """The webhook body (tests/support/webhooks.py) that names the flow run `run_name`, once it came."""
    return wait_for(
        lambda: next((body for body in received if run_name in body.get("body", "")), None),
        timeout=180,
        what=f"the alert for {run_name} at {url}",
        details=lambda: f"received: {received}\n{served.logs()}",
    )


@pytest.fixture
def fresh_registry(tmp_path: Path) -> Iterator[str]:
    """The Confluent-compatible URL of a second, empty Apicurio Registry of this test's own (the
    stack's cached install, in-memory, on free loopback ports; its log in the test's tmp_path),
    stopped after the test (tests/support/registry.py)."""
    from tests.support.registry import fresh_registry as start

    with start(tmp_path / "fresh-registry") as url:
        yield url
