"""The Prefect API of a `kbackup` run when PREFECT_API_URL is not set.

Prefect would start its own temporary server (`SubprocessASGIServer`) and stop it at exit, but a
`kbackup` killed with SIGKILL never reaches that exit and leaves the server running. `TemporaryApi`
is that same class, with its start-up, health check and stop, except that the server process asks
Linux for a parent-death signal: it gets SIGTERM the moment `kbackup` dies, however it dies.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from typing import Any

import prefect
from prefect.server.api.server import SubprocessASGIServer
from prefect.settings import get_current_settings

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """preexec_fn: have Linux send this process SIGTERM when its parent exits (and take the
    signals kbackup blocks for its own handling)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class TemporaryApi(SubprocessASGIServer):
    """Prefect's temporary API server, in a child process that dies with kbackup."""

    def _run_uvicorn_command(self) -> subprocess.Popen[Any]:
        # The command and environment of SubprocessASGIServer._run_uvicorn_command (Prefect 3.9):
        # the API app without the UI, in ephemeral mode; plus the parent-death signal.
        return subprocess.Popen(
            args=[
                sys.executable,
                "-m",
                "uvicorn",
                "--app-dir",
                str(prefect.__module_path__.parent),
                "--factory",
                "prefect.server.api.server:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "error",
                "--lifespan",
                "on",
            ],
            env={
                **os.environ,
                "PREFECT_UI_ENABLED": "0",
                "PREFECT__SERVER_EPHEMERAL": "1",
                "PREFECT__SERVER_FINAL": "1",
                **get_current_settings().to_environment_variables(exclude_unset=True),
            },
            preexec_fn=_die_with_parent,
            # Its own session: a Ctrl-C in the terminal reaches kbackup, which stops its run and
            # then this server, not the server first.
            start_new_session=True,
        )
