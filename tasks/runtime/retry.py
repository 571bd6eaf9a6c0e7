"""The retry policy every service-facing task shares: exponential backoff with jitter, and
only for errors a retry can fix (see tasks.services.errors.is_retryable)."""

from __future__ import annotations

from typing import Any

from prefect.tasks import exponential_backoff

from tasks.services.errors import is_retryable

RETRIES = 4
RETRY_DELAYS = exponential_backoff(backoff_factor=2)(RETRIES)
RETRY_JITTER = 0.5


def retry_only_retryable(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry_condition_fn: retry when the failure is one a retry can fix."""
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001 - we classify whatever the task raised
        return is_retryable(exc)
    return False


RETRY_OPTIONS: dict[str, Any] = {
    "retries": RETRIES,
    "retry_delay_seconds": RETRY_DELAYS,
    "retry_jitter_factor": RETRY_JITTER,
    "retry_condition_fn": retry_only_retryable,
}
