"""Choosing the task runner, and what its worker processes are told."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest
from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

from tasks.runtime import task_runners


def test_auto_runs_small_work_on_threads_and_large_work_on_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(task_runners, "available_cores", lambda: 2)
    large = task_runners.AUTO_PROCESSES_MIN_RECORDS
    assert task_runners.resolve("auto", 4, large - 1, 6) == ("threads", None)
    assert task_runners.resolve("auto", 4, large, 1) == ("threads", None)
    assert task_runners.resolve("auto", 1, large, 6) == ("threads", None)
    assert task_runners.resolve("auto", 4, large, 6) == ("processes", None)
    monkeypatch.setattr(task_runners, "available_cores", lambda: 1)
    assert task_runners.resolve("auto", 4, large, 6) == ("threads", None)
    assert task_runners.resolve("processes", 4, 10, 1) == ("processes", None)
    assert task_runners.resolve("dask", 4, 10, 1) == ("dask", None)
    assert task_runners.resolve("dask=tcp://10.0.0.1:8786", 4, 10, 1) == ("dask", "tcp://10.0.0.1:8786")


def test_worker_processes_are_sent_to_the_ephemeral_api_of_this_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without a configured API, the URL of the temporary server Prefect started here is in the
    settings and in the environment a process pool ships with each task."""
    server = SimpleNamespace(running=True, api_url="http://127.0.0.1:8123/api")
    monkeypatch.setitem(
        sys.modules, "prefect.server.api.server", SimpleNamespace(SubprocessASGIServer=lambda: server)
    )
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        assert not get_current_settings().api.url
        with task_runners._workers_use_this_api():
            settings = get_current_settings()
            assert settings.api.url == server.api_url
            assert settings.to_environment_variables(exclude_unset=True)["PREFECT_API_URL"] == server.api_url
        assert not get_current_settings().api.url


def test_a_configured_api_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    server = SimpleNamespace(running=True, api_url="http://127.0.0.1:8123/api")
    monkeypatch.setitem(
        sys.modules, "prefect.server.api.server", SimpleNamespace(SubprocessASGIServer=lambda: server)
    )
    with (
        temporary_settings(updates={PREFECT_API_URL: "http://prefect.example:4200/api"}),
        task_runners._workers_use_this_api(),
    ):
        assert get_current_settings().api.url == "http://prefect.example:4200/api"


def test_workers_default_to_the_cores_this_process_may_use(monkeypatch: pytest.MonkeyPatch) -> None:
    from core import machine

    monkeypatch.setattr(machine.os, "sched_getaffinity", lambda _: {0, 3, 5}, raising=False)
    assert machine.available_cores() == 3
    monkeypatch.setattr(machine.os, "sched_getaffinity", lambda _: set(range(200)), raising=False)
    assert machine.default_workers() == machine.MAX_WORKERS

    def unavailable(_: int) -> set[int]:
        raise OSError("no affinity here")

    monkeypatch.setattr(machine.os, "sched_getaffinity", unavailable, raising=False)
    monkeypatch.setattr(machine.os, "cpu_count", lambda: 6)
    assert machine.default_workers() == 6
