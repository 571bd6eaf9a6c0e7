"""What the Prefect API holds about a test's runs, to search for secrets that must not be there."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any


def all_rows(read: Callable[..., list[Any]], **kwargs: Any) -> list[Any]:
    """Every row a Prefect read_* call returns, page by page."""
    rows: list[Any] = []
    while page := read(**kwargs, limit=200, offset=len(rows)):
        rows.extend(page)
    return rows


def prefect_records(since: datetime) -> dict[str, str]:
    """Everything the Prefect API holds about the runs started since `since` (flow runs with their
    parameters and states, task runs with their parameters and names, log lines, artifacts), as
    JSON text per kind."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterStartTime,
        LogFilter,
        LogFilterFlowRunId,
    )

    with get_client(sync_client=True) as client:
        runs = all_rows(
            client.read_flow_runs,
            flow_run_filter=FlowRunFilter(
                start_time=FlowRunFilterStartTime.model_validate({"after_": since})
            ),
        )
        ids = [run.id for run in runs]
        task_runs = all_rows(
            client.read_task_runs, flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids))
        )
        logs = all_rows(client.read_logs, log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids)))
        artifacts = all_rows(
            client.read_artifacts,
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=ids)),
        )
    return {
        "flow runs (parameters, states)": "\n".join(r.model_dump_json() for r in runs),
        "task runs (parameters, names)": "\n".join(r.model_dump_json() for r in task_runs),
        "run logs": "\n".join(log.model_dump_json() for log in logs),
        "artifacts": "\n".join(a.model_dump_json() for a in artifacts),
    }
